"""The column graph: interned nodes, the primitive set, topological order."""

from gpubt.ir.nodes import PRIMITIVES, Builder, Node, topological

__all__ = ["PRIMITIVES", "Builder", "Node", "topological"]
