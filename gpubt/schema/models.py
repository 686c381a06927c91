"""Typed models of the wire format (spec §1–§2): camelCase JSON in, frozen Python objects out.

Pydantic does the type and range checks; `gpubt.schema.parse` adds the checks that need the whole
tree (ids, metrics, calls, tickers) and turns every failure into one `GpubtError` with a JSON path.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel


def _no_bool(value: Any) -> Any:
    """JSON true/false is not a number, even though Python says bool is an int."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
NonNegInt = Annotated[Int, Field(ge=0)]
PosInt = Annotated[Int, Field(ge=1)]
Float = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)]

Kind = Literal["basic", "function", "indicator", "numbered", "position", "call", "altExit", "scaling"]
Weighting = Literal["equal", "defined", "inverse", "pro", "capped"]
Comparator = Literal["lt", "gt", "crossAbove", "crossBelow"]
Mode = Literal["CC", "OO", "OC", "CO"]
Quantifier = Literal["any", "all", "none", "exactly", "atLeast", "atMost", "ladder"]


class WireModel(BaseModel):
    """Base of every wire object: camelCase aliases, unknown fields ignored, immutable.
    A JSON null stands for "not given", so a front end that sends nulls gets the defaults."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # the scan is C's: most objects have no null and are passed on as they are
        if isinstance(data, dict) and None in data.values():
            return {k: v for k, v in data.items() if v is not None}
        return data


class DateTo(WireModel):
    month: Annotated[Int, Field(ge=1, le=12)]
    day: Annotated[Int, Field(ge=1, le=31)]


class Condition(WireModel):
    """One condition line (spec §2 ConditionLine)."""

    id: str = ""
    type: Literal["if", "and", "or"] = "if"
    metric: str = ""
    window: NonNegInt = 0
    ticker: str = ""
    comparator: Comparator = "gt"
    threshold: Float = 0.0
    expanded: bool = False
    right_metric: str | None = None
    right_ticker: str | None = None
    right_window: NonNegInt | None = None
    for_days: PosInt = 1
    date_month: Annotated[Int, Field(ge=1, le=12)] = 1
    date_day: Annotated[Int, Field(ge=1, le=31)] = 1
    date_to: DateTo | None = None

    @property
    def right(self) -> tuple[str, str, int]:
        """(metric, ticker, window) of the right side when `expanded`, each defaulting to the left."""
        return (
            self.right_metric or self.metric,
            self.right_ticker or self.ticker,
            self.window if self.right_window is None else self.right_window,
        )


class NumberedItem(WireModel):
    id: str = ""
    conditions: tuple[Condition, ...] = ()
    group_logic: Literal["and", "or"] | None = None


class Numbered(WireModel):
    quantifier: Quantifier = "any"
    n: NonNegInt = 0
    items: tuple[NumberedItem, ...] = ()


class FlowNode(WireModel):
    """One node of the strategy tree (spec §2, §3)."""

    id: Annotated[str, Field(min_length=1)]
    kind: Kind
    # a factory: pydantic deep-copies a `{}` default for each of the thousands of leaves
    children: dict[str, tuple[FlowNode | None, ...] | None] = Field(default_factory=dict)
    positions: tuple[str, ...] = ()
    weighting: Weighting = "equal"
    weighting_then: Weighting | None = None
    weighting_else: Weighting | None = None
    vol_window: PosInt = 20
    vol_window_then: PosInt | None = None
    vol_window_else: PosInt | None = None
    capped_fallback: str | None = None
    capped_fallback_then: str | None = None
    capped_fallback_else: str | None = None
    conditions: tuple[Condition, ...] = ()
    numbered: Numbered | None = None
    metric: str = "Relative Strength Index"
    window: NonNegInt | None = None
    bottom: NonNegInt = 1
    rank: Literal["Top", "Bottom"] = "Bottom"
    call_ref_id: str | None = None
    entry_conditions: tuple[Condition, ...] = ()
    exit_conditions: tuple[Condition, ...] = ()
    scale_metric: str = "Relative Strength Index"
    scale_window: NonNegInt = 14
    scale_ticker: str = "SPY"
    scale_from: Float = 30.0
    scale_to: Float = 70.0

    @field_validator("weighting", "weighting_then", "weighting_else", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("rank", mode="before")
    @classmethod
    def _rank_any_case(cls, value: Any) -> Any:
        return value.capitalize() if isinstance(value, str) else value

    def slot(self, name: str) -> tuple[FlowNode, ...]:
        """The children of a slot, nulls skipped."""
        return tuple(c for c in (self.children.get(name) or ()) if c is not None)

    def used_slots(self) -> list[str]:
        """The child slots a node of this kind ever evaluates (any other slot is unreachable)."""
        if self.kind in ("basic", "function"):
            return ["next"]
        if self.kind in ("indicator", "scaling", "altExit"):
            return ["then", "else"]
        if self.kind == "numbered":
            return ["then", "else", *(s for s in self.children if s.startswith("ladder-") and s[7:].isdigit())]
        return []

    def slot_weighting(self, slot: str) -> tuple[Weighting, int, str | None]:
        """(weighting, volWindow, cappedFallback) for combining a slot's children; a fallback
        of "" or "Empty" means cash, as in positions."""
        weighting, vol_window, fallback = self.weighting, self.vol_window, self.capped_fallback
        if slot == "then":
            weighting = self.weighting_then or weighting
            vol_window = self.vol_window_then or vol_window
            fallback = self.capped_fallback_then or fallback
        elif slot == "else":
            weighting = self.weighting_else or weighting
            vol_window = self.vol_window_else or vol_window
            fallback = self.capped_fallback_else or fallback
        return weighting, vol_window, fallback if fallback not in ("", "Empty") else None


class CustomIndicator(WireModel):
    id: str = ""
    name: str = ""
    formula: Annotated[str, Field(min_length=1)]
    created_at: Any = None


class BacktestRequest(WireModel):
    """The body of `POST /api/backtest` (spec §1), payload already decoded."""

    payload: FlowNode
    mode: Mode = "CC"
    cost_bps: Annotated[Float, Field(ge=0)] = Field(
        0.0, validation_alias=AliasChoices("costBps", "cost_bps")
    )
    custom_indicators: tuple[CustomIndicator, ...] = ()
    call_chains: dict[str, FlowNode] = {}
    benchmark: Annotated[str, Field(min_length=1)] = "SPY"
    start_date: dt.date | None = None
    end_date: dt.date | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
