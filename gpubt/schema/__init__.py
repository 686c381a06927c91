"""Wire format: request/FlowNode models, parsing and validation, the metric catalogue."""

from gpubt.schema.models import BacktestRequest, Condition, FlowNode, NumberedItem
from gpubt.schema.parse import (
    DEFAULT_LIMITS,
    Limits,
    Strategy,
    branch_slot,
    parse_request,
    parse_strategy_file,
)

__all__ = [
    "DEFAULT_LIMITS",
    "BacktestRequest",
    "Condition",
    "FlowNode",
    "Limits",
    "NumberedItem",
    "Strategy",
    "branch_slot",
    "parse_request",
    "parse_strategy_file",
]
