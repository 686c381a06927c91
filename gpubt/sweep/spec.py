"""Sweep specs: a base request, parameters that vary fields of its nodes, and how they combine.

A parameter is named ``"<id>.<field>"``: a node id (``"p1.window"``, ``"rank1.bottom"``) or a
condition line id (``"c1.threshold"``, ``"c1.ticker"``); a name without a dot is a request field
(``"costBps"``, ``"mode"``, ``"startDate"``, ``"endDate"``, ``"benchmark"``). Its values are a list,
``{"values": [...]}`` or a range ``{"start", "stop", "step"}`` (start inclusive, stop exclusive,
like ``range``; floats allowed). Parameters combine as a grid (every combination, the last
parameter varying fastest), zipped (the i-th value of each) or as a seeded random sample of the
grid.

Everything is checked before anything runs: every path must name exactly one node or condition
and a field it has, and every value is validated by `parse_request` on the base request with that
value set, so a bad value is refused with the parameter's name and the schema's reason. Variants
are built lazily from their index (copy-on-write along the changed paths), so a spec of a
million variants is a few lists, never a million trees.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic.alias_generators import to_camel

from gpubt.errors import GpubtError, json_path
from gpubt.schema.models import Condition, FlowNode
from gpubt.schema.parse import DEFAULT_LIMITS, Limits, Strategy, parse_request
from gpubt.sweep.variants import VariantParser

COMBINE_MODES = ("grid", "zip", "random")

# Node fields a sweep may set (wire names). Structure (id, kind, children, condition lists) is
# not a parameter: a sweep varies one tree, it does not build new ones.
_STRUCTURAL = {"id", "kind", "children", "conditions", "numbered", "entryConditions", "exitConditions"}
NODE_FIELDS = tuple(
    to_camel(name) for name in FlowNode.model_fields if to_camel(name) not in _STRUCTURAL
)
CONDITION_FIELDS = tuple(to_camel(name) for name in Condition.model_fields if name != "id")
NUMBERED_FIELDS = ("n", "quantifier")  # of a numbered node's `numbered` object
REQUEST_FIELDS = ("mode", "costBps", "startDate", "endDate", "benchmark")
WINDOW_COLUMNS = ("startDate", "endDate")  # result columns: a backtest's first and last days
# Other spellings a request may already use for a field (removed when the field is set, so the
# swept value is the one pydantic reads).
_ALIASES = {"costBps": ("cost_bps",)}


@dataclass(frozen=True)
class Parameter:
    """One swept field: where it is in the request body and the values it takes."""

    name: str  # as the user wrote it, e.g. "c1.window"
    target: str  # "node", "condition" or "request"
    path: tuple[str | int, ...]  # keys from the request body to the field
    values: tuple[Any, ...]

    @property
    def column(self) -> str:
        """Its column in the result table: the name, but ``request.startDate`` for a swept
        ``startDate`` (and ``endDate``), as the table's own startDate/endDate are the first and
        last days each variant's backtest actually reported."""
        return f"request.{self.name}" if self.name in WINDOW_COLUMNS else self.name

    @functools.cached_property
    def aliases(self) -> tuple[str, ...]:
        """Other spellings of the field the request may hold (removed when the field is set, so
        the swept value is the one pydantic reads)."""
        last = str(self.path[-1])
        return tuple(a for a in (*_ALIASES.get(last, ()), _snake(last)) if a != last)

    @property
    def where(self) -> str:
        return json_path(*self.path)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the base request (payload decoded), parameters and combination.

    Variant ``i`` (0 ≤ i < ``n_variants``) is a pure function of the spec, so any process that
    holds the spec (a Dask worker, a resumed run) builds exactly the same variant ``i``."""

    base: dict[str, Any]
    parameters: tuple[Parameter, ...]
    combine: str = "grid"
    samples: int | None = None
    seed: int | None = None
    tickers: tuple[str, ...] = ()  # every market ticker some variant reads (benchmarks apart)
    benchmarks: tuple[str, ...] = ("SPY",)  # every benchmark some variant names
    settings: dict[str, Any] = field(default_factory=dict)  # run settings from a spec file
    limits: Limits = DEFAULT_LIMITS
    _picks: tuple[int, ...] | None = field(default=None, repr=False)  # random: grid indices

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled without the random sample's indices (a million-sample sweep would ship them
        with every Dask task); the receiving process redraws them, once, from the seed."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "_picks"}
        return _rebuild_spec, (fields,)

    # -- variants -------------------------------------------------------------------------------

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.parameters)

    @property
    def n_variants(self) -> int:
        if not self.parameters:
            return 1
        if self.combine == "zip":
            return len(self.parameters[0].values)
        if self.combine == "random":
            return len(self._picks or ())
        return self.grid_size

    def values(self, i: int) -> tuple[Any, ...]:
        """The parameter values of variant ``i``, in parameter order."""
        if not 0 <= i < self.n_variants:
            raise IndexError(f"variant {i} is outside 0..{self.n_variants - 1}")
        if self.combine == "zip":
            return tuple(p.values[i] for p in self.parameters)
        index = self._picks[i] if self.combine == "random" else i  # type: ignore[index]
        out: list[Any] = []
        for p in reversed(self.parameters):  # the last parameter varies fastest
            index, k = divmod(index, len(p.values))
            out.append(p.values[k])
        return tuple(reversed(out))

    def value_indices(self, lo: int, hi: int) -> np.ndarray:
        """(hi − lo, n_parameters) positions in each parameter's values of variants lo..hi-1:
        `values` for a whole range at once, without a Python loop over variants."""
        if not 0 <= lo <= hi <= self.n_variants:
            raise IndexError(f"variants {lo}..{hi - 1} are outside 0..{self.n_variants - 1}")
        n = hi - lo
        if self.combine == "zip":
            return np.repeat(np.arange(lo, hi, dtype=np.int64)[:, None], len(self.parameters), axis=1)
        sizes = [len(p.values) for p in self.parameters]
        out = np.empty((n, len(sizes)), dtype=np.int64)
        if self.combine != "random":
            stride = 1  # variants between steps of parameter j: the last parameter varies fastest
            for j in range(len(sizes) - 1, -1, -1):
                out[:, j] = _grid_digit(lo, hi, stride, sizes[j])
                stride *= sizes[j]
            return out
        # Grid indices may pass int64 (ten parameters of ~1,000 values): they are cut, in Python,
        # into digits of a radix below 2**62 (a run of parameters from the last), each taken
        # apart in NumPy.
        rest = list(self._picks[lo:hi])  # type: ignore[index]
        j = len(sizes)
        while j > 0:
            radix, k = 1, j
            while k > 0 and radix * sizes[k - 1] < 2**62:
                k -= 1
                radix *= sizes[k]
            if k == 0:
                index = np.array(rest, dtype=np.int64)
            else:
                digits = [divmod(r, radix) for r in rest]
                rest = [q for q, _ in digits]
                index = np.array([d for _, d in digits], dtype=np.int64)
            for m in range(j - 1, k - 1, -1):
                index, out[:, m] = np.divmod(index, sizes[m])
            j = k
        return out

    def body(self, i: int) -> dict[str, Any]:
        """The request body of variant ``i`` (shares unchanged sub-trees with the base)."""
        return self.body_for(self.values(i))

    def body_for(self, values: Sequence[Any]) -> dict[str, Any]:
        """The base with the parameters set to ``values`` (in parameter order)."""
        changes = [(p.path, v) for p, v in zip(self.parameters, values, strict=True)]
        return _with_values(self.base, changes, self._aliases)

    @functools.cached_property
    def _aliases(self) -> dict[tuple[str | int, ...], tuple[str, ...]]:
        return {p.path: p.aliases for p in self.parameters}

    def strategy(self, i: int) -> Strategy:
        """Variant ``i`` parsed and validated like any request; a refusal names the variant."""
        try:
            return self.strategy_for(self.values(i))
        except GpubtError as exc:
            raise GpubtError(
                f"variant {i} ({self.label(i)}) is invalid: {exc.message}", exc.path, exc.status
            ) from None

    def strategy_for(self, values: Sequence[Any]) -> Strategy:
        """`body_for` parsed and validated: the nodes the parameters change, on the base's
        parse (`gpubt.sweep.variants`; `make_spec` refuses a base that does not parse)."""
        return self._parser.parse(self.body_for(values))

    @functools.cached_property
    def _parser(self) -> VariantParser:
        return VariantParser(self.base, [p.path for p in self.parameters], self.limits)

    def label(self, i: int) -> str:
        return ", ".join(f"{p.name}={v!r}" for p, v in zip(self.parameters, self.values(i)))

    # -- identity -------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A digest of what the results depend on (base, parameters, combination): a resumed
        sweep must be the same sweep."""
        doc = {
            "base": self.base,
            "parameters": [[p.name, list(p.values)] for p in self.parameters],
            "combine": self.combine,
            "samples": self.samples,
            "seed": self.seed,
        }
        text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        parts = [f"{p.name} ({len(p.values)})" for p in self.parameters]
        how = self.combine if self.combine != "random" else f"random {self.n_variants} of {self.grid_size:,}"
        return f"{self.n_variants:,} variants · {how} · " + (" × ".join(parts) if parts else "no parameters")


def _grid_digit(lo: int, hi: int, stride: int, size: int) -> np.ndarray:
    """(arange(lo, hi) // stride) % size: a grid parameter's value positions over variants
    lo..hi-1, made as runs (a tile for the fastest parameter) instead of a division per variant
    and parameter (65,536 variants of four: 0.65 → 0.17 ms)."""
    n = hi - lo
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    first, last = lo // stride, (hi - 1) // stride
    if stride == 1:
        start = first % size
        return np.tile(np.arange(size, dtype=np.int64), -(-(start + n) // size))[start : start + n]
    counts = np.full(last - first + 1, stride, dtype=np.int64)
    counts[0] -= lo - first * stride
    counts[-1] -= (last + 1) * stride - hi
    return np.repeat(np.arange(first, last + 1, dtype=np.int64) % size, counts)


def _rebuild_spec(fields: dict[str, Any]) -> SweepSpec:
    picks = None
    if fields["combine"] == "random":
        total = math.prod(len(p.values) for p in fields["parameters"])
        picks = _sample(total, fields["samples"], fields["seed"])
    return SweepSpec(**fields, _picks=picks)


# -- building a spec ---------------------------------------------------------------------------


def make_spec(
    strategy: str | Path | Mapping[str, Any],
    parameters: Mapping[str, Any] | None,
    combine: str | Mapping[str, Any] = "grid",
    samples: int | None = None,
    seed: int | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    relative_to: Path | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> SweepSpec:
    """Build and validate a sweep from a base strategy (a path to a request JSON or bare tree, a
    request dict, or JSON text) and ``{"<id>.<field>": values}``."""
    base = load_base(strategy, relative_to)
    try:
        parse_request(base, limits)
    except GpubtError as exc:
        raise GpubtError(f"the base strategy is invalid: {exc.message}", exc.path, exc.status) from None
    mode, samples, seed = _combine(combine, samples, seed)
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, Mapping):
        raise GpubtError(
            f"parameters must be an object of \"<id>.<field>\": values, got {type(parameters).__name__}",
            "parameters",
        )
    params = tuple(_parameter(base, str(name), raw) for name, raw in parameters.items())
    names = [p.name for p in params]
    paths = [p.path for p in params]
    for i, path in enumerate(paths):
        if path in paths[:i]:
            other = names[paths.index(path)]
            raise GpubtError(
                f"parameters {other!r} and {names[i]!r} set the same field ({json_path(*path)})",
                f"parameters.{names[i]}",
            )
    tickers, benchmarks = _validate_values(base, params, limits)
    picks = None
    if mode == "zip" and params:
        lengths = {p.name: len(p.values) for p in params}
        first = params[0]
        for p in params[1:]:
            if len(p.values) != len(first.values):
                raise GpubtError(
                    f"zip needs the same number of values for every parameter: {p.name!r} has "
                    f"{len(p.values)}, {first.name!r} has {len(first.values)} "
                    f"({', '.join(f'{k}: {v}' for k, v in lengths.items())})",
                    f"parameters.{p.name}",
                )
    if mode == "random":
        total = math.prod(len(p.values) for p in params)
        picks = _sample(total, samples, seed)  # type: ignore[arg-type]
    return SweepSpec(
        base=base,
        parameters=params,
        combine=mode,
        samples=samples,
        seed=seed,
        tickers=tickers,
        benchmarks=benchmarks,
        settings=dict(settings or {}),
        limits=limits,
        _picks=picks,
    )


SPEC_KEYS = ("strategy", "parameters", "combine", "mode", "samples", "seed", "data", "backend",
             "memory", "out", "top", "chunkSize")


def load_spec(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> SweepSpec:
    """A sweep spec file (JSON, or YAML by its .yaml/.yml suffix)::

        {"strategy": "tqqq_rsi.json",               # path (relative to this file), or a request
         "parameters": {"c1.window": {"start": 5, "stop": 21, "step": 1},
                        "c1.threshold": [70, 75, 80]},
         "combine": "grid",                          # or "zip", or {"mode": "random", "samples": N, "seed": S}
         "backend": "polars", "memory": "2GB", "data": "market/"}   # optional run settings

    ``"mode": "random", "samples": N, "seed": S`` at the top level is accepted too."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GpubtError(f"cannot read the sweep spec: {exc.strerror or exc}", str(path)) from None
    doc = _parse_text(text, path)
    if not isinstance(doc, dict):
        raise GpubtError("a sweep spec must be an object with strategy and parameters", str(path))
    unknown = sorted(set(doc) - set(SPEC_KEYS))
    if unknown:
        raise GpubtError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in the sweep spec; known: {', '.join(SPEC_KEYS)}",
            str(path),
        )
    if "strategy" not in doc:
        raise GpubtError("the sweep spec needs \"strategy\": a path to a strategy file or a request", str(path))
    combine = doc.get("combine", doc.get("mode", "grid"))
    if "combine" in doc and "mode" in doc:
        raise GpubtError("give the combination once: \"combine\" or \"mode\", not both", str(path))
    settings = {k: doc[k] for k in ("data", "backend", "memory", "out", "top", "chunkSize") if k in doc}
    if isinstance(settings.get("data"), str):
        settings["data"] = str(_relative(settings["data"], path.parent))
    return make_spec(
        doc["strategy"], doc.get("parameters"), combine, doc.get("samples"), doc.get("seed"),
        settings=settings, relative_to=path.parent, limits=limits,
    )


def load_base(strategy: str | Path | Mapping[str, Any], relative_to: Path | None = None) -> dict[str, Any]:
    """The base request as a dict with its payload decoded (a bare tree becomes the payload)."""
    if isinstance(strategy, Mapping):
        doc: Any = dict(strategy)
    else:
        text = str(strategy)
        if isinstance(strategy, str) and text.lstrip().startswith("{"):
            doc = _parse_text(text, None)
        else:
            file = _relative(text, relative_to)
            try:
                doc = _parse_text(file.read_text(), file)
            except OSError as exc:
                raise GpubtError(f"cannot read the strategy: {exc.strerror or exc}", str(file)) from None
    if isinstance(doc, dict) and "payload" not in doc and "kind" in doc:
        doc = {"payload": doc}
    if not isinstance(doc, dict):
        raise GpubtError("the strategy must be a request object or a FlowNode tree", "strategy")
    payload = doc.get("payload")
    if isinstance(payload, str):
        try:
            doc["payload"] = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise GpubtError(f"payload is not valid JSON: {exc.msg}", "payload") from None
    return doc


def parse_memory(value: str | int | float) -> int:
    """``"2GB"``, ``"512MB"``, ``"1.5GiB"``, ``"800M"`` or a number of bytes → bytes (GB = 10⁹,
    GiB = 2³⁰)."""
    if isinstance(value, bool):
        raise GpubtError(f"memory must be a size like 2GB, got {value!r}", "memory")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        text = str(value).strip().replace(" ", "")
        units = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
                 "T": 1e12, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
        number = text.rstrip("KMGTIBkmgtib")
        unit = text[len(number):].upper()
        try:
            size = float(number) * units[unit]
        except (ValueError, KeyError):
            raise GpubtError(f"memory must be a size like 2GB or 512MB, got {value!r}", "memory") from None
    if not math.isfinite(size) or size <= 0:
        raise GpubtError(f"memory must be positive, got {value!r}", "memory")
    return int(size)


# -- internals ---------------------------------------------------------------------------------


def _parse_text(text: str, path: Path | None) -> Any:
    where = str(path) if path is not None else "spec"
    if path is not None and path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - pyyaml is a core dependency
            raise GpubtError("YAML specs need pyyaml (pip install pyyaml)", where) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GpubtError(f"not valid YAML: {exc}", where) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GpubtError(f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", where) from None


def _relative(name: str | Path, base: Path | None) -> Path:
    """A path as given, or next to the spec file when it is relative and exists there."""
    path = Path(name)
    if not path.is_absolute() and base is not None and (base / path).exists():
        return base / path
    return path


def _combine(combine: Any, samples: Any, seed: Any) -> tuple[str, int | None, int | None]:
    if isinstance(combine, Mapping):
        extra = sorted(set(combine) - {"mode", "samples", "seed"})
        if extra:
            raise GpubtError(f"unknown key(s) {', '.join(map(repr, extra))}: use mode, samples, seed", "combine")
        samples = combine.get("samples", samples)
        seed = combine.get("seed", seed)
        combine = combine.get("mode", "grid")
    if combine not in COMBINE_MODES:
        raise GpubtError(f"unknown combination {combine!r}: use grid, zip or random", "combine")
    if combine == "random":
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise GpubtError(f"random needs \"samples\": a positive integer, got {samples!r}", "combine.samples")
        if seed is None:
            seed = 0
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise GpubtError(f"seed must be an integer, got {seed!r}", "combine.seed")
    elif samples is not None:
        raise GpubtError(f"samples only applies to random, not {combine}", "combine.samples")
    return combine, samples, seed


@functools.lru_cache(maxsize=8)
def _sample(total: int, samples: int, seed: int) -> tuple[int, ...]:
    """``samples`` distinct grid indices (all of them when the grid is smaller), ascending;
    the same in every process for the same seed."""
    rng = random.Random(seed)
    if samples >= total:
        return tuple(range(total))
    if 2 * samples > total:
        return tuple(sorted(rng.sample(range(total), samples)))
    picked: set[int] = set()
    while len(picked) < samples:  # grids can exceed any array index: draw big ints directly
        picked.add(rng.randrange(total))
    return tuple(sorted(picked))


def _values(name: str, raw: Any) -> tuple[Any, ...]:
    where = f"parameters.{name}"
    if isinstance(raw, range):
        raw = list(raw)
    elif hasattr(raw, "tolist") and not isinstance(raw, (str, bytes)):  # numpy arrays, scalars
        raw = raw.tolist()
    if isinstance(raw, Mapping):
        keys = set(raw)
        if keys == {"values"}:
            raw = raw["values"]
            if not isinstance(raw, (list, tuple)):
                raise GpubtError(f"parameter {name!r}: \"values\" must be a list, got {raw!r}", where)
        elif {"start", "stop"} <= keys <= {"start", "stop", "step"}:
            raw = _range(name, raw["start"], raw["stop"], raw.get("step", 1))
        else:
            raise GpubtError(
                f"parameter {name!r}: give a list of values, {{\"values\": [...]}} or a range "
                f"{{\"start\", \"stop\", \"step\"}}; got keys {sorted(keys)}", where,
            )
    elif isinstance(raw, (str, int, float, bool)) or raw is None:
        raw = [raw]
    elif isinstance(raw, Iterable):
        raw = list(raw)
    else:
        raise GpubtError(f"parameter {name!r}: values must be a list, got {type(raw).__name__}", where)
    values = tuple(v.tolist() if hasattr(v, "tolist") else v for v in raw)
    if not values:
        raise GpubtError(f"parameter {name!r} has no values", where)
    return values


def _range(name: str, start: Any, stop: Any, step: Any) -> list[Any]:
    where = f"parameters.{name}"
    for key, v in (("start", start), ("stop", stop), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise GpubtError(f"parameter {name!r}: range {key} must be a number, got {v!r}", where)
    if step == 0:
        raise GpubtError(f"parameter {name!r}: range step must not be 0", where)
    if all(isinstance(v, int) for v in (start, stop, step)):
        out: list[Any] = list(range(start, stop, step))
    else:
        count = max(0, math.ceil((stop - start) / step - 1e-9))
        out = [round(start + k * step, 12) for k in range(count)]
    if not out:
        raise GpubtError(f"parameter {name!r}: range start {start}, stop {stop}, step {step} is empty", where)
    return out


def _parameter(base: dict[str, Any], name: str, raw: Any) -> Parameter:
    where = f"parameters.{name}"
    values = _values(name, raw)
    if "." not in name:
        if name in ("cost_bps",):
            name_field = "costBps"
        else:
            name_field = name
        if name_field not in REQUEST_FIELDS:
            raise GpubtError(
                f"parameter {name!r}: name it \"<id>.<field>\" (a node or condition id and a field), "
                f"or a request field ({', '.join(REQUEST_FIELDS)})", where,
            )
        return Parameter(name, "request", (name_field,), values)
    ident, _, fld = name.rpartition(".")
    matches = list(_find(base, ident))
    if not matches:
        raise GpubtError(f"parameter {name!r}: no node or condition has id {ident!r}", where)
    if len(matches) > 1:
        paths = ", ".join(json_path(*m[1]) for m in matches)
        raise GpubtError(f"parameter {name!r}: id {ident!r} is ambiguous: it names {paths}", where)
    target, path, obj = matches[0]
    wire = _wire_field(fld)
    if target == "condition":
        if wire not in CONDITION_FIELDS:
            raise GpubtError(
                f"parameter {name!r}: {ident!r} is a condition, which has no field {fld!r}; "
                f"condition fields: {', '.join(CONDITION_FIELDS)}", where,
            )
        return Parameter(name, "condition", (*path, wire), values)
    kind = obj.get("kind")
    if wire in NUMBERED_FIELDS:
        if kind != "numbered":
            raise GpubtError(f"parameter {name!r}: {fld!r} is a field of numbered nodes, and {ident!r} is {kind!r}", where)
        return Parameter(name, "node", (*path, "numbered", wire), values)
    if wire not in NODE_FIELDS:
        raise GpubtError(
            f"parameter {name!r}: node {ident!r} has no settable field {fld!r}; node fields: "
            f"{', '.join(NODE_FIELDS)}" + (", n, quantifier" if kind == "numbered" else ""), where,
        )
    return Parameter(name, "node", (*path, wire), values)


def _wire_field(name: str) -> str:
    """A field as the wire spells it (camelCase); snake_case is accepted."""
    return to_camel(name) if "_" in name else name


def _find(base: dict[str, Any], ident: str) -> Iterable[tuple[str, tuple[str | int, ...], dict[str, Any]]]:
    """Nodes and condition lines with this id, in the payload and the call chains."""
    roots: list[tuple[tuple[str | int, ...], Any]] = [(("payload",), base.get("payload"))]
    chains = base.get("callChains")
    if isinstance(chains, dict):
        roots += [(("callChains", key), chain) for key, chain in chains.items()]
    for root_path, root in roots:
        stack = [(root_path, root)]
        while stack:
            path, node = stack.pop()
            if not isinstance(node, dict):
                continue
            if node.get("id") == ident:
                yield "node", path, node
            for key in ("conditions", "entryConditions", "exitConditions",
                        "entry_conditions", "exit_conditions"):
                for i, cond in enumerate(node.get(key) or ()):
                    if isinstance(cond, dict) and cond.get("id") == ident:
                        yield "condition", (*path, key, i), cond
            numbered = node.get("numbered")
            if isinstance(numbered, dict):
                for i, item in enumerate(numbered.get("items") or ()):
                    for j, cond in enumerate((item or {}).get("conditions") or ()):
                        if isinstance(cond, dict) and cond.get("id") == ident:
                            yield "condition", (*path, "numbered", "items", i, "conditions", j), cond
            children = node.get("children")
            if isinstance(children, dict):
                for slot, kids in children.items():
                    for i, kid in enumerate(kids or ()):
                        stack.append(((*path, "children", slot, i), kid))


def _with_values(
    base: dict[str, Any],
    changes: Sequence[tuple[tuple[str | int, ...], Any]],
    aliases: Mapping[tuple[str | int, ...], tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """A copy of ``base`` with each path set to its value (other spellings of the field
    removed); only the containers along the changed paths are copied (the rest is shared, and
    never modified)."""
    root: Any = dict(base)
    copied: set[tuple[str | int, ...]] = {()}
    for path, value in changes:
        parent = root
        for depth, key in enumerate(path[:-1]):
            prefix = path[: depth + 1]
            child = parent[key]
            if prefix not in copied:
                child = dict(child) if isinstance(child, dict) else list(child)
                parent[key] = child
                copied.add(prefix)
            parent = child
        last = path[-1]
        others = aliases[path] if aliases is not None else Parameter("", "", path, ()).aliases
        if isinstance(parent, dict):
            for alias in others:
                if alias in parent:
                    del parent[alias]
        parent[last] = list(value) if isinstance(value, tuple) else value
    return root


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


# Fields of a condition line that no rule of the tree reads (spec §2 checks metrics, windows,
# tickers and forDays; a threshold and a comparator only have to be of their types): a value of
# one is valid exactly when the line with it is, so it is validated on the line alone. A whole
# parse per value took ~85 µs on the example tree and ~9 ms on a 1,000-node one; the request is
# still parsed whole for a value the line refuses, so the error is worded as for any other.
LINE_ONLY_FIELDS = frozenset({"threshold", "comparator"})


def _validate_values(
    base: dict[str, Any], params: Sequence[Parameter], limits: Limits
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every distinct value of every parameter, set alone on the base, must parse. Returns the
    market tickers and benchmarks any variant can read (a variant's tickers are those of the base
    with some replaced by values that were checked here)."""
    base_strategy = parse_request(base, limits)
    tickers = dict.fromkeys(base_strategy.tickers)
    benchmarks = dict.fromkeys([base_strategy.request.benchmark])
    for p in params:
        line = None
        if p.target == "condition" and p.path[-1] in LINE_ONLY_FIELDS:
            line = dict_at(base, p.path[:-1])
        seen: set[str] = set()
        for value in p.values:
            if not _json_value(value):
                raise GpubtError(
                    f"parameter {p.name!r}: value {value!r} is not a JSON value (number, string, "
                    "boolean, list or object)", f"parameters.{p.name}",
                )
            key = json.dumps(value, sort_keys=True, default=str)
            if key in seen:
                raise GpubtError(f"parameter {p.name!r}: value {value!r} is given twice", f"parameters.{p.name}")
            seen.add(key)
            if line is not None and _line_accepts(line, str(p.path[-1]), value):
                continue  # neither tickers nor the benchmark change
            try:
                strategy = parse_request(_with_values(base, [(p.path, value)]), limits)
            except GpubtError as exc:
                what = {"request": "the request", "node": "node", "condition": "condition"}[p.target]
                ident = "" if p.target == "request" else f" {p.name.rpartition('.')[0]!r}"
                raise GpubtError(
                    f"parameter {p.name!r}: value {value!r} is invalid for {what}{ident} field "
                    f"{p.path[-1]!r}: {exc.message}",
                    f"parameters.{p.name}",
                    exc.status,
                ) from None
            tickers.update(dict.fromkeys(strategy.tickers))
            benchmarks[strategy.request.benchmark] = None
    return tuple(tickers), tuple(benchmarks)


def dict_at(body: dict[str, Any], path: Sequence[Any]) -> Any:
    """The value at ``path`` (keys and list positions) in a request body."""
    for key in path:
        body = body[key]
    return body


def _line_accepts(line: dict[str, Any], name: str, value: Any) -> bool:
    """Whether the condition line validates with ``name`` set to ``value``, as the whole request
    would see it (`_with_values` sets the field on a copy of the line)."""
    try:
        Condition.model_validate({**line, name: value})
    except ValueError:  # pydantic's ValidationError
        return False
    return True


def _json_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_value(v) for k, v in value.items())
    return False


__all__ = [
    "COMBINE_MODES",
    "Parameter",
    "SweepSpec",
    "load_spec",
    "make_spec",
    "parse_memory",
]
