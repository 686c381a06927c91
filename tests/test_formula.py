"""Custom indicator formulas (spec §4.4): the grammar, its errors and limits, lookbacks, and the
reference evaluation against hand-computed series and Python's own arithmetic."""

from __future__ import annotations

import builtins
import math
import re
import warnings
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpubt.data.market import Bars
from gpubt.errors import GpubtError
from gpubt.reference.formula_eval import evaluate_formula
from gpubt.schema.formula import (
    MAX_DEPTH,
    MAX_LENGTH,
    BinOp,
    Field,
    Formula,
    Func,
    MetricCall,
    Neg,
    Num,
    Window,
    formula_lookback,
    parse_formula,
    resolve_int,
)

nan = np.nan
SMA = "Simple Moving Average"


def ast(text: str):
    return parse_formula(text, name="T").ast


def fake_indicator(metric: str, bars: Bars, window: int) -> np.ndarray:
    """Only the SMA, as a plain loop: enough to see metric calls wired through."""
    assert metric == SMA, metric
    p = max(1, window)
    out = np.full(bars.close.size, nan)
    for t in range(p - 1, bars.close.size):
        out[t] = sum(bars.close[t - p + 1 : t + 1]) / p
    return out


def make_bars(close: list[float]) -> Bars:
    c = np.array(close, dtype=np.float64)
    opens = np.array([9, 11, 12, 14, 15, 15], dtype=np.float64)[: c.size]
    volume = np.array([100, 0, 50, 200, 0, 10], dtype=np.float64)[: c.size]
    return Bars(opens, c + 1, c - 1, c, volume)


def value(text: str, window: int = 0) -> float:
    """A constant formula's value, read off a one-day series."""
    formula = parse_formula(text, name="T")
    return float(evaluate_formula(formula, make_bars([1.0]), window, fake_indicator)[0])


# ------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2+3*4", 14),
        ("(2+3)*4", 20),
        ("2^3^2", 512),
        ("(2^3)^2", 64),
        ("-2^2", -4),
        ("(-2)^2", 4),
        ("1-2-3", -4),
        ("8/4/2", 1),
        ("2^-1", 0.5),
        ("--3", 3),
        ("2*-3", -6),
        ("1e-3 * 2E+3 + .5 + 3.", 5.5),
    ],
)
def test_precedence_and_associativity(text: str, expected: float) -> None:
    assert value(text) == expected


def test_ast_shapes() -> None:
    assert ast("2+3*4") == BinOp("+", Num(2), BinOp("*", Num(3), Num(4)))
    assert ast("1-2-3") == BinOp("-", BinOp("-", Num(1), Num(2)), Num(3))
    assert ast("2^3^2") == BinOp("^", Num(2), BinOp("^", Num(3), Num(2)))
    assert ast("-2^2") == Neg(BinOp("^", Num(2), Num(2)))
    assert ast("SMA(50) / SMA(200) - 1") == BinOp(
        "-", BinOp("/", MetricCall(SMA, Num(50)), MetricCall(SMA, Num(200))), Num(1)
    )


def test_fields_window_and_case() -> None:
    assert ast("Close + OPEN*high - low/Volume") == BinOp(
        "-",
        BinOp("+", Field("close"), BinOp("*", Field("open"), Field("high"))),
        BinOp("/", Field("low"), Field("volume")),
    )
    assert ast("WINDOW * 2") == BinOp("*", Window(), Num(2))
    assert ast("EMA(window * 2)") == MetricCall(
        "Exponential Moving Average", BinOp("*", Window(), Num(2))
    )
    assert ast("current_price(0)") == MetricCall("Current Price", Num(0))
    assert ast("Current_Price(0)") == ast("CURRENT_PRICE(0)")
    assert ast("MFI(14) + atr(14) + rsi(window)") == BinOp(
        "+",
        BinOp("+", MetricCall("Money Flow Index", Num(14)), MetricCall("ATR", Num(14))),
        MetricCall("Relative Strength Index", Window()),
    )


def test_nested_functions() -> None:
    assert ast("max(abs(diff(close, 1)), sqrt(MEAN(close, window)))") == Func(
        "max",
        (
            Func("abs", (Func("diff", (Field("close"), Num(1))),)),
            Func("sqrt", (Func("mean", (Field("close"), Window())),)),
        ),
    )


def test_equal_formulas_have_equal_hashable_asts() -> None:
    a = parse_formula("SMA(50)/SMA(200)-1", name="A")
    b = parse_formula("  sma( 50 ) /\tSimple_Moving_Average(200.0)\n - 1e0 ", name="B")
    assert a.ast == b.ast and hash(a.ast) == hash(b.ast)
    assert a == b and hash(a) == hash(b)  # a Formula compares by its AST, not its name or text
    assert a.source == "SMA(50)/SMA(200)-1" and b.name == "B"
    assert isinstance(a, Formula)
    assert ast("1-2-3") != ast("1-(2-3)")
    assert len({ast("mean(close, 3)"), ast("MEAN(Close,3.0)"), ast("mean(close, 4)")}) == 2


MALFORMED = [
    ("", 1, "empty formula"),
    ("  \t", 4, "empty formula"),
    ("1 +", 4, "unexpected end of formula"),
    ("(1 + 2", 7, "missing ')'"),
    ("1 + 2)", 6, "unexpected ')'"),
    ("SMA(50) / SMA(200) - 1)", 23, "unexpected ')'"),
    ("()", 2, "unexpected ')'"),
    ("mean(close,)", 12, "unexpected ')'"),
    ("foo + 1", 1, "unknown name 'foo'"),
    ("close + smaa(3)", 9, "did you mean 'SMA'"),
    ("__import__('os')", 1, "unknown name '__import__'"),
    ("abs(1, 2)", 1, "wrong number of arguments to 'abs'"),
    ("close - max(close)", 9, "wrong number of arguments to 'max'"),
    ("SMA(14, 2)", 1, "wrong number of arguments to 'SMA'"),
    ("shift(close)", 1, "wrong number of arguments to 'shift'"),
    ("mean(close, close)", 13, "not constant"),
    ("shift(close, SMA(3))", 14, "not constant"),
    ("mean(close, 0)", 13, "got 0"),
    ("shift(close, -1)", 14, "got -1"),
    ("SMA(2.5)", 5, "got 2.5"),
    ("SMA(1e6)", 5, "to 100000"),
    ("1 2", 3, "unexpected '2'"),
    ("1.2.3", 4, "unexpected '.3'"),
    ("close $ 2", 7, "character '$'"),
    ("2 ** 3", 4, "unexpected '*'"),
    ("+1", 1, "unexpected '+'"),
    ("close(3)", 6, "'close' is a field"),
    ("window(3)", 7, "not a function"),
    ("SMA", 4, "'(' after 'SMA'"),
    ("abs 3", 5, "'(' after 'abs'"),
    ("1e999", 1, "too large"),
    ("2e", 2, "unexpected 'e'"),
]


@pytest.mark.parametrize(("text", "position", "fragment"), MALFORMED)
def test_malformed_formula(text: str, position: int, fragment: str) -> None:
    with pytest.raises(GpubtError) as info:
        parse_formula(text, name="Trend")
    message = info.value.message
    assert message.startswith("custom indicator 'Trend': ")
    assert fragment in message
    reported = re.search(r"at position (\d+)", message)
    assert reported is not None and int(reported.group(1)) == position
    assert info.value.status == 400 and info.value.path == ""


def test_brief_example_message() -> None:
    with pytest.raises(GpubtError) as info:
        parse_formula("SMA(50) / ()", name="Trend")
    assert info.value.message == (
        "custom indicator 'Trend': unexpected ')' at position 12 "
        "(expected a number, field, function or '(')"
    )


def test_unknown_name_lists_allowed_names() -> None:
    with pytest.raises(GpubtError) as info:
        parse_formula("volumne * 2", name="T")
    message = info.value.message
    assert "did you mean 'volume'" in message
    assert "close, open, high, low, volume" in message and "highest" in message


def test_no_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("eval/exec used on a formula")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert ast("1 + 2") == BinOp("+", Num(1), Num(2))
    for text in ("__import__('os').system('true')", "open('x')", "(lambda: 1)()"):
        with pytest.raises(GpubtError, match="custom indicator 'T'"):
            parse_formula(text, name="T")


def test_length_limit() -> None:
    assert parse_formula("1" + " " * (MAX_LENGTH - 1), name="T").ast == Num(1)
    with pytest.raises(GpubtError) as info:
        parse_formula("1+" * 1000 + "1", name="T")
    assert info.value.status == 413 and "too long" in info.value.message
    assert "at position 2001" in info.value.message


@pytest.mark.parametrize(
    "text",
    [
        "(" * 999 + "1" + ")" * 999,
        "-" * 1999 + "1",
        "abs(" * 399 + "1" + ")" * 399,
        "2^" * 999 + "2",
        "+".join(["1"] * 999),
        "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH,
        "+".join(["1"] * (MAX_DEPTH + 1)),
    ],
)
def test_depth_limit(text: str) -> None:
    with pytest.raises(GpubtError) as info:  # an error, never a RecursionError
        parse_formula(text, name="T")
    assert info.value.status == 413 and "nested too deeply" in info.value.message


def test_depth_limit_boundary() -> None:
    # a number is depth 1; each parenthesis, call, operator adds one
    assert ast("(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)) == Num(1)
    assert value("+".join(["1"] * MAX_DEPTH)) == MAX_DEPTH
    assert value("-" * (MAX_DEPTH - 1) + "1") == -1


# ------------------------------------------------------------------------------------ lookback


@pytest.mark.parametrize(
    ("text", "window", "expected"),
    [
        ("SMA(50) / SMA(200) - 1", 0, 199),
        ("close * 2 + window", 10, 0),
        ("RSI(14)", 0, 14),
        ("SMA(0)", 0, 0),
        ("-ATR(14)", 0, 14),
        ("MACD_Histogram(1)", 0, 33),
        ("shift(close, 5)", 0, 5),
        ("diff(SMA(10), 3)", 0, 12),
        ("mean(close, 20)", 0, 19),
        ("lowest(close, 1)", 0, 0),
        ("std(RSI(window), window)", 14, 27),
        ("highest(shift(close, 2), 5)", 0, 6),
        ("SMA(window * 2)", 10, 19),
        ("max(SMA(5), EMA(8)) - abs(shift(close, 9))", 0, 9),
        ("sum(close, window / 3 * 3)", 10, 9),
    ],
)
def test_lookback(text: str, window: int, expected: int) -> None:
    assert formula_lookback(parse_formula(text, name="T"), window) == expected


def test_window_argument_checked_once_window_is_known() -> None:
    formula = parse_formula("mean(close, window - 20)", name="Slow")
    assert formula_lookback(formula, 25) == 4
    with pytest.raises(GpubtError, match=r"custom indicator 'Slow'.*window = 14.*got -6"):
        formula_lookback(formula, 14)
    with pytest.raises(GpubtError, match="got 2.5"):
        resolve_int(ast("window / 2"), 5)
    assert resolve_int(ast("window / 2"), 6) == 3
    with pytest.raises(GpubtError, match="got 0"):
        resolve_int(ast("window - 3"), 3, minimum=1)


# ---------------------------------------------------------------------------------- evaluation

CLOSE = [10.0, 12.0, 11.0, 15.0, 14.0, 16.0]


def evaluate(text: str, window: int = 0, close: list[float] = CLOSE) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning may leak out of the evaluator
        formula = parse_formula(text, name="T")
        return evaluate_formula(formula, make_bars(close), window, fake_indicator)


@pytest.mark.parametrize(
    ("text", "window", "expected"),
    [
        ("close", 0, CLOSE),
        ("shift(close, 1)", 0, [nan, 10, 12, 11, 15, 14]),
        ("shift(close, 0)", 0, CLOSE),
        ("shift(close, window - 1)", 3, [nan, nan, 10, 12, 11, 15]),
        ("diff(close, 2)", 0, [nan, nan, 1, 3, 3, 1]),
        ("mean(close, 3)", 0, [nan, nan, 11, 38 / 3, 40 / 3, 15]),
        ("mean(close, window)", 3, [nan, nan, 11, 38 / 3, 40 / 3, 15]),
        ("std(close, 2)", 0, [nan, 1, 0.5, 2, 0.5, 1]),
        ("std(close, 1)", 0, [0, 0, 0, 0, 0, 0]),
        ("sum(close, 3)", 0, [nan, nan, 33, 38, 40, 45]),
        ("highest(close, 3)", 0, [nan, nan, 12, 15, 15, 16]),
        ("lowest(close, 3)", 0, [nan, nan, 10, 11, 11, 14]),
        ("mean(close, 7)", 0, [nan] * 6),
        ("min(close, 13)", 0, [10, 12, 11, 13, 13, 13]),
        ("max(close, open)", 0, [10, 12, 12, 15, 15, 16]),
        ("high - low", 0, [2] * 6),
        ("abs(close - 13)", 0, [3, 1, 2, 2, 1, 3]),
        ("log(close - 12)", 0, [nan, nan, nan, math.log(3), math.log(2), math.log(4)]),
        ("sqrt(close - 12)", 0, [nan, 0, nan, math.sqrt(3), math.sqrt(2), 2]),
        ("(close - 12) ^ 0.5", 0, [nan, 0, nan, math.sqrt(3), math.sqrt(2), 2]),
        ("0 ^ (close - 12)", 0, [nan, 1, nan, 0, 0, 0]),
        ("1 / (close - 12)", 0, [-0.5, nan, -1, 1 / 3, 0.5, 0.25]),
        ("1 / (1 / (close - 12))", 0, [-2, nan, -1, 3, 2, 4]),
        ("close / volume", 0, [0.1, nan, 0.22, 0.075, nan, 1.6]),
        ("exp(close * 100)", 0, [nan] * 6),
        ("exp(0 * close)", 0, [1] * 6),
        ("close * window", 2, [20, 24, 22, 30, 28, 32]),
        ("-window", 7, [-7] * 6),
        ("SMA(2)", 0, [nan, 11, 11.5, 13, 14.5, 15]),
        ("SMA(window * 2) - SMA(window)", 1, [nan, -1, 0.5, -2, 0.5, -1]),
        ("diff(SMA(2), 1)", 0, [nan, nan, 0.5, 1.5, 1.5, 0.5]),
    ],
)
def test_evaluation(text: str, window: int, expected: list[float]) -> None:
    np.testing.assert_allclose(evaluate(text, window), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("close + 1", [11, 13, nan, 16, 15, 17]),
        ("shift(close, 1)", [nan, 10, 12, nan, 15, 14]),
        ("diff(close, 1)", [nan, 2, nan, nan, -1, 2]),
        ("mean(close, 2)", [nan, 11, nan, nan, 14.5, 15]),
        ("std(close, 2)", [nan, 1, nan, nan, 0.5, 1]),
        ("sum(close, 2)", [nan, 22, nan, nan, 29, 30]),
        ("highest(close, 2)", [nan, 12, nan, nan, 15, 16]),
        ("lowest(close, 2)", [nan, 10, nan, nan, 14, 14]),
        ("min(close, 0)", [0, 0, nan, 0, 0, 0]),
    ],
)
def test_missing_values_propagate(text: str, expected: list[float]) -> None:
    close = [10.0, 12.0, nan, 15.0, 14.0, 16.0]
    np.testing.assert_allclose(evaluate(text, close=close), expected, rtol=1e-12)


def test_metric_calls_get_canonical_name_and_resolved_window() -> None:
    calls: list[tuple[str, int]] = []

    def recording(metric: str, bars: Bars, window: int) -> np.ndarray:
        calls.append((metric, window))
        return fake_indicator(metric, bars, window)

    formula = parse_formula("sma(window + 1) / Simple_Moving_Average(3)", name="T")
    evaluate_formula(formula, make_bars(CLOSE), 4, recording)
    assert calls == [(SMA, 5), (SMA, 3)]


@pytest.mark.parametrize(
    "text",
    [
        "close",
        "shift(close, 2)",
        "diff(SMA(2), 1)",
        "std(mean(close, 2), 3)",
        "highest(SMA(3), 2) + SMA(2)",
    ],
)
def test_lookback_matches_first_value(text: str) -> None:
    series = evaluate(text)
    first = int(np.flatnonzero(~np.isnan(series))[0])
    assert formula_lookback(parse_formula(text, name="T"), 0) == first


def test_bad_window_at_evaluation_names_indicator() -> None:
    with pytest.raises(GpubtError, match="custom indicator 'T'.*got 0"):
        evaluate("mean(close, window - 2)", window=2)


# ------------------------------------------------------------------- property: Python arithmetic

ATOM, POWER, UNARY, PRODUCT, SUM = 5, 4, 3, 2, 1  # binding strength of what a text ends up as
PREC = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "^": POWER}
WINDOW_VALUE, CLOSE_VALUE = 7, 2.5


class Gen(NamedTuple):
    """A generated expression: its text, its value by Python float arithmetic, how tightly its
    text binds, and its depth in the parser's counting."""

    text: str
    value: float
    prec: int
    depth: int


def py_apply(op: str, a: float, b: float) -> float:
    """Python's float arithmetic with the formula rules: anything not finite is missing. The
    operands are made floats first: Python's exact integers would compute 7 ** 823543 whole and
    fail converting it, where the engine's float64 overflows to missing."""
    try:
        a, b = float(a), float(b)
        if op == "+":
            out = a + b
        elif op == "-":
            out = a - b
        elif op == "*":
            out = a * b
        elif op == "/":
            out = a / b
        else:
            out = a**b
    except (ZeroDivisionError, OverflowError):
        return math.nan
    if isinstance(out, complex) or not math.isfinite(out):
        return math.nan
    return out


def combine(op: str, a: Gen, b: Gen, space: str) -> Gen:
    p = PREC[op]
    left_parens = a.prec < p or (op == "^" and a.prec <= POWER)
    right_parens = b.prec < UNARY if op == "^" else b.prec <= p
    left = f"({a.text})" if left_parens else a.text
    right = f"({b.text})" if right_parens else b.text
    depth = 1 + max(a.depth + left_parens, b.depth + right_parens)
    return Gen(f"{left}{space}{op}{space}{right}", py_apply(op, a.value, b.value), p, depth)


def negate(a: Gen) -> Gen:
    operand = f"({a.text})" if a.prec < UNARY else a.text
    return Gen(f"-{operand}", -a.value, UNARY, 1 + a.depth + (a.prec < UNARY))


def number(text: str) -> Gen:
    return Gen(text, float(text), ATOM, 1)


leaves = st.one_of(
    st.integers(0, 1000).map(str).map(number),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: number(f"{t[0]}.{t[1]}")),
    st.tuples(st.integers(1, 99), st.sampled_from("eE"), st.integers(-6, 6)).map(
        lambda t: number(f"{t[0]}{t[1]}{t[2]}")
    ),
    st.just(Gen("window", WINDOW_VALUE, ATOM, 1)),
    st.just(Gen("close", CLOSE_VALUE, ATOM, 1)),
)


def extend(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    spaces = st.sampled_from(["", " "])
    binary = st.builds(combine, st.sampled_from("+-*/^"), children, children, spaces)
    parens = children.map(lambda a: Gen(f"({a.text})", a.value, ATOM, a.depth + 1))
    return st.one_of(binary, children.map(negate), parens)


@settings(max_examples=400, deadline=None)
@given(st.recursive(leaves, extend, max_leaves=16))
def test_arithmetic_matches_python(expr: Gen) -> None:
    assume(expr.depth <= MAX_DEPTH)
    bars = Bars(*(np.full(3, CLOSE_VALUE) for _ in range(5)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        formula = parse_formula(expr.text, name="T")
        got = evaluate_formula(formula, bars, WINDOW_VALUE, fake_indicator)
    if math.isnan(expr.value):
        assert np.isnan(got).all(), expr.text
    else:
        for g in got:
            assert math.isclose(g, expr.value, rel_tol=1e-9, abs_tol=1e-12), (expr.text, g)
