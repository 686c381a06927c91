"""`lines` nodes on the CPU: every condition list of a tree in one parallel Numba pass.

Each node's truth is built day by day from its input series, line after line, into the node's
own output row: no boolean column per line, per cross or per forDays window is ever stored,
which is what made conditions memory-bandwidth bound. The kernel computes in an order code where
Kleene logic is arithmetic: False 0 < Null 1 < True 2, so AND is `min` and OR is `max` (the
loops vectorise); the row is turned into the boundary encoding (1/0/−1) at the end.

The backends that use it (numba, polars) compute the input series their own way, hand them over
as rows of one float matrix (the matrix their outputs sit in, not a copy) with the
condition inputs (date ranges) apart, and get one int8 row per node back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain

import numba
import numpy as np

from gpubt.ir.lines import CODES
from gpubt.ir.nodes import Node
from gpubt.parallel import parallel_kernel

_CODE = {code: i for i, code in enumerate(CODES)}
_GT, _LT, _ABOVE, _BELOW, _IS = (_CODE[c] for c in ("gt", "lt", "crossAbove", "crossBelow", "is"))


def split(outputs: Sequence[Node]) -> tuple[list[Node], list[Node]]:
    """(the `lines` nodes among `outputs`, what else has to be computed: the other outputs and
    the lines' inputs), each without repeats."""
    fused = [n for n in outputs if n.op == "lines"]
    rest = [n for n in outputs if n.op != "lines"]
    for node in fused:
        rest.extend(node.inputs)
    return fused, list(dict.fromkeys(rest))


class Packed:
    """The lines of many nodes as flat arrays (CSR: node → terms → lines); a line's sides are
    positions in `float_inputs` (or `flag_inputs` for an ``is`` line)."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        # inputs numbered by first appearance, the series and the conditions apart; most are read
        # by several nodes, so each is looked up once per reading node, in C (`map`)
        inputs = [node.inputs for node in nodes]
        distinct = dict.fromkeys(chain.from_iterable(inputs))
        self.float_inputs = [put for put in distinct if put.kind != "b"]
        self.flag_inputs = [put for put in distinct if put.kind == "b"]
        index = {put: i for i, put in enumerate(self.float_inputs)}
        index.update({put: i for i, put in enumerate(self.flag_inputs)})
        at = np.fromiter(map(index.__getitem__, chain.from_iterable(inputs)), np.int64)
        terms = [term for node in nodes for term in node.params]
        sizes = np.fromiter(map(len, terms), np.int64, len(terms))
        self.node_terms = np.concatenate(([0], np.cumsum([len(node.params) for node in nodes]))).astype(np.int64)
        self.term_lines = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        flat = list(chain.from_iterable(terms))  # (code, a, b, threshold, for_days) as the nodes hold them
        # per line: where its node's inputs start among `at`
        starts = np.concatenate(([0], np.cumsum([len(ins) for ins in inputs])[:-1])).astype(np.int64)
        base = np.repeat(starts, np.diff(self.term_lines[self.node_terms]))
        code, a, b, threshold, for_days = (list(c) for c in zip(*flat)) if flat else ([], [], [], [], [])
        self.code = np.array([_CODE[c] for c in code], dtype=np.int64)
        self.left = at[base + np.array(a, dtype=np.int64)]
        right = np.array(b, dtype=np.int64)
        self.right = np.where(right < 0, -1, at[base + np.maximum(right, 0)])  # -1: the threshold
        self.threshold = np.array(threshold, dtype=np.float64)
        self.for_days = np.array(for_days, dtype=np.int64)
        # per node: the days before t its truth on day t reads (a cross the day before, forDays
        # n the n − 1 before)
        back = self.for_days - 1 + ((self.code == _ABOVE) | (self.code == _BELOW))
        lines_of = self.term_lines[self.node_terms]  # every node has a line (`lines_node`)
        self.lookback = np.maximum.reduceat(back, lines_of[:-1]) if flat else np.zeros(len(nodes), np.int64)


def evaluate_lines(
    nodes: Sequence[Node],
    floats: np.ndarray,
    float_row: Mapping[Node, int],
    flag_values: Mapping[Node, np.ndarray],
    first: Mapping[Node, int] | None = None,
    packed: Packed | None = None,
) -> dict[Node, np.ndarray]:
    """Each `lines` node's truth (int8 rows of one matrix). The float inputs are rows of
    `floats` (`float_row`: node → row, so a backend hands over the matrix its series already
    sit in); the condition inputs are read from `flag_values`. A node named in `first` is
    computed from that day on (Null before it), the days before its backtest reads it; its
    inputs are read from `lookback` days before that. `packed`: `Packed(nodes)`, when the
    caller has it already."""
    packed = Packed(nodes) if packed is None else packed
    first = first or {}
    firsts = np.array([first.get(node, 0) for node in nodes], dtype=np.int64)
    n_days = floats.shape[1]
    rows = np.array([float_row[node] for node in packed.float_inputs], dtype=np.int64)
    flags = np.empty((len(packed.flag_inputs), n_days), dtype=np.int8)
    for i, node in enumerate(packed.flag_inputs):
        flags[i] = flag_values[node]
    out = np.empty((len(nodes), n_days), dtype=np.int8)
    _lines(floats, rows, flags, np.arange(len(flags), dtype=np.int64), packed.node_terms, packed.term_lines,
           packed.code, packed.left, packed.right, packed.threshold, packed.for_days, firsts, packed.lookback, out)
    return dict(zip(nodes, out))


@numba.njit(cache=True, nogil=True)
def _line_into(code: int, a: np.ndarray, b: np.ndarray, constant: bool, y: float, fold: bool,
               line: np.ndarray) -> None:
    """One comparison line's order codes per day (`constant`: a compared with y, b unread) into
    `line`; with `fold`, ANDed into what `line` holds (the lower code kept): a line of forDays 1
    goes straight into its term, without a pass of its own (2.2× faster for a list of such lines)."""
    n = line.size
    if constant and math.isnan(y):
        for t in range(n):
            line[t] = 1 if not fold or line[t] > 1 else line[t]
        return
    if code == _GT:
        if constant:
            for t in range(n):
                x = 2 * (a[t] > y) + math.isnan(a[t])
                line[t] = x if not fold or x < line[t] else line[t]
        else:
            for t in range(n):
                x = 2 * (a[t] > b[t]) + (math.isnan(a[t]) | math.isnan(b[t]))
                line[t] = x if not fold or x < line[t] else line[t]
    elif code == _LT:
        if constant:
            for t in range(n):
                x = 2 * (a[t] < y) + math.isnan(a[t])
                line[t] = x if not fold or x < line[t] else line[t]
        else:
            for t in range(n):
                x = 2 * (a[t] < b[t]) + (math.isnan(a[t]) | math.isnan(b[t]))
                line[t] = x if not fold or x < line[t] else line[t]
    else:  # crosses: the day before below (above) and the day at or above (at or below)
        if n:
            line[0] = 1 if not fold or line[0] > 1 else line[0]
        for t in range(1, n):
            a0, a1 = a[t - 1], a[t]
            b0, b1 = (y, y) if constant else (b[t - 1], b[t])
            missing = math.isnan(a0) | math.isnan(a1) | math.isnan(b0) | math.isnan(b1)
            if code == _ABOVE:
                x = 2 * ((a0 < b0) & (a1 >= b1)) + missing
            else:
                x = 2 * ((a0 > b0) & (a1 <= b1)) + missing
            line[t] = x if not fold or x < line[t] else line[t]


@numba.njit(cache=True, nogil=True)
def _node_codes(i: int, floats: np.ndarray, rows: np.ndarray, flags: np.ndarray, flag_rows: np.ndarray,
                node_terms: np.ndarray, term_lines: np.ndarray, code: np.ndarray, left: np.ndarray,
                right: np.ndarray, threshold: np.ndarray, for_days: np.ndarray, start: int, acc: np.ndarray,
                term: np.ndarray, line: np.ndarray) -> None:
    """Node i's order codes (0 False, 1 Null, 2 True) for the acc.size days from `start` into
    `acc`, with `term` and `line` (as long) as scratch. The lines, crosses and forDays windows
    read only days of that slice (a day before it counts as Null), so a day is exact once the
    slice starts `lookback` days before it. The CPU's per-node loop and, compiled from this
    source (`gpubt.backends.cuda_kernels`), a GPU thread's: plain loops only (no allocation, no
    slice assignment, no `min`/`max` of small integers), which both targets compile."""
    n = acc.size
    term = term[:n]
    line = line[:n]
    for t in range(n):
        acc[t] = 0  # OR of no term: False
    for k in range(node_terms[i], node_terms[i + 1]):
        for t in range(n):
            term[t] = 2  # AND of no line: True
        for j in range(term_lines[k], term_lines[k + 1]):
            c = code[j]
            if c == _IS:  # a condition input, 1/0/-1 -> 2/0/1
                flag = flags[flag_rows[left[j]], start:]
                for t in range(n):
                    f = flag[t]
                    line[t] = 2 * (f == 1) + (f == -1)
            else:
                a = floats[rows[left[j]], start:]
                constant = right[j] < 0
                b = a if constant else floats[rows[right[j]], start:]
                if for_days[j] == 1:  # ANDed into the term as it is computed
                    _line_into(c, a, b, constant, threshold[j], True, term)
                    continue
                _line_into(c, a, b, constant, threshold[j], False, line)
            # forDays: the AND of the line over its last d days, days before the first Null
            d = for_days[j]
            for lag in range(d):
                for t in range(lag if lag < n else n):
                    term[t] = term[t] if term[t] < 1 else 1
                for t in range(lag, n):
                    x = line[t - lag]
                    term[t] = term[t] if term[t] < x else x
        for t in range(n):
            acc[t] = acc[t] if acc[t] > term[t] else term[t]


@numba.njit(cache=True, nogil=True)
def _node_into(i: int, floats: np.ndarray, rows: np.ndarray, flags: np.ndarray, flag_rows: np.ndarray,
               node_terms: np.ndarray, term_lines: np.ndarray, code: np.ndarray, left: np.ndarray,
               right: np.ndarray, threshold: np.ndarray, for_days: np.ndarray, first: np.ndarray,
               lookback: np.ndarray, out: np.ndarray, term: np.ndarray, line: np.ndarray) -> None:
    """Node i's truth into out[i], from `lookback` days before its first day asked for on (Null
    before that day), with `term` and `line` (a day each) as scratch."""
    days = out.shape[1]
    start = first[i] - lookback[i]
    start = 0 if start < 0 else (days if start > days else start)
    acc = out[i, start:]
    _node_codes(i, floats, rows, flags, flag_rows, node_terms, term_lines, code, left, right, threshold, for_days,
                start, acc, term, line)
    for t in range(acc.size):
        c = acc[t]
        acc[t] = (c >> 1) - (c & 1)  # 0 -> 0 (False), 1 -> -1 (Null), 2 -> 1 (True)
    for t in range(first[i] if first[i] < days else days):
        out[i, t] = -1  # not asked for: Null


@parallel_kernel(cache=True, nogil=True)
def _lines(floats: np.ndarray, rows: np.ndarray, flags: np.ndarray, flag_rows: np.ndarray, node_terms: np.ndarray,
           term_lines: np.ndarray, code: np.ndarray, left: np.ndarray, right: np.ndarray, threshold: np.ndarray,
           for_days: np.ndarray, first: np.ndarray, lookback: np.ndarray, out: np.ndarray) -> None:
    for i in numba.prange(out.shape[0]):
        term = np.empty(out.shape[1], dtype=np.int8)
        line = np.empty(out.shape[1], dtype=np.int8)
        _node_into(i, floats, rows, flags, flag_rows, node_terms, term_lines, code, left, right, threshold,
                   for_days, first, lookback, out, term, line)
