"""The fused path of a sweep whose variants differ in conditions, counts, holdings and weights,
not in the shape of the tree.

When the tree is made of positions, if/else, numbered, altExit and scaling nodes, function nodes
and groups (a sub-tree whose equity the tree reads, by a function node ranking it or a branch:
ticker, has its series computed once, the same for every variant, or, with swept fields
inside, once per setting of those: the node's picks are then made per function setting ×
sub-tree setting, the condition's bits per setting of its own fields and the sub-tree's; where inverse or pro weights read the volatility of children with
conditions, the signals swept inside them are part of the allocation setting, and so is the
variant's first day where an altExit node is inside), a variant's
allocation on a day is fixed by its K
branch bits that day (an if/else node's truth, a ranked child picked or not, a numbered node's
item True, and Null where a quantifier counts Nulls, an altExit node's state, which the kernel
scans from the entry and exit bits from the variant's first day), by its allocation setting
(its values of swept positions, weights, weightings, numbered counts and scaling fields) and,
where a scaling node or volatility weights move weights from day to day, by the day.
Every swept parameter must be one of those, a condition line's field, a function node's
window/metric/bottom/rank, or a request field (costs, mode, dates, benchmark). Then the work is:

1. each swept condition list's distinct settings are compiled once (a 16 × 16 × 16 × 16 grid
   over two nodes is 2 × 256 condition lists, not 65,536 trees) and all of them evaluated in ONE
   backend call, kept as one bit per (setting, day); a node whose one line compares two series
   with > or < keeps the series instead (a 100 × 100 crossover grid is 200 series, compared in
   the kernel, not 10,000 conditions), and one whose line compares a series with a threshold
   gets its bits from the series (16 windows × 16 thresholds are 16 series);
2. the allocation of each branch pattern variants can form is built once per allocation setting
   by the ordinary `Allocator` (on a market of one pseudo-day per pattern), so weights
   follow exactly the rules of a single backtest, and turned into tables: the pattern's return
   on every day, the turnover between two patterns, its number of positions (where weights move
   by day: the Allocator on the market itself with the bits held, the children of volatility
   weights keeping their real series, and the pattern's weights, turnover and positions by
   day); a setting's patterns holding the same weights share one row of returns and its
   turnovers are between its distinct allocations (momentum_rotation.json's 1,304 patterns
   hold 166: while its trend is down, what its top node would pick changes nothing);
3. one parallel Numba kernel walks every variant's days: the pattern from its K bits, the net
   return from its setting's tables, then `row_metrics` on those returns while they are in cache.

Memory is flat in the number of variants (bits per setting, not per variant); rows reading
the equity of a sub-tree with an altExit node inside, or of one whose signals read such an
equity, are made per first decision day (`timed_rows`). Anything else (swept fields inside a
sub-tree both ranked and read by a branch: ticker, a scaling level or a signal inside a child
of volatility weights reading such an equity, more than `MAX_BITS` bits, `MAX_PATTERNS`
patterns or `MAX_ALLOCATIONS` pattern allocations, tables over `TABLE_BYTES`, variants whose
tickers trade on different calendars) takes the general path of `gpubt.sweep.run`.
"""

from __future__ import annotations

from gpubt.sweep.fused.kernel import Template
from gpubt.sweep.fused.plans import NotFused
from gpubt.sweep.fused.preparation import prepare

__all__ = ["NotFused", "Template", "prepare"]
