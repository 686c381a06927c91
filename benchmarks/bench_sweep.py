"""Sweep throughput: one template, 16 values per parameter, full metrics per variant.

Template: if RSI(SPY, w1) > t1 then UVXY else (if RSI(QQQ, w2) < t2 then TQQQ else SPY), on the
built-in market restricted to its last 4,683 days (2008-01-21 .. 2025-12-31). The full grid is
16⁴ = 65,536 variants; a pilot run estimates its time and a 16×16×4×4 grid (4,096) is run instead
when the full one would take over --max-seconds (the table says which). Each measurement runs
in a fresh process so its peak RSS (getrusage) is its own; the phase profile (parse, compile,
evaluate, allocate, simulate, metrics, table) comes from `gpubt.sweep.run.PHASES`.

    python benchmarks/bench_sweep.py [--backends polars] [--memory 2GB] [--max-seconds 300]
                                     [--local-workers 2] [--huge] [--batch] [--general] [--no-record]

--huge adds the 32⁴ = 1,048,576-variant grid; --batch adds the backend issue's batch case
(1,000 random strategies of 10 indicator nodes each, compiled together: `batch_template`);
--general adds nineteen sweeps beyond the template's fused grid: the template's 1,024-variant pilot
grid with the fused path switched off (the general path: each variant parsed, compiled,
allocated and simulated in batches), a function-node sweep of examples/momentum_rotation.json
(16,384 variants; the fused path since session 16), the same with one of its ranked positions
swept (`universe_parameters`, 16,384 variants; the fused path since session 19: picks per
setting of the positions), the same with two ranked positions swept (`pair_parameters`, 16,384
variants; the fused path since session 20: a setting's patterns holding the same weights share
their tables' rows), the template with its positions swept
beside two conditions (`allocation_parameters`, 16,384 variants; the fused path since session
17), a numbered-node sweep of examples/regime_ladder.json (`ladder_parameters`, 16,384 variants;
the fused path since session 17), an altExit sweep (`altexit_template`, 16,384 variants; the
fused path since session 17), the same sweep of altexit_trend.json itself, whose scaling node
moves its weights from day to day (the fused path's daily tables since session 17), a function
node ranking sub-trees beside a condition on a branch: ticker (`subtree_template`, 16,384
variants; the fused path since session 17: the sub-trees' equities computed once), the same with
the ranked if/else sub-tree's condition swept (`ranked_parameters`, 16,384 variants; the fused
path since session 18: an equity per setting of the sub-tree), the same with the position its
branch: condition reads swept (`read_parameters`, 16,384 variants; the fused path since session
18: bit rows per setting of the condition and the read sub-tree), the same with the ranked
sub-tree an altExit node and the start date swept (`timed_template`, 16,384 variants; the fused
path since session 19: its picks per first day), the ranked sweep with that sub-tree's condition
on its own then-branch (`self_read_template`, 16,384 variants; the fused path since session 19:
each setting's signals staged after its own branch series), the same with that then-branch an
altExit node (`latch_read_template`, 16,384 variants; the fused path since session 20: the
condition evaluated again per first day), inverse or
pro weights over sleeves with conditions under a swept if/else gate (`volatile_template`, 16,384
variants; the fused path since session 18: the sleeves' real volatilities computed once), the
same with a sleeve's threshold swept (`sleeve_parameters`, 16,384 variants; the fused path since
session 18: an allocation setting per threshold), the same with the TLT sleeve an altExit node
and the start date swept (`latched_template`, 16,384 variants; the fused path since session 19:
an allocation setting per first day), a ladder of 14 nested if/else nodes (`deep_template`,
16,384 variants and branch patterns; the fused path since session 20: at most 65,536 patterns,
the Allocator building them a block at a time), and one
function node's window and count on a 601-node tree (`wide_template`, 64 variants,
the general path: what is per variant scales with what a variant changes, not with the tree).
The note says which path each took.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAYS = 4683
VALUES = 16
TARGET_RATE = 50_000  # strategies/s the issue asks for on a 2-core CPU
TARGET_GPU_RATE = 2_000_000  # and on an H100
TARGET_RSS_MB = 2048
WARM_RUNS = 3  # warm sweeps per local measurement (the median is reported)


def template() -> dict:
    return {"mode": "CC", "costBps": 0, "benchmark": "SPY", "payload": {
        "id": "root", "kind": "indicator",
        "conditions": [{"id": "a", "metric": "Relative Strength Index", "ticker": "SPY", "window": 10,
                        "comparator": "gt", "threshold": 79}],
        "children": {
            "then": [{"id": "hedge", "kind": "position", "positions": ["UVXY"]}],
            "else": [{"id": "inner", "kind": "indicator",
                      "conditions": [{"id": "b", "metric": "Relative Strength Index", "ticker": "QQQ",
                                      "window": 10, "comparator": "lt", "threshold": 31}],
                      "children": {"then": [{"id": "bounce", "kind": "position", "positions": ["TQQQ"]}],
                                   "else": [{"id": "hold", "kind": "position", "positions": ["SPY"]}]}}],
        }}}


BATCH_NODES = 10
BATCH_TICKERS = ("SPY", "QQQ", "IWM", "TLT", "GLD", "EFA", "EEM", "VNQ", "DBC", "BIL", "SHY")


def batch_template() -> dict:
    """The batch case of the backend issue: strategies of 10 indicator nodes each (an equal-weight
    group of 10 if/else nodes, one oscillator condition each), 1,000 of them drawn at random
    (seeded) from every node's metric × window × ticker × comparator × threshold, compiled
    together."""
    nodes = [{"id": f"n{i}", "kind": "indicator", "conditions": [
        {"id": f"c{i}", "metric": "Relative Strength Index", "ticker": BATCH_TICKERS[i], "window": 14,
         "comparator": "gt", "threshold": 50}],
        "children": {"then": [{"id": f"t{i}", "kind": "position", "positions": [BATCH_TICKERS[i]]}],
                     "else": [{"id": f"e{i}", "kind": "position", "positions": ["SHY"]}]}}
        for i in range(BATCH_NODES)]
    return {"mode": "CC", "costBps": 5, "benchmark": "SPY",
            "payload": {"id": "root", "kind": "basic", "weighting": "equal", "children": {"next": nodes}}}


def batch_parameters() -> dict:
    out: dict = {}
    for i in range(BATCH_NODES):
        out[f"c{i}.metric"] = ["Relative Strength Index", "Stochastic %K"]
        out[f"c{i}.window"] = [5, 10, 14, 20, 30, 40, 50, 60]
        out[f"c{i}.ticker"] = list(BATCH_TICKERS)
        out[f"c{i}.comparator"] = ["gt", "lt"]
        out[f"c{i}.threshold"] = [30, 50, 70]
    return out


MOMENTUM = ROOT / "examples" / "momentum_rotation.json"


def momentum_parameters() -> dict:
    """64 ranking windows × 4 counts × 8 trend windows × 8 defensive windows = 16,384 variants."""
    return {"top3.window": list(range(10, 266, 4)), "top3.bottom": [1, 2, 3, 4],
            "trend.window": list(range(50, 250, 25)), "defense.window": list(range(10, 130, 15))}


def universe_parameters() -> dict:
    """momentum_rotation.json with one of its ranked positions swept: p-dbc.positions (4, one of
    them two tickers) × top3.window (64) × top3.bottom (4) × trend.window (16) = 16,384 variants
    (4 allocation settings, each of the 1,304 patterns' 166 distinct allocations)."""
    return {"p-dbc.positions": [["DBC"], ["XLU"], ["UUP"], ["GLD", "TIP"]],
            "top3.window": list(range(10, 266, 4)), "top3.bottom": [1, 2, 3, 4],
            "trend.window": list(range(50, 210, 10))}


def pair_parameters() -> dict:
    """momentum_rotation.json with two of its ranked positions swept: p-dbc.positions (4) ×
    p-gld.positions (4) × top3.window (16) × top3.bottom (4) × trend.window (16) = 16,384
    variants (16 allocation settings; each a full copy of the patterns' tables took 0.9 GiB)."""
    return {"p-dbc.positions": [["DBC"], ["XLU"], ["UUP"], ["GLD", "TIP"]],
            "p-gld.positions": [["GLD"], ["TLT"], ["IEF"], ["SHY"]],
            "top3.window": list(range(10, 266, 16)), "top3.bottom": [1, 2, 3, 4],
            "trend.window": list(range(50, 210, 10))}


def allocation_parameters() -> dict:
    """The template's hedge and risk-on tickers swept (4 × 4) beside RSI(SPY)'s window and
    threshold (16 × 16) and the inner threshold (4): 16,384 variants, 16 allocation settings."""
    return {"a.window": list(range(5, 21)), "a.threshold": list(range(65, 81)),
            "hedge.positions": [["UVXY"], ["TLT"], ["GLD"], ["SHY"]],
            "bounce.positions": [["TQQQ"], ["UPRO"], ["SOXL"], ["QQQ"]], "b.threshold": [20, 25, 30, 35]}


def ladder_parameters() -> dict:
    """regime_ladder.json: an item's window (16) and two thresholds (16 × 8), the quantifier (4,
    `all` among them: a Null bit per item) and n (2) = 16,384 variants."""
    return {"n2.window": list(range(21, 101, 5)), "n3.threshold": list(range(15, 31)),
            "n4.threshold": list(range(6, 22, 2)), "root.quantifier": ["ladder", "atLeast", "all", "any"],
            "root.n": [1, 2]}


def altexit_template() -> dict:
    """examples/altexit_trend.json with its scaling node replaced by its leveraged position (the
    altExit node alone, without weights that move by day)."""
    body = json.loads((ROOT / "examples" / "altexit_trend.json").read_text())
    body["payload"]["children"]["then"] = [{"id": "lev", "kind": "position", "positions": ["TQQQ"]}]
    return body


def altexit_parameters() -> dict:
    """The exit drawdown (16) and entry RSI (16) thresholds, the exit's forDays (4), the entry
    cross's slow window (4) and the safety branch's window (4) = 16,384 variants."""
    return {"exit-dd.threshold": list(range(5, 21)), "enter-rsi.threshold": list(range(60, 92, 2)),
            "exit-trend.forDays": [1, 2, 3, 5], "enter-cross.rightWindow": [100, 150, 200, 250],
            "bond-trend.window": [20, 40, 60, 120]}


def subtree_template() -> dict:
    """A function node ranking three sub-trees (an if/else node, a bond group, a position) by
    return, beside an if/else node on the RSI of its own then-branch (branch:then)."""
    return {"mode": "CC", "costBps": 2, "benchmark": "SPY", "payload": {
        "id": "root", "kind": "basic", "children": {"next": [
            {"id": "f", "kind": "function", "metric": "Cumulative Return", "window": 20, "bottom": 1, "children": {
                "next": [
                    {"id": "b1", "kind": "indicator", "conditions": [
                        {"id": "cx", "metric": "Relative Strength Index", "ticker": "QQQ", "window": 14,
                         "comparator": "gt", "threshold": 50}],
                     "children": {"then": [{"id": "x", "kind": "position", "positions": ["QQQ"]}],
                                  "else": [{"id": "y", "kind": "position", "positions": ["IEF"]}]}},
                    {"id": "b2", "kind": "basic", "children": {"next": [
                        {"id": "g", "kind": "position", "positions": ["GLD"]},
                        {"id": "t", "kind": "position", "positions": ["TLT"]}]}},
                    {"id": "x2", "kind": "position", "positions": ["SPY"]}]}},
            {"id": "top", "kind": "indicator", "conditions": [
                {"id": "ct", "metric": "Relative Strength Index", "ticker": "branch:then", "window": 10,
                 "comparator": "lt", "threshold": 80}],
             "children": {"then": [{"id": "lev", "kind": "position", "positions": ["TQQQ"]}],
                          "else": [{"id": "cash", "kind": "position", "positions": ["SHY"]}]}}]}}}


def subtree_parameters() -> dict:
    """f.window (32) × f.bottom (2) × f.rank (2) × ct.threshold (16) × ct.window (8) = 16,384."""
    return {"f.window": list(range(5, 165, 5)), "f.bottom": [1, 2], "f.rank": ["Top", "Bottom"],
            "ct.threshold": list(range(50, 82, 2)), "ct.window": list(range(3, 19, 2))}


def self_read_template() -> dict:
    """`subtree_template()` with its ranked if/else sub-tree's condition on the RSI of that
    node's own then-branch (branch:then): a sub-tree that reads its own sub-tree's series."""
    body = subtree_template()
    body["payload"]["children"]["next"][0]["children"]["next"][0]["conditions"][0]["ticker"] = "branch:then"
    return body


def timed_template() -> dict:
    """`subtree_template()` with its ranked if/else sub-tree an altExit node (in when RSI(QQQ, 14)
    crosses above 55, out when it crosses below 45): its equity, so the function node's picks,
    start on each variant's first day."""
    body = subtree_template()
    body["payload"]["children"]["next"][0]["children"]["next"][0] = qqq_latch("b1", ("cx", "cy"), ("y", "IEF"))
    return body


def qqq_latch(node: str, lines: tuple[str, str], out: tuple[str, str]) -> dict:
    """An altExit node (ids: ``node``, its entry and exit ``lines``): in when RSI(QQQ, 14) crosses
    above 55, out when it crosses below 45; QQQ while in, ``out`` (id, ticker) while out."""
    return {"id": node, "kind": "altExit",
            "entryConditions": [{"id": lines[0], "metric": "Relative Strength Index", "ticker": "QQQ", "window": 14,
                                 "comparator": "crossAbove", "threshold": 55}],
            "exitConditions": [{"id": lines[1], "metric": "Relative Strength Index", "ticker": "QQQ", "window": 14,
                                "comparator": "crossBelow", "threshold": 45}],
            "children": {"then": [{"id": "x", "kind": "position", "positions": ["QQQ"]}],
                         "else": [{"id": out[0], "kind": "position", "positions": [out[1]]}]}}


def timed_parameters() -> dict:
    """f.window (32) × f.bottom (2) × ct.threshold (16) × ct.window (4) × startDate (4) = 16,384
    variants (the ranked altExit sub-tree's picks per first day)."""
    return {"f.window": list(range(5, 165, 5)), "f.bottom": [1, 2], "ct.threshold": list(range(50, 82, 2)),
            "ct.window": [3, 7, 11, 15], "startDate": ["2009-01-02", "2012-01-03", "2016-01-04", "2020-01-02"]}


def latch_read_template() -> dict:
    """`subtree_template()` with its ranked if/else sub-tree's condition on the RSI of its own
    then-branch (branch:then), an altExit node (in when RSI(QQQ, 14) crosses above 55, out when
    it crosses below 45): the condition, so the sub-tree's equity and the picks, differ by first
    day."""
    body = subtree_template()
    b1 = body["payload"]["children"]["next"][0]["children"]["next"][0]
    b1["conditions"][0]["ticker"] = "branch:then"
    b1["children"]["then"] = [qqq_latch("lt", ("lx", "ly"), ("z", "TLT"))]
    return body


def latch_read_parameters() -> dict:
    """f.window (32) × f.bottom (2) × cx.threshold (8, inside the ranked sub-tree: an equity per
    setting) × ct.threshold (8) × startDate (4) = 16,384 variants."""
    return {"f.window": list(range(5, 165, 5)), "f.bottom": [1, 2], "cx.threshold": list(range(40, 80, 5)),
            "ct.threshold": list(range(50, 82, 4)),
            "startDate": ["2009-01-02", "2012-01-03", "2016-01-04", "2020-01-02"]}


def volatile_template() -> dict:
    """Risk parity of strategies: the template's if/else node on RSI(SPY) (its condition named g)
    choosing UVXY or inverse-volatility weights over three sleeves, two of them with conditions
    (the template's inner RSI(QQQ) switch and a TLT trend switch) and GLD."""
    body = template()
    gate = body["payload"]
    gate["id"], gate["conditions"][0]["id"] = "gate", "g"
    gate["children"]["else"] = [{"id": "rp", "kind": "basic", "weighting": "inverse", "volWindow": 20, "children": {
        "next": [gate["children"]["else"][0],
                 {"id": "bonds", "kind": "indicator", "conditions": [
                     {"id": "bt", "metric": "Current Price", "ticker": "TLT", "window": 1, "comparator": "gt",
                      "expanded": True, "rightMetric": "SMA", "rightWindow": 100}],
                  "children": {"then": [{"id": "tlt", "kind": "position", "positions": ["TLT"]}],
                               "else": [{"id": "shy", "kind": "position", "positions": ["SHY"]}]}},
                 {"id": "gold", "kind": "position", "positions": ["GLD"]}]}}]
    return body


def volatile_parameters() -> dict:
    """g.window (16) × g.threshold (16) × rp.volWindow (4) × rp.weighting (2) × costBps (8) = 16,384."""
    return {"g.window": list(range(5, 21)), "g.threshold": list(range(65, 81)), "rp.volWindow": [10, 20, 40, 60],
            "rp.weighting": ["inverse", "pro"], "costBps": list(range(8))}


def latched_template() -> dict:
    """`volatile_template()` with its TLT sleeve an altExit node (in when TLT crosses above its
    SMA(100), out when its RSI(14) falls below 35): the sleeve's volatility runs through states
    that start on each variant's first day."""
    body = volatile_template()
    rp = body["payload"]["children"]["else"][0]
    rp["children"]["next"][1] = {
        "id": "trend", "kind": "altExit",
        "entryConditions": [{"id": "te", "metric": "Current Price", "ticker": "TLT", "window": 1,
                             "comparator": "crossAbove", "expanded": True, "rightMetric": "SMA", "rightWindow": 100}],
        "exitConditions": [{"id": "tx", "metric": "RSI", "ticker": "TLT", "window": 14, "comparator": "lt",
                            "threshold": 35}],
        "children": {"then": [{"id": "tlt", "kind": "position", "positions": ["TLT"]}],
                     "else": [{"id": "shy", "kind": "position", "positions": ["SHY"]}]}}
    return body


def latched_parameters() -> dict:
    """g.window (16) × g.threshold (16) × rp.weighting (2) × startDate (4) × costBps (8) = 16,384
    variants (4 first days, each its sleeves' own volatilities)."""
    return {"g.window": list(range(5, 21)), "g.threshold": list(range(65, 81)), "rp.weighting": ["inverse", "pro"],
            "startDate": ["2009-01-02", "2012-01-03", "2016-01-04", "2020-01-02"], "costBps": list(range(8))}


def sleeve_parameters() -> dict:
    """`volatile_template()` with a sleeve's threshold swept inside the volatility weights:
    g.window (16) × g.threshold (16) × b.threshold (16) × rp.weighting (2) × costBps (2) = 16,384
    variants (32 allocation settings, each its sleeves' own volatilities)."""
    return {"g.window": list(range(5, 21)), "g.threshold": list(range(65, 81)), "b.threshold": list(range(20, 36)),
            "rp.weighting": ["inverse", "pro"], "costBps": [0, 2]}


def read_parameters() -> dict:
    """`subtree_template()` with the position its branch: condition reads swept: lev.positions (4) ×
    ct.threshold (16) × ct.window (8) × f.window (32) = 16,384 variants (4 equities of branch:then)."""
    return {"lev.positions": [["TQQQ"], ["UPRO"], ["SOXL"], ["QQQ"]], "ct.threshold": list(range(50, 82, 2)),
            "ct.window": list(range(3, 19, 2)), "f.window": list(range(5, 165, 5))}


def ranked_parameters() -> dict:
    """`subtree_template()` with the ranked if/else sub-tree's condition swept: f.window (16) ×
    f.bottom (2) × cx.window (8) × cx.threshold (16) × ct.threshold (4) = 16,384 variants (128
    settings of the sub-tree, each its own equity)."""
    return {"f.window": list(range(5, 85, 5)), "f.bottom": [1, 2], "cx.window": [5, 7, 10, 14, 20, 28, 40, 60],
            "cx.threshold": list(range(40, 72, 2)), "ct.threshold": [65, 70, 75, 80]}


DEEP_NODES = 14


def deep_template() -> dict:
    """A regime ladder of 14 nested if/else nodes: if RSI(ticker i) > threshold then a sleeve, else
    the next test, SHY at the bottom (16,384 branch patterns, 8 distinct allocations)."""
    tickers = ["SPY", "QQQ", "TLT", "GLD", "IEF", "EFA", "EEM"]
    node: dict = {"id": "floor", "kind": "position", "positions": ["SHY"]}
    for i in reversed(range(DEEP_NODES)):
        node = {"id": f"d{i}", "kind": "indicator", "conditions": [
            {"id": f"dc{i}", "metric": "Relative Strength Index", "ticker": tickers[i % 7], "window": 10 + i,
             "comparator": "gt", "threshold": 55}],
            "children": {"then": [{"id": f"dt{i}", "kind": "position", "positions": [tickers[(i + 3) % 7]]}],
                         "else": [node]}}
    return {"mode": "CC", "costBps": 2, "benchmark": "SPY", "payload": node}


def deep_parameters() -> dict:
    """dc0.window (16) × dc0.threshold (16) × dc1.threshold (8) × dc2.window (8) = 16,384 variants."""
    return {"dc0.window": list(range(5, 21)), "dc0.threshold": list(range(40, 72, 2)),
            "dc1.threshold": list(range(40, 80, 5)), "dc2.window": [5, 7, 10, 14, 20, 28, 40, 60]}


WIDE_NODES = 200


def wide_template() -> dict:
    """An equal-weight group of 200 if/else nodes (RSI of one of the batch tickers over a
    threshold: that ticker, else SHY) and one function node ranking 8 tickers by return."""
    nodes: list[dict] = [{"id": f"w{i}", "kind": "indicator", "conditions": [
        {"id": f"wc{i}", "metric": "Relative Strength Index", "ticker": BATCH_TICKERS[i % 9],
         "window": 5 + i % 40, "comparator": "gt", "threshold": 40 + i % 30}],
        "children": {"then": [{"id": f"wt{i}", "kind": "position", "positions": [BATCH_TICKERS[i % 9]]}],
                     "else": [{"id": f"we{i}", "kind": "position", "positions": ["SHY"]}]}}
        for i in range(WIDE_NODES)]
    nodes.append({"id": "top", "kind": "function", "metric": "Cumulative Return", "window": 60, "rank": "Top",
                  "bottom": 2, "children": {"next": [
                      {"id": f"r{j}", "kind": "position", "positions": [t]} for j, t in enumerate(BATCH_TICKERS[:8])]}})
    return {"mode": "CC", "costBps": 2, "benchmark": "SPY",
            "payload": {"id": "root", "kind": "basic", "weighting": "equal", "children": {"next": nodes}}}


# the sweeps --general adds, and how the table names them
GENERAL_SWEEPS = {
    "general": "the template's 16×16×2×2 = 1,024 grid with the fused path off",
    "momentum": "momentum_rotation.json: top3.window (64) × top3.bottom (4) × trend.window (8) × "
                "defense.window (8) = 16,384 variants",
    "universe": "momentum_rotation.json with a ranked position swept: p-dbc.positions (4) × "
                "top3.window (64) × top3.bottom (4) × trend.window (16) = 16,384 variants",
    "pair": "momentum_rotation.json with two ranked positions swept: p-dbc.positions (4) × p-gld.positions (4) "
            "× top3.window (16) × top3.bottom (4) × trend.window (16) = 16,384 variants",
    "allocations": "the template with hedge.positions (4) × bounce.positions (4) × a.window (16) × "
                   "a.threshold (16) × b.threshold (4) = 16,384 variants",
    "ladder": "regime_ladder.json: n2.window (16) × n3.threshold (16) × n4.threshold (8) × "
              "root.quantifier (4) × root.n (2) = 16,384 variants",
    "altexit": "altexit_trend.json without its scaling node: exit-dd.threshold (16) × "
               "enter-rsi.threshold (16) × exit-trend.forDays (4) × enter-cross.rightWindow (4) × "
               "bond-trend.window (4) = 16,384 variants",
    "scaled": "altexit_trend.json (its scaling node kept): the same 16,384 variants",
    "subtrees": "a function node ranking sub-trees beside a branch: condition: f.window (32) × "
                "f.bottom (2) × f.rank (2) × ct.threshold (16) × ct.window (8) = 16,384 variants",
    "ranked": "the same with the ranked sub-tree's condition swept: f.window (16) × f.bottom (2) × "
              "cx.window (8) × cx.threshold (16) × ct.threshold (4) = 16,384 variants",
    "reads": "the same with the position its branch: condition reads swept: lev.positions (4) × "
             "ct.threshold (16) × ct.window (8) × f.window (32) = 16,384 variants",
    "selfread": "the ranked one with that sub-tree's condition on its own then-branch (branch:then), "
                "the same 16,384 variants",
    "timed": "the same with the ranked sub-tree an altExit node: f.window (32) × f.bottom (2) × "
             "ct.threshold (16) × ct.window (4) × startDate (4) = 16,384 variants",
    "latchread": "the ranked sweep with that sub-tree's condition on its own then-branch, an altExit node: "
                 "f.window (32) × f.bottom (2) × cx.threshold (8) × ct.threshold (8) × startDate (4) = 16,384 "
                 "variants",
    "volatile": "inverse or pro weights over sleeves with conditions under a swept gate: g.window (16) × "
                "g.threshold (16) × rp.volWindow (4) × rp.weighting (2) × costBps (8) = 16,384 variants",
    "sleeves": "the same with a sleeve's threshold swept inside the volatility weights: g.window (16) × "
               "g.threshold (16) × b.threshold (16) × rp.weighting (2) × costBps (2) = 16,384 variants",
    "latched": "the same with the TLT sleeve an altExit node: g.window (16) × g.threshold (16) × "
               "rp.weighting (2) × startDate (4) × costBps (8) = 16,384 variants",
    "deep": f"a ladder of {DEEP_NODES} nested if/else nodes (16,384 patterns): dc0.window (16) × dc0.threshold (16) "
            "× dc1.threshold (8) × dc2.window (8) = 16,384 variants",
    "wide": f"a {WIDE_NODES}-node if/else group beside a function node (601 nodes): "
            "top.window (16) × top.bottom (4) = 64 variants",
}


# the --general sweeps but "general": (base strategy, parameters), each made when measured
NAMED_SWEEPS = {
    "momentum": (lambda: MOMENTUM, momentum_parameters),
    "universe": (lambda: MOMENTUM, universe_parameters),
    "pair": (lambda: MOMENTUM, pair_parameters),
    "allocations": (template, allocation_parameters),
    "ladder": (lambda: ROOT / "examples" / "regime_ladder.json", ladder_parameters),
    "altexit": (altexit_template, altexit_parameters),
    "scaled": (lambda: ROOT / "examples" / "altexit_trend.json", altexit_parameters),
    "subtrees": (subtree_template, subtree_parameters),
    "ranked": (subtree_template, ranked_parameters),
    "reads": (subtree_template, read_parameters),
    "selfread": (self_read_template, ranked_parameters),
    "timed": (timed_template, timed_parameters),
    "latchread": (latch_read_template, latch_read_parameters),
    "volatile": (volatile_template, volatile_parameters),
    "sleeves": (volatile_template, sleeve_parameters),
    "latched": (latched_template, latched_parameters),
    "deep": (deep_template, deep_parameters),
    "wide": (wide_template, lambda: {"top.window": list(range(20, 276, 16)), "top.bottom": [1, 2, 3, 4]}),
}


def parameters(grid: str) -> dict:
    """'full': 16 values each; 'small': 16×16×4×4; 'pilot': 16×16×2×2; 'huge': 32 values each
    (1,048,576 variants: windows 5..36, thresholds 50..81 and 20..51, a GPU-sized sweep)."""
    if grid == "huge":
        w = list(range(5, 5 + 2 * VALUES))
        return {"a.window": w, "a.threshold": list(range(50, 50 + 2 * VALUES)), "b.window": w,
                "b.threshold": list(range(20, 20 + 2 * VALUES))}
    w, t1, t2 = list(range(5, 5 + VALUES)), list(range(65, 65 + VALUES)), list(range(20, 20 + VALUES))
    inner = {"full": VALUES, "small": 4, "pilot": 2, "tiny": 1}[grid]
    outer = VALUES if grid != "tiny" else 4
    return {"a.window": w[:outer], "a.threshold": t1[:outer], "b.window": w[:inner], "b.threshold": t2[:inner]}


def market():
    import numpy as np

    from gpubt.data.market import FIELDS, Market
    from gpubt.data.synthetic import synthetic_market

    full = synthetic_market()
    rows = np.arange(full.n_days - DAYS, full.n_days)
    return Market(full.dates[rows], full.tickers, observed=full.observed[rows],
                  source=f"built-in, last {DAYS} days", **{f: getattr(full, f)[rows] for f in FIELDS})


def measure(backend: str, grid: str, memory: str, workers: int) -> dict:
    """One sweep in this process (run it in a fresh one): rate, peak RSS and the phase profile."""
    from gpubt.sweep import make_spec, run_sweep
    from gpubt.sweep import run as runner

    m = market()
    if grid == "batch":
        spec = make_spec(batch_template(), batch_parameters(), {"mode": "random", "samples": 1000, "seed": 7})
    elif grid in NAMED_SWEEPS:
        base, swept = NAMED_SWEEPS[grid]
        spec = make_spec(base(), swept())
    elif grid == "general":
        spec = make_spec(template(), parameters("pilot"))
        runner.fused_plan = lambda *args: "switched off"  # type: ignore[assignment]  # this process only
    else:
        spec = make_spec(template(), parameters(grid))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runner.PHASES.clear()
    t0 = time.perf_counter()
    if workers:
        from distributed import Client, LocalCluster

        # workers load the market themselves: the same slice, written once as Parquet files
        folder = Path(f"/tmp/gpubt-bench-sweep-{DAYS}")
        if not folder.exists():
            from gpubt.data.loaders import write_market_frames
            import polars as pl

            frames = {}
            for j, ticker in enumerate(m.tickers):
                keep = m.observed[:, j]
                frames[ticker] = pl.DataFrame({
                    "date": m.dates[keep], "open": m.open[keep, j], "high": m.high[keep, j],
                    "low": m.low[keep, j], "close": m.close[keep, j], "volume": m.volume[keep, j]})
            write_market_frames(frames, folder)
        from gpubt.sweep.distributed import WORKER_ENV

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address="127.0.0.1:0", env=WORKER_ENV) as cluster, Client(cluster) as client:
            t0 = time.perf_counter()  # cluster start-up excluded; the workers' market loads are in
            result = run_sweep(spec, data=str(folder), backend=backend, memory=memory, client=client)
            cold = time.perf_counter() - t0
            # Warm: again on the same workers with their kept plans dropped (as locally below),
            # so each worker's one-time market load and kernel loading are left out.
            warm = []
            for _ in range(WARM_RUNS):
                client.run(_forget)
                t0 = time.perf_counter()
                result = run_sweep(spec, data=str(folder), backend=backend, memory=memory, client=client)
                elapsed = time.perf_counter() - t0
                phases: dict[str, float] = {}
                for worker_phases in client.run(_phases).values():
                    for key, value in worker_phases.items():
                        phases[key] = phases.get(key, 0.0) + value
                warm.append((elapsed, phases))
            elapsed, phases = sorted(warm, key=lambda run: run[0])[len(warm) // 2]
            worker_rss = max(client.run(_rss_mb).values())
    else:
        result = run_sweep(spec, market=m, backend=backend, memory=memory)
        cold = time.perf_counter() - t0
        # Warm: the same sweep again in this process, prepared afresh (the fused plan and the
        # general path's graph and signal values are kept per process), so only the one-time
        # loading of compiled kernels is left out; the median of WARM_RUNS, with that run's phases.
        warm = []
        for _ in range(WARM_RUNS):
            _forget()
            t0 = time.perf_counter()
            result = run_sweep(spec, market=m, backend=backend, memory=memory)
            warm.append((time.perf_counter() - t0, dict(runner.PHASES)))
        elapsed, phases = sorted(warm, key=lambda run: run[0])[len(warm) // 2]
        worker_rss = None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from gpubt.backends import gpu_sweeps

    kernels = pattern_kernels(spec, m, backend) if gpu_sweeps(backend, spec.n_variants) and not workers else None
    return {
        "kernels": kernels,
        "backend": backend, "grid": grid, "variants": spec.n_variants, "seconds": elapsed,
        "cold_seconds": cold,
        "rate": spec.n_variants / elapsed, "chunk": result.chunk_size, "rss_mb": rss / 1024,
        "rss_before_mb": rss0 / 1024, "worker_rss_mb": worker_rss, "workers": workers,
        "days": int(result.table["days"][0]), "phases": {k: v / spec.n_variants * 1e6 for k, v in phases.items()},
        "best_sharpe": result.top(1)["sharpe"][0],
        "path": result.path,
    }


def pattern_kernels(spec, m, backend: str) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    """GPU: the fused kernel alone over every variant, with the day's pattern formed inline (the
    default) and in the CPU's passes over a scratch matrix: median ms of 3 runs each, one process."""
    from gpubt.sweep import run as runner
    from gpubt.sweep.device import DeviceTemplate

    template = runner.fused_template(spec, m, backend)
    if template is None:
        return None
    found = {}
    for inline in (True, False):
        device = DeviceTemplate(template, inline_pattern=inline)
        device.run(0, spec.n_variants)  # compiles this form
        times = []
        for _ in range(3):
            before = device.seconds["kernel"]
            device.run(0, spec.n_variants)
            times.append((device.seconds["kernel"] - before) * 1e3)
        found["inline" if inline else "passes"] = sorted(times)[1]
    return found


def _forget() -> None:
    """Drop this process's kept fused plans, general-path graphs and phase times."""
    from gpubt.sweep import run as runner

    runner._TEMPLATES.clear()
    runner._GRAPHS.clear()
    runner.PHASES.clear()


def _phases() -> dict[str, float]:
    from gpubt.sweep.run import PHASES

    return dict(PHASES)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_fresh_process(backend: str, grid: str, memory: str, workers: int = 0) -> dict | None:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", backend, grid, memory, str(workers)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    if done.returncode != 0:  # reported, and the other measurements go on
        print(f"FAILED: {backend} {grid}\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from benchmarks.common import record
    from gpubt.backends import gpu_sweeps, usable
    from gpubt.engine import BACKENDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(b for b in BACKENDS if b != "reference" and usable(b)[0]),
                        help="comma-separated (default: every backend usable here)")
    parser.add_argument("--memory", default="2GB")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--local-workers", type=int, default=2, help="also run on a Dask LocalCluster (0: skip)")
    parser.add_argument("--reference", action="store_true", help="also time the reference on a 16-variant grid")
    parser.add_argument("--huge", action="store_true", help="also run the 1,048,576-variant grid (32 values each)")
    parser.add_argument("--batch", action="store_true",
                        help="also run the batch case: 1,000 random strategies of 10 indicator nodes each")
    parser.add_argument("--general", action="store_true",
                        help="also run three general-path sweeps: the template's 1,024-variant pilot grid with "
                             "the fused path off, a 16,384-variant momentum-rotation (function node) sweep, and a "
                             "function node's 64 settings on a 601-node tree")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--measure", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        backend, grid, memory, workers = args.measure
        print(json.dumps(measure(backend, grid, memory, int(workers))))
        return

    load_before = os.getloadavg()[0]
    rows, notes = [], []
    profiles: list[tuple[str, dict]] = []
    header = ["backend", "workers", "grid", "variants", "days", "chunk", "cold s", "warm s", "strategies/s (warm)",
              "vs target (50k/s CPU, 2M/s GPU)", "peak RSS MiB", *PHASE_NOTES]
    backends = [b for b in args.backends.split(",") if b]
    if args.reference:
        backends.append("reference")
    for backend in backends:
        pilot = in_fresh_process(backend, "tiny" if backend == "reference" else "pilot", args.memory)
        if pilot is None:
            continue
        full = 65_536
        projected = full / pilot["rate"]
        runs = [("local", 0)] + ([("dask", args.local_workers)] if args.local_workers and backend != "reference" else [])
        if args.huge and backend != "reference":
            runs.append(("huge", 0))
        if args.batch and backend != "reference":
            runs.append(("batch", 0))
        if args.general and backend != "reference":
            runs += [(kind, 0) for kind in GENERAL_SWEEPS]
        for kind, workers in runs:
            if kind == "huge":
                r = in_fresh_process(backend, "huge", args.memory)
                grid_note = f"{backend}: the 32⁴ = 1,048,576 grid"
            elif kind == "batch":
                r = in_fresh_process(backend, "batch", args.memory)
                grid_note = (f"{backend}: the batch case, 1,000 random strategies of {BATCH_NODES} indicator nodes "
                             "(RSI or Stochastic %K × 8 windows × 11 tickers × gt/lt × 3 thresholds per node)")
            elif kind in GENERAL_SWEEPS:
                r = in_fresh_process(backend, kind, args.memory)
                grid_note = f"{backend}: {GENERAL_SWEEPS[kind]}"
            elif backend == "reference":
                r, grid_note = pilot, f"reference: a {pilot['variants']}-variant grid only (65,536 would take ~{projected / 3600:.1f} h)"
            else:
                grid = "full" if projected / max(1, workers or 1) <= args.max_seconds else "small"
                r = in_fresh_process(backend, grid, args.memory, workers)
                grid_note = (f"{backend}{' ×' + str(workers) + ' workers' if workers else ''}: "
                             + ("the full 65,536 grid" if grid == "full" else
                                f"16×16×4×4 = 4,096 (the full grid would take ~{projected / max(1, workers or 1):.0f} s "
                                f"> {args.max_seconds:.0f} s)"))
            if r is None:
                continue
            if kind in GENERAL_SWEEPS:
                grid_note += f" ({r['path']})"
            if r.get("kernels"):
                k = r["kernels"]
                grid_note += (f" (the kernel alone: {k['inline']:.1f} ms with the pattern formed inline, "
                              f"{k['passes']:.1f} ms in passes over a scratch matrix)")
            notes.append(grid_note)
            peak = r["rss_mb"] if not r["workers"] else max(r["rss_mb"], r["worker_rss_mb"] or 0)
            ph = r["phases"]
            if not r["workers"]:
                profiles.append((backend, ph))
            rows.append([
                backend, str(r["workers"] or "-"), r["grid"], f"{r['variants']:,}", f"{r['days']:,}", str(r["chunk"]),
                f"{r['cold_seconds']:.2f}", f"{r['seconds']:.2f}", f"{r['rate']:,.0f}", f"{r['rate'] / (TARGET_GPU_RATE if gpu_sweeps(backend, r['variants']) else TARGET_RATE):.1%}",
                f"{peak:,.0f}" + ("" if not r["workers"] else f" (driver {r['rss_mb']:,.0f})"),
                *("-" if k not in ph else f"{ph[k]:.1f}" if ph[k] >= 1 else f"{ph[k]:.2f}" for k in PHASE_NOTES),
            ])
    load_after = os.getloadavg()[0]
    text_notes = (
        f"template if RSI(SPY,w1)>t1 then UVXY else (if RSI(QQQ,w2)<t2 then TQQQ else SPY), 16 values each; "
        f"built-in market, last {DAYS:,} days (backtests start at UVXY's first price); memory {args.memory}; "
        "wall time per sweep in a fresh process: cold = its first sweep (loading the compiled Numba kernels "
        "from the on-disk cache included), warm = the same sweep again, prepared afresh, median of "
        f"{WARM_RUNS} (Dask rows: workers started before timing; cold = the first sweep on them, with their "
        "market loads; warm = the same sweep again with the workers' kept plans dropped) (peak RSS = getrusage of that process; with Dask, the largest "
        "worker's, driver in brackets; phases = µs of CPU per variant in each phase of `run_chunk`, "
        "summed over the workers for Dask rows); targets: 50,000 strategies/s on the 2-core CPU, 2,000,000 on an "
        "H100, ≤ 2 GB. "
        + "; ".join(notes)
        + f"; 1-min load average {load_before:.1f} before, {load_after:.1f} after (other processes share the {os.cpu_count()} cores)"
    )
    after = profile_paragraph(profiles)
    if args.no_record:
        print(text_notes)
        for row in rows:
            print(" | ".join(row))
        print(after)
    else:
        record("Sweep throughput (bench_sweep.py)", header, rows, text_notes,
               ("numpy", "polars", "numba", "distributed", "cupy"), after=after)


PHASE_NOTES = {
    "prepare": "fused path: compiling each swept node's distinct settings, one backend call for their "
               "signals, the branch-pattern tables",
    "fused": "fused path: the kernel (patterns, returns, costs, every metric) over the variants (on a GPU "
             "also the table's parameter and date columns, built on the host while the kernel runs)",
    "parse": "`parse_request` of each variant (pydantic, then the whole-tree rules)",
    "compile": "compiling each variant's tree into plan steps (graph nodes themselves are shared)",
    "evaluate": "backend calls for the signals new to a chunk (the rest come from the shared cache)",
    "allocate": "each variant's plan steps (sub-trees variants agree on: once per chunk), its weights "
                "placed into the (S, D, N) batch with the holdings count",
    "simulate": "`simulate` on the (S, D, N) batch: one Numba pass per strategy (returns, turnover, "
                "costs, equity, drawdown)",
    "metrics": "`compute_metrics` on (S, D)",
    "table": "the result table",
    "to_device": "GPU: the fused tables copied to the device (and the CUDA context made), once per sweep",
    "gpu kernel": "GPU: the fused kernel's launches (every metric of every variant), synchronised, less "
                  "the host work done meanwhile",
    "gpu to_host": "GPU: the metrics table copied back",
    "backtest": "the reference interpreter's whole backtest of one variant (it has no batch form)",
}


def profile_paragraph(profiles: list[tuple[str, dict]]) -> str:
    """Where the time of each local run goes, largest phase first."""
    lines = []
    for backend, phases in profiles:
        total = sum(phases.values()) or 1.0
        digits = 0 if total >= 10 else 2  # a GPU sweep spends well under a µs per variant
        parts = ", ".join(f"{k} {v:.{digits}f} µs ({v / total:.0%})"
                          for k, v in sorted(phases.items(), key=lambda kv: -kv[1]))
        lines.append(f"Where the time goes ({backend}, local, µs per variant, {total:.{digits}f} in all): {parts}.")
    lines.append("Phases: " + "; ".join(f"{k}: {v}" for k, v in PHASE_NOTES.items()) + ".")
    return "\n\n".join(lines)


if __name__ == "__main__":
    main()
