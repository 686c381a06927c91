"""Simulation (spec §6) against returns, turnover, costs and equity worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gpubt.sim import period_returns, simulate

# Two tickers, A and B, over five days.
OPEN = np.array([[10.0, 20.0], [11.0, 20.0], [12.0, 22.0], [12.0, 21.0], [13.0, 24.0]])
CLOSE = np.array([[10.5, 19.5], [11.5, 21.0], [12.5, 21.5], [12.0, 23.0], [13.5, 24.0]])
ALLOC = np.array([[1.0, 0.0], [0.6, 0.4], [0.0, 1.0], [0.25, 0.25], [0.0, 0.0]])
COST_BPS = 10.0

# ½Σ|A_t − A_{t−1}|, the first decision from all-cash.
TURNOVER = [
    0.5 * (1.0 + 0.0),  # t0: cash → (1, 0)
    0.5 * (0.4 + 0.4),  # t1: (1, 0) → (0.6, 0.4)
    0.5 * (0.6 + 0.6),  # t2: (0.6, 0.4) → (0, 1)
    0.5 * (0.25 + 0.75),  # t3: (0, 1) → (0.25, 0.25)
]

EXPECTED = {
    # mode: (decision days, credited days, gross return per credited day)
    "CC": (
        [0, 1, 2, 3],
        [1, 2, 3, 4],
        [
            1.0 * (11.5 / 10.5 - 1),
            0.6 * (12.5 / 11.5 - 1) + 0.4 * (21.5 / 21.0 - 1),
            1.0 * (23.0 / 21.5 - 1),
            0.25 * (13.5 / 12.0 - 1) + 0.25 * (24.0 / 23.0 - 1),
        ],
    ),
    "CO": (
        [0, 1, 2, 3],
        [1, 2, 3, 4],
        [
            1.0 * (11.0 / 10.5 - 1),
            0.6 * (12.0 / 11.5 - 1) + 0.4 * (22.0 / 21.0 - 1),
            1.0 * (21.0 / 21.5 - 1),
            0.25 * (13.0 / 12.0 - 1) + 0.25 * (24.0 / 23.0 - 1),
        ],
    ),
    "OC": (
        [0, 1, 2, 3],
        [1, 2, 3, 4],
        [
            1.0 * (11.5 / 11.0 - 1),
            0.6 * (12.5 / 12.0 - 1) + 0.4 * (21.5 / 22.0 - 1),
            1.0 * (23.0 / 21.0 - 1),
            0.25 * (13.5 / 13.0 - 1) + 0.25 * (24.0 / 24.0 - 1),
        ],
    ),
    "OO": (
        [0, 1, 2],
        [2, 3, 4],
        [
            1.0 * (12.0 / 11.0 - 1),
            0.6 * (12.0 / 12.0 - 1) + 0.4 * (21.0 / 22.0 - 1),
            1.0 * (24.0 / 21.0 - 1),
        ],
    ),
}


def hand_equity(net: list[float]) -> tuple[list[float], list[float]]:
    """Equity compounding from 1.0 and drawdown against the running peak (which starts at 1.0)."""
    equity, drawdown, value, peak = [], [], 1.0, 1.0
    for r in net:
        value *= 1.0 + r
        peak = max(peak, value)
        equity.append(value)
        drawdown.append(value / peak - 1.0)
    return equity, drawdown


@pytest.mark.parametrize("mode", ["CC", "CO", "OC", "OO"])
def test_each_mode_by_hand(mode: str) -> None:
    decision, credited, gross = EXPECTED[mode]
    turnover = TURNOVER[: len(decision)]
    cost = [t * 10.0 / 10_000.0 for t in turnover]
    net = [g - c for g, c in zip(gross, cost)]
    equity, drawdown = hand_equity(net)

    res = simulate(ALLOC, OPEN, CLOSE, mode, COST_BPS, start=0)

    assert res.decision.tolist() == decision
    assert res.credited.tolist() == credited
    np.testing.assert_allclose(res.holdings[0], ALLOC[decision])
    np.testing.assert_allclose(res.gross[0], gross, rtol=1e-13)
    np.testing.assert_allclose(res.turnover[0], turnover, rtol=1e-13)
    np.testing.assert_allclose(res.cost[0], cost, rtol=1e-13)
    np.testing.assert_allclose(res.net[0], net, rtol=1e-13)
    np.testing.assert_allclose(res.equity[0], equity, rtol=1e-13)
    np.testing.assert_allclose(res.drawdown[0], drawdown, atol=1e-15)
    assert res.missing == []


@pytest.mark.parametrize("mode", ["CC", "CO", "OC", "OO"])
def test_period_returns_match_hand_values(mode: str) -> None:
    decision, credited, R = period_returns(OPEN, CLOSE, mode)
    assert decision.tolist() == list(range(5 - (2 if mode == "OO" else 1)))
    assert credited.tolist() == (decision + (2 if mode == "OO" else 1)).tolist()
    # Holding 100% of one ticker reproduces that ticker's period return.
    one = simulate(np.tile([1.0, 0.0], (5, 1)), OPEN, CLOSE, mode, 0.0, start=0)
    np.testing.assert_allclose(R[:, 0], one.gross[0])


def test_first_decision_trades_from_cash() -> None:
    res = simulate(ALLOC, OPEN, CLOSE, "CC", COST_BPS, start=3)
    assert res.decision.tolist() == [3]
    assert res.credited.tolist() == [4]
    # ½(0.25 + 0.25) from cash, not ½|A3 − A2| = 0.5.
    assert res.turnover[0].tolist() == [0.25]
    assert res.cost[0].tolist() == pytest.approx([0.25 * 10 / 10_000])


def test_held_ticker_without_price_adds_zero_and_is_reported() -> None:
    close = CLOSE.copy()
    open_ = OPEN.copy()
    close[:2, 1] = np.nan  # B starts trading on day 2
    open_[:2, 1] = np.nan
    close[4, 0] = np.nan  # A has no close on day 4
    res = simulate(ALLOC, open_, close, "CC", 0.0, start=0)
    expected = [
        1.0 * (11.5 / 10.5 - 1),  # B unpriced but not held: not reported
        0.6 * (12.5 / 11.5 - 1) + 0.4 * 0.0,  # B held, no return for 1 → 2
        1.0 * (23.0 / 21.5 - 1),
        0.25 * 0.0 + 0.25 * (24.0 / 23.0 - 1),  # A held, no close on 4
    ]
    np.testing.assert_allclose(res.gross[0], expected, rtol=1e-13)
    assert np.isfinite(res.equity).all()
    assert res.missing == [(2, 1), (4, 0)]


def test_batch_equals_stacked_single_runs() -> None:
    rng = np.random.default_rng(7)
    raw = rng.random((3, 5, 2)) * (rng.random((3, 5, 2)) < 0.7)
    batch_alloc = raw / np.maximum(raw.sum(axis=-1, keepdims=True), 1.0)
    close = CLOSE.copy()
    close[:2, 1] = np.nan
    for mode in ("CC", "CO", "OC", "OO"):
        batch = simulate(batch_alloc, OPEN, close, mode, COST_BPS, start=1)
        singles = [simulate(a, OPEN, close, mode, COST_BPS, start=1) for a in batch_alloc]
        for field in ("holdings", "gross", "turnover", "cost", "net", "equity", "drawdown"):
            stacked = np.concatenate([getattr(s, field) for s in singles])
            np.testing.assert_array_equal(getattr(batch, field), stacked, err_msg=field)
        assert batch.missing == sorted({m for s in singles for m in s.missing})


def test_end_clips_the_credited_days() -> None:
    full = simulate(ALLOC, OPEN, CLOSE, "CC", COST_BPS, start=0)
    clipped = simulate(ALLOC, OPEN, CLOSE, "CC", COST_BPS, start=0, end=3)
    assert clipped.credited.tolist() == [1, 2, 3]
    assert clipped.decision.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(clipped.equity, full.equity[:, :3])

    oo = simulate(ALLOC, OPEN, CLOSE, "OO", COST_BPS, start=0, end=3)
    assert oo.decision.tolist() == [0, 1]
    assert oo.credited.tolist() == [2, 3]

    beyond = simulate(ALLOC, OPEN, CLOSE, "CC", COST_BPS, start=0, end=99)
    assert beyond.credited.tolist() == [1, 2, 3, 4]

    empty = simulate(ALLOC, OPEN, CLOSE, "OO", COST_BPS, start=0, end=1)
    assert empty.credited.size == 0
    assert empty.net.shape == (1, 0)
    assert empty.holdings.shape == (1, 0, 2)


def test_unknown_mode_lists_the_modes() -> None:
    for call in (
        lambda: simulate(ALLOC, OPEN, CLOSE, "XX", 0.0, start=0),
        lambda: period_returns(OPEN, CLOSE, "cc"),
    ):
        with pytest.raises(ValueError) as err:
            call()
        assert all(mode in str(err.value) for mode in ("CC", "OO", "OC", "CO"))


def test_start_outside_the_market_is_refused() -> None:
    with pytest.raises(ValueError):
        simulate(ALLOC, OPEN, CLOSE, "CC", 0.0, start=5)
