"""Custom indicator formulas (spec §4.4): our own tokenizer and recursive-descent parser.

User text never reaches Python's eval, exec or ast: it is read by the grammar below into an
immutable AST of frozen dataclasses that the reference interpreter evaluates and the compiler
translates. Equal formulas give equal (and equally hashed) ASTs, so they can share work.

Grammar (EBNF). Field, function and `window` names are case-insensitive; a metric name is looked
up in the catalogue as written, then with "_" read as " " (SMA, RSI, Current_Price, MFI, ATR).

    formula  = expr END ;
    expr     = term { ( "+" | "-" ) term } ;                  (* left-associative *)
    term     = unary { ( "*" | "/" ) unary } ;                (* left-associative *)
    unary    = "-" unary | power ;
    power    = primary [ "^" unary ] ;     (* right-associative, tighter than unary minus *)
    primary  = number | field | "window" | call | "(" expr ")" ;
    call     = ( "abs" | "log" | "exp" | "sqrt" ) "(" expr ")"
             | ( "min" | "max" ) "(" expr "," expr ")"
             | ( "shift" | "diff" | "mean" | "std" | "sum" | "highest" | "lowest" )
               "(" expr "," const ")"
             | metric "(" const ")" ;
    const    = expr ;     (* only numbers, window, + - * / ^, unary -, abs log exp sqrt min max *)
    field    = "close" | "open" | "high" | "low" | "volume" ;
    metric   = name ;                                       (* a catalogue metric or alias *)
    name     = ( letter | "_" ) { letter | digit | "_" } ;
    number   = ( digits [ "." [ digits ] ] | "." digits ) [ ( "e" | "E" ) [ "+" | "-" ] digits ] ;

Values: every node's value is a finite float or missing (NaN); an operation whose result is not
finite (x/0, log 0, sqrt(−1), overflow) gives missing. A `const` is evaluated once the condition's
window is known and must then be an integer (≥ 1 for mean/std/sum/highest/lowest, else ≥ 0).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from gpubt import libm
from gpubt.errors import GpubtError
from gpubt.schema.catalogue import METRICS, resolve_metric

MAX_LENGTH = 2000  # characters of formula text
MAX_DEPTH = 50  # height of the expression tree, parentheses counted as a level
MAX_WINDOW = 100_000  # largest n or metric window a const may resolve to (≈ 400 years of days)

FIELDS = ("close", "open", "high", "low", "volume")
POINTWISE_ARITY = {"abs": 1, "log": 1, "exp": 1, "sqrt": 1, "min": 2, "max": 2}
SERIES_MIN_N = {"shift": 0, "diff": 0, "mean": 1, "std": 1, "sum": 1, "highest": 1, "lowest": 1}


# ---------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Field:
    name: str  # one of FIELDS, lower case


@dataclass(frozen=True)
class Window:
    """The condition's window, known only when the formula is used."""


@dataclass(frozen=True)
class Neg:
    operand: Expr


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / ^
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Func:
    name: str  # a key of POINTWISE_ARITY or SERIES_MIN_N, lower case
    args: tuple[Expr, ...]  # series functions: (x, n) with n a const


@dataclass(frozen=True)
class MetricCall:
    metric: str  # canonical catalogue name
    window: Expr  # a const


Expr = Num | Field | Window | Neg | BinOp | Func | MetricCall


@dataclass(frozen=True)
class Formula:
    """A parsed custom indicator. Compares by AST only: the same formula under two names is one
    computation."""

    ast: Expr
    source: str = field(compare=False)
    name: str = field(compare=False)


# ------------------------------------------------------------------------------------ arithmetic

_ELEMENTWISE = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "^": libm.power,
    "neg": np.negative,
    "abs": np.abs,
    "log": libm.log,  # the C library's on every machine (`gpubt.libm`)
    "exp": libm.exp,
    "sqrt": np.sqrt,
    "min": np.minimum,
    "max": np.maximum,
}


def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Missing wherever a value is not finite: a formula never carries ±inf."""
    return np.where(np.isfinite(values), values, np.nan)


def elementwise(op: str, *args: np.ndarray) -> np.ndarray:
    """Apply a binary operator, "neg", or a pointwise function. Defined once here so constant
    folding of window arguments and every evaluator share the same missing-value rules."""
    with np.errstate(all="ignore"):
        out = _ELEMENTWISE[op](*(np.asarray(a, dtype=np.float64) for a in args))
    return finite_or_nan(out)


def _const_value(expr: Expr, window: float) -> float:
    match expr:
        case Num(value):
            return value
        case Window():
            return window
        case Neg(operand):
            return float(elementwise("neg", _const_value(operand, window)))
        case BinOp(op, left, right):
            return float(elementwise(op, _const_value(left, window), _const_value(right, window)))
        case Func(name, args) if name in POINTWISE_ARITY:
            return float(elementwise(name, *(_const_value(a, window) for a in args)))
    raise TypeError(f"not a constant expression: {expr!r}")  # the parser only lets consts through


def _is_const(expr: Expr) -> bool:
    match expr:
        case Num() | Window():
            return True
        case Neg(operand):
            return _is_const(operand)
        case BinOp(_, left, right):
            return _is_const(left) and _is_const(right)
        case Func(name, args) if name in POINTWISE_ARITY:
            return all(_is_const(a) for a in args)
    return False


def _uses_window(expr: Expr) -> bool:
    match expr:
        case Window():
            return True
        case Neg(operand):
            return _uses_window(operand)
        case BinOp(_, left, right):
            return _uses_window(left) or _uses_window(right)
        case Func(_, args):
            return any(_uses_window(a) for a in args)
    return False


def _int_problem(value: float, minimum: int) -> str | None:
    """What a const's value should have been, when it is not a usable n (None if it is). A
    tolerance of 1e-9 forgives float noise such as window / 3 * 3."""
    if value == value:
        n = round(value)
        if abs(value - n) <= 1e-9 * max(1.0, abs(value)) and minimum <= n <= MAX_WINDOW:
            return None
    got = f"{value:.10g}" if value == value else "a missing value"
    return f"an integer from {minimum} to {MAX_WINDOW}, got {got}"


def resolve_int(expr: Expr, window: int, *, minimum: int = 0, name: str = "") -> int:
    """The integer value of a const for the condition's window (the n of a series function, the
    window of a metric call); a GpubtError naming the indicator when it is not one ≥ minimum."""
    value = _const_value(expr, float(window))
    problem = _int_problem(value, minimum)
    if problem is not None:
        prefix = f"custom indicator {name!r}: " if name else ""
        raise GpubtError(f"{prefix}bad window argument when window = {window} (expected {problem})")
    return round(value)


def window_arg(node: Func | MetricCall, window: int, name: str = "") -> int:
    """The n of a series function or the window of a metric call, with the right minimum."""
    if isinstance(node, MetricCall):
        return resolve_int(node.window, window, name=name)
    return resolve_int(node.args[1], window, minimum=SERIES_MIN_N[node.name], name=name)


def formula_window(window: int) -> int:
    """The value of `window` inside a formula: a condition's window 0 means 1 (spec §2)."""
    return max(1, window)


def formula_lookback(formula: Formula, window: int) -> int:
    """Days after the ticker's first price before the formula's first value can exist (the
    warm-up start rule, spec §6)."""
    return _lookback(formula.ast, window, formula.name)


def _lookback(expr: Expr, window: int, name: str) -> int:
    match expr:
        case Num() | Field() | Window():
            return 0
        case Neg(operand):
            return _lookback(operand, window, name)
        case BinOp(_, left, right):
            return max(_lookback(left, window, name), _lookback(right, window, name))
        case MetricCall(metric, _):
            info = resolve_metric(metric)
            assert info is not None  # the parser stored a canonical name
            return info.lookback(window_arg(expr, window, name))
        case Func(fname, args) if fname in SERIES_MIN_N:
            n = window_arg(expr, window, name)
            inner = _lookback(args[0], window, name)
            return inner + n if fname in ("shift", "diff") else inner + n - 1
        case Func(_, args):
            return max(_lookback(a, window, name) for a in args)
    raise TypeError(f"not a formula node: {expr!r}")


# -------------------------------------------------------------------------------------- tokenizer


class _Token(NamedTuple):
    kind: str  # "number", "name", "op", "(", ")", ",", "end", or "bad" (an unknown character)
    text: str
    pos: int  # 1-based character position


_TOKEN = re.compile(
    r"(?P<space>[ \t\r\n]+)"
    r"|(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>[-+*/^])"
    r"|(?P<punct>[(),])",
    re.ASCII,
)


def _tokenize(text: str) -> list[_Token]:
    """All tokens up front; a character outside the grammar becomes a "bad" token so the parser
    reports errors strictly left to right (an unknown name before a stray quote after it)."""
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            tokens.append(_Token("bad", text[i], i + 1))
            i += 1
            continue
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(_Token(m.group() if kind == "punct" else kind, m.group(), i + 1))
        i = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of formula"
    if tok.kind == "bad":
        return f"character {tok.text!r}"
    return repr(tok.text)


# ----------------------------------------------------------------------------------------- parser

_OPERAND = "a number, field, function or '('"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_METRIC_SPELLINGS = tuple(
    s.replace(" ", "_")
    for m in METRICS
    for s in (m.name, *m.aliases)
    if _IDENTIFIER.fullmatch(s.replace(" ", "_"))
)
_KNOWN_NAMES = {
    n.lower(): n
    for n in (*FIELDS, "window", *POINTWISE_ARITY, *SERIES_MIN_N, *_METRIC_SPELLINGS)
}
_ALLOWED_NAMES = (
    f"a field ({', '.join(FIELDS)}), window, a function "
    f"({', '.join((*POINTWISE_ARITY, *SERIES_MIN_N))}) or a catalogue metric written with "
    "'_' for spaces, e.g. SMA, RSI, Current_Price"
)

_Parsed = tuple[Expr, int]  # a node and its depth


class _Arg(NamedTuple):
    expr: Expr
    depth: int
    pos: int  # where the argument starts


def _resolve_metric_name(word: str) -> str | None:
    info = resolve_metric(word) or resolve_metric(word.replace("_", " "))
    return info.name if info is not None else None


class _Parser:
    """Recursive descent over the token list, one method per grammar rule. Each rule returns its
    node with its depth; `_level` counts the rules currently open so that the recursion itself
    stops at MAX_DEPTH before Python's stack could."""

    def __init__(self, text: str, name: str) -> None:
        self._indicator = name
        self._tokens = _tokenize(text)
        self._i = 0
        self._level = 0

    # -- helpers

    @property
    def _tok(self) -> _Token:
        return self._tokens[self._i]

    def _advance(self) -> _Token:
        tok = self._tok
        if tok.kind != "end":
            self._i += 1
        return tok

    def _is_op(self, ops: str) -> bool:
        return self._tok.kind == "op" and self._tok.text in ops

    def _error(self, pos: int, problem: str, expected: str = "", status: int = 400) -> GpubtError:
        detail = f" (expected {expected})" if expected else ""
        message = f"custom indicator {self._indicator!r}: {problem} at position {pos}{detail}"
        return GpubtError(message, status=status)

    def _unexpected(self, expected: str) -> GpubtError:
        return self._error(self._tok.pos, f"unexpected {_describe(self._tok)}", expected)

    def _too_deep(self, pos: int) -> GpubtError:
        return self._error(
            pos,
            "formula nested too deeply",
            f"at most {MAX_DEPTH} levels of parentheses, calls and operators",
            status=413,
        )

    def _enter(self, pos: int) -> None:
        self._level += 1
        if self._level > MAX_DEPTH:
            raise self._too_deep(pos)

    def _leave(self) -> None:
        self._level -= 1

    def _deeper(self, pos: int, *depths: int) -> int:
        depth = 1 + max(depths)
        if depth > MAX_DEPTH:
            raise self._too_deep(pos)
        return depth

    def _close(self, opening: _Token, inside: str) -> None:
        if self._tok.kind == ")":
            self._advance()
        elif self._tok.kind == "end":
            raise self._error(
                self._tok.pos, "missing ')'", f"')' to close the '(' at position {opening.pos}"
            )
        else:
            raise self._unexpected(inside)

    # -- grammar rules

    def formula(self) -> Expr:
        if self._tok.kind == "end":
            raise self._error(self._tok.pos, "empty formula", _OPERAND)
        expr, _ = self._expr()
        if self._tok.kind != "end":
            raise self._unexpected("an operator or the end of the formula")
        return expr

    def _expr(self) -> _Parsed:
        left, depth = self._term()
        while self._is_op("+-"):
            op = self._advance()
            right, right_depth = self._term()
            left, depth = BinOp(op.text, left, right), self._deeper(op.pos, depth, right_depth)
        return left, depth

    def _term(self) -> _Parsed:
        left, depth = self._unary()
        while self._is_op("*/"):
            op = self._advance()
            right, right_depth = self._unary()
            left, depth = BinOp(op.text, left, right), self._deeper(op.pos, depth, right_depth)
        return left, depth

    def _unary(self) -> _Parsed:
        if not self._is_op("-"):
            return self._power()
        minus = self._advance()
        self._enter(minus.pos)
        operand, depth = self._unary()
        self._leave()
        return Neg(operand), self._deeper(minus.pos, depth)

    def _power(self) -> _Parsed:
        base, depth = self._primary()
        if not self._is_op("^"):
            return base, depth
        caret = self._advance()
        self._enter(caret.pos)
        exponent, exponent_depth = self._unary()
        self._leave()
        return BinOp("^", base, exponent), self._deeper(caret.pos, depth, exponent_depth)

    def _primary(self) -> _Parsed:
        tok = self._tok
        if tok.kind == "number":
            self._advance()
            value = float(tok.text)
            if value != value or abs(value) == float("inf"):
                raise self._error(tok.pos, f"number {tok.text!r} is too large")
            return Num(value), 1
        if tok.kind == "(":
            self._advance()
            self._enter(tok.pos)
            inner, depth = self._expr()
            self._close(tok, "an operator or ')'")
            self._leave()
            return inner, self._deeper(tok.pos, depth)
        if tok.kind == "name":
            return self._name()
        raise self._unexpected(_OPERAND)

    def _name(self) -> _Parsed:
        tok = self._advance()
        word = tok.text.lower()
        if word in FIELDS or word == "window":
            if self._tok.kind == "(":
                kind = "a field" if word in FIELDS else "the condition's window"
                problem = f"{tok.text!r} is {kind}, not a function"
                raise self._error(self._tok.pos, problem, "an operator")
            return (Field(word) if word in FIELDS else Window()), 1
        if word in POINTWISE_ARITY:
            args = self._call(tok, POINTWISE_ARITY[word], "")
        elif word in SERIES_MIN_N:
            args = self._call(tok, 2, " (a series and a window n)")
            self._check_const(tok, args[1], SERIES_MIN_N[word])
        else:
            metric = _resolve_metric_name(tok.text)
            if metric is None:
                close = difflib.get_close_matches(word, _KNOWN_NAMES, n=1, cutoff=0.6)
                hint = f"; did you mean {_KNOWN_NAMES[close[0]]!r}?" if close else ""
                raise self._error(tok.pos, f"unknown name {tok.text!r}", _ALLOWED_NAMES + hint)
            args = self._call(tok, 1, " (a window)")
            self._check_const(tok, args[0], 0)
            return MetricCall(metric, args[0].expr), self._deeper(tok.pos, args[0].depth)
        node = Func(word, tuple(a.expr for a in args))
        return node, self._deeper(tok.pos, *(a.depth for a in args))

    def _call(self, fn: _Token, arity: int, what: str) -> list[_Arg]:
        """The arguments of a call, checked against `arity`."""
        if self._tok.kind != "(":
            raise self._unexpected(f"'(' after {fn.text!r}")
        opening = self._advance()
        self._enter(opening.pos)
        args: list[_Arg] = []
        if self._tok.kind != ")":
            while True:
                pos = self._tok.pos
                expr, depth = self._expr()
                args.append(_Arg(expr, depth, pos))
                if self._tok.kind != ",":
                    break
                self._advance()
        self._close(opening, "an operator, ',' or ')'")
        self._leave()
        if len(args) != arity:
            raise self._error(
                fn.pos,
                f"wrong number of arguments to {fn.text!r}",
                f"{arity}{what}, got {len(args)}",
            )
        return args

    def _check_const(self, fn: _Token, arg: _Arg, minimum: int) -> None:
        """A window argument must be known once the condition's window is; when it does not use
        `window` at all it is checked now, where the position can still be shown."""
        expr, pos = arg.expr, arg.pos
        if not _is_const(expr):
            raise self._error(
                pos,
                f"window argument to {fn.text!r} is not constant",
                "an expression of numbers and window, e.g. 20 or window * 2",
            )
        if not _uses_window(expr):
            problem = _int_problem(_const_value(expr, 0.0), minimum)
            if problem is not None:
                raise self._error(pos, f"bad window argument to {fn.text!r}", problem)


def parse_formula(text: str, *, name: str) -> Formula:
    """Parse a custom indicator's formula; a GpubtError naming `name` and the 1-based position
    otherwise (the caller adds the JSON path)."""
    if not isinstance(text, str):
        raise GpubtError(f"custom indicator {name!r}: the formula must be a string")
    if len(text) > MAX_LENGTH:
        raise GpubtError(
            f"custom indicator {name!r}: formula too long at position {MAX_LENGTH + 1} "
            f"(expected at most {MAX_LENGTH} characters, got {len(text)})",
            status=413,
        )
    return Formula(_Parser(text, name).formula(), text, name)
