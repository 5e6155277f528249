"""Erlang C (M/M/N) and Erlang A (M/M/N+M) queue figures and staffing requirements."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import betainc, gammaln, logsumexp

from services.contract.errors import PacesetterError

# Erlang A truncates the queue where state probabilities fall below e^-46 of the largest one.
_LOG_TAIL = -46.0
_MAX_HANDLERS = 100_000
_MAX_QUEUE_STATES = 4_000_000


class QueueInputError(PacesetterError, ValueError):
    """Queue parameters that make no sense (negative calls, zero handling time …)."""


def _check(calls: float, interval_seconds: float, aht_seconds: float, handlers: int,
           threshold_seconds: float, patience_seconds: float | None = None) -> None:
    def bad(name: str, value: Any, need: str) -> QueueInputError:
        return QueueInputError(f"{name}: {value!r} is not valid; it must be {need}")

    if not _finite(calls) or calls < 0:
        raise bad("calls", calls, "a number ≥ 0")
    if not _finite(interval_seconds) or interval_seconds <= 0:
        raise bad("interval_seconds", interval_seconds, "a number > 0")
    if not _finite(aht_seconds) or aht_seconds <= 0:
        raise bad("aht_seconds", aht_seconds, "a number > 0")
    if isinstance(handlers, bool) or int(handlers) != handlers or handlers < 0:
        raise bad("handlers", handlers, "a whole number ≥ 0")
    if handlers > _MAX_HANDLERS:
        raise bad("handlers", handlers, f"at most {_MAX_HANDLERS}")
    if not _finite(threshold_seconds) or threshold_seconds < 0:
        raise bad("threshold_seconds", threshold_seconds, "a number ≥ 0")
    if patience_seconds is not None and (not _finite(patience_seconds) or patience_seconds <= 0):
        raise bad("patience_seconds", patience_seconds, "a number > 0, or null for Erlang C")


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def offered_load(calls: float, interval_seconds: float, aht_seconds: float) -> float:
    """Offered load in Erlangs: ``A = λ · AHT`` with λ in calls per second."""
    return calls / interval_seconds * aht_seconds


def erlang_b(load: float, handlers: int) -> float:
    """Erlang B blocking probability by the stable recurrence ``B_k = A·B/(k + A·B)``."""
    b = 1.0
    for k in range(1, handlers + 1):
        b = load * b / (k + load * b)
    return b


def _erlang_c_wait(load: float, handlers: int, b: float) -> float:
    # C = N·B / (N − A·(1 − B)), valid for N > A.
    return handlers * b / (handlers - load * (1.0 - b))


def erlang_c(calls: float, interval_seconds: float, aht_seconds: float, handlers: int,
             threshold_seconds: float) -> dict[str, Any]:
    """Erlang C (M/M/N, callers never abandon) figures for one interval.

    Args:
        calls: calls offered in the interval (may be fractional, e.g. a forecast).
        interval_seconds: length of the interval.
        aht_seconds: average handling time.
        handlers: handlers answering calls (N).
        threshold_seconds: service-level threshold T.

    Returns:
        The what-if answer of API.md: ``model`` ``"erlang_c"``, ``offered_load_erlangs``,
        ``p_wait``, ``service_level`` (share answered in under T), ``asa_seconds``,
        ``mean_wait_seconds`` (equal to ASA here), ``abandonment`` (None) and ``occupancy``.
        With N ≤ A the queue grows without bound: ``p_wait`` 1, ``service_level`` 0, waits
        None (unbounded), occupancy 1.

    Raises:
        QueueInputError: a parameter is out of range.
    """
    _check(calls, interval_seconds, aht_seconds, handlers, threshold_seconds)
    load = offered_load(calls, interval_seconds, aht_seconds)
    result: dict[str, Any] = {"model": "erlang_c", "offered_load_erlangs": load}
    if load == 0:
        return result | _idle(handlers)
    if handlers <= load:
        return result | {"p_wait": 1.0, "service_level": 0.0, "asa_seconds": None,
                         "mean_wait_seconds": None, "abandonment": None, "occupancy": 1.0}
    p_wait = _erlang_c_wait(load, handlers, erlang_b(load, handlers))
    asa = p_wait * aht_seconds / (handlers - load)
    service_level = 1.0 - p_wait * math.exp(-(handlers - load) * threshold_seconds / aht_seconds)
    return result | {"p_wait": p_wait, "service_level": service_level, "asa_seconds": asa,
                     "mean_wait_seconds": asa, "abandonment": None,
                     "occupancy": load / handlers}


def _idle(handlers: int) -> dict[str, Any]:
    return {"p_wait": 0.0, "service_level": 1.0, "asa_seconds": 0.0, "mean_wait_seconds": 0.0,
            "abandonment": 0.0, "occupancy": 0.0 if handlers else None}


def erlang_a(calls: float, interval_seconds: float, aht_seconds: float, handlers: int,
             threshold_seconds: float, patience_seconds: float) -> dict[str, Any]:
    """Erlang A (M/M/N+M: exponential patience, callers abandon) figures for one interval.

    Computed exactly from the birth-death chain of calls in the system (log-space weights,
    truncated where the tail is below e^-46); a waiting caller with ``i`` callers ahead moves
    up at rate ``N/AHT + i/patience``, and is answered in time when all those stages end
    before both T and its own patience.

    Args:
        calls: calls offered in the interval.
        interval_seconds: length of the interval.
        aht_seconds: average handling time.
        handlers: handlers answering calls (N).
        threshold_seconds: service-level threshold T.
        patience_seconds: callers' mean patience (exponentially distributed).

    Returns:
        The what-if answer of API.md with ``model`` ``"erlang_a"``: ``p_wait`` (an arrival
        must wait), ``service_level`` (share of all arrivals answered in under T),
        ``asa_seconds`` (mean wait of answered calls), ``mean_wait_seconds`` (mean wait of
        all arrivals, abandoned ones included), ``abandonment`` (share of arrivals that
        abandon) and ``occupancy`` (carried load / N).

    Raises:
        QueueInputError: a parameter is out of range.
    """
    _check(calls, interval_seconds, aht_seconds, handlers, threshold_seconds, patience_seconds)
    load = offered_load(calls, interval_seconds, aht_seconds)
    result: dict[str, Any] = {"model": "erlang_a", "offered_load_erlangs": load}
    if load == 0:
        return result | _idle(handlers)
    if handlers == 0:
        return result | {"p_wait": 1.0, "service_level": 0.0, "asa_seconds": None,
                         "mean_wait_seconds": patience_seconds, "abandonment": 1.0,
                         "occupancy": None}
    lam = calls / interval_seconds
    mu = 1.0 / aht_seconds
    theta = 1.0 / patience_seconds
    n = int(handlers)

    # Log-weights of states 0..N (Poisson-like A^k/k!) and N+j (rates N·mu + j·theta).
    k = np.arange(n + 1, dtype=float)
    log_low = k * math.log(load) - gammaln(k + 1)
    peak = max(0.0, (lam - n * mu) / theta)
    size = int(peak + 12 * math.sqrt(lam / theta + 1) + 64)
    if size > _MAX_QUEUE_STATES:
        raise QueueInputError(
            f"these figures would keep about {peak:,.0f} callers queueing: beyond what Erlang A "
            "computes exactly here; check calls, aht_seconds, handlers and patience_seconds")
    while True:
        j = np.arange(1, size + 1, dtype=float)
        log_high = log_low[-1] + np.cumsum(math.log(lam) - np.log(n * mu + j * theta))
        if log_high[-1] < max(log_low.max(), log_high.max()) + _LOG_TAIL:
            break
        size *= 2
    log_all = np.concatenate([log_low, log_high])
    log_total = logsumexp(log_all)
    probs_queue = np.exp(np.concatenate([[log_low[-1]], log_high]) - log_total)  # π_j, j ≥ 0
    queued = np.arange(probs_queue.size, dtype=float)

    p_wait = float(probs_queue.sum())
    mean_queue = float((queued * probs_queue).sum())
    # An arrival finding j callers ahead is answered when its j+1 stages (rate r_i = N·mu +
    # i·theta with i ahead) all finish before its own patience: ∏ r_i / (r_i + theta).
    rates = n * mu + queued * theta
    tilted = rates + theta
    p_answered_given = np.cumprod(rates / tilted)
    abandonment = float((probs_queue * (1.0 - p_answered_given)).sum())
    answered_wait = float((probs_queue * p_answered_given * np.cumsum(1.0 / tilted)).sum())
    answered_share = 1.0 - abandonment
    within = _tilted_within(probs_queue * p_answered_given, n * mu + theta, theta,
                            threshold_seconds)
    return result | {
        "p_wait": _unit(p_wait),
        "service_level": _unit((1.0 - p_wait) + within),
        "asa_seconds": answered_wait / answered_share if answered_share > 0 else None,
        "mean_wait_seconds": mean_queue / lam,
        "abandonment": _unit(abandonment),
        "occupancy": _unit(load * answered_share / n),
    }


def _unit(value: float) -> float:
    # Sums of many tiny probabilities can land a rounding error outside [0, 1].
    return min(max(value, 0.0), 1.0)


def _tilted_within(weights: np.ndarray, first_rate: float, theta: float,
                   threshold_seconds: float) -> float:
    """Σ_j w_j · P(Exp(a) + Exp(a + θ) + … + Exp(a + jθ) < T), with ``a = first_rate``.

    Exponential stages whose rates step by θ add up to an order statistic of exponentials
    (Rényi), so the sum's CDF is the regularised incomplete beta ``I_{1−e^{−θT}}(j+1, a/θ)``:
    exact, and as fast for 500 handlers as for 5.
    """
    if threshold_seconds <= 0:
        return 0.0
    stages = np.arange(1, weights.size + 1, dtype=float)
    cdf = betainc(stages, first_rate / theta, -math.expm1(-theta * threshold_seconds))
    return float((weights * cdf).sum())


def required_handlers(calls: float, interval_seconds: float, aht_seconds: float,
                      threshold_seconds: float, target_service_level: float,
                      max_occupancy: float, patience_seconds: float | None = None) -> int:
    """The smallest N > A meeting the service-level target and the maximum occupancy.

    Args:
        calls: calls offered in the interval.
        interval_seconds: length of the interval.
        aht_seconds: average handling time.
        threshold_seconds: service-level threshold T.
        target_service_level: share to answer in under T, in (0, 1].
        max_occupancy: the highest acceptable occupancy, in (0, 1].
        patience_seconds: callers' mean patience for Erlang A; None for Erlang C.

    Returns:
        The handler count; 0 when no calls are offered.

    Raises:
        QueueInputError: a parameter is out of range, or no N up to the limit meets the target.
    """
    _check(calls, interval_seconds, aht_seconds, 0, threshold_seconds, patience_seconds)
    if not 0 < target_service_level <= 1 or not 0 < max_occupancy <= 1:
        raise QueueInputError("target_service_level and max_occupancy must be in (0, 1]")
    load = offered_load(calls, interval_seconds, aht_seconds)
    if load == 0:
        return 0
    n = max(math.floor(load) + 1, math.ceil(load / max_occupancy - 1e-12))
    if patience_seconds is None:
        b = erlang_b(load, n)
        while n <= _MAX_HANDLERS:
            p_wait = _erlang_c_wait(load, n, b)
            service_level = 1 - p_wait * math.exp(-(n - load) * threshold_seconds / aht_seconds)
            if service_level >= target_service_level and load / n <= max_occupancy:
                return n
            n += 1
            b = load * b / (n + load * b)
    else:
        while n <= _MAX_HANDLERS:
            figures = erlang_a(calls, interval_seconds, aht_seconds, n, threshold_seconds,
                               patience_seconds)
            if (figures["service_level"] >= target_service_level
                    and figures["occupancy"] <= max_occupancy):
                return n
            n += 1
    raise QueueInputError(f"no handler count up to {_MAX_HANDLERS} meets the target")


def required_handlers_many(calls: np.ndarray, interval_seconds: float, aht_seconds: np.ndarray,
                           threshold_seconds: float, target_service_level: float,
                           max_occupancy: float) -> np.ndarray:
    """Erlang C :func:`required_handlers` for many intervals at once (vectorised recurrence).

    Args:
        calls: calls per interval (≥ 0).
        interval_seconds: length of each interval.
        aht_seconds: average handling time per interval (> 0).
        threshold_seconds: service-level threshold T.
        target_service_level: share to answer in under T.
        max_occupancy: the highest acceptable occupancy.

    Returns:
        Integer handler counts, 0 where no calls are offered.
    """
    calls = np.asarray(calls, dtype=float)
    aht = np.broadcast_to(np.asarray(aht_seconds, dtype=float), calls.shape)
    if (calls < 0).any() or not np.isfinite(calls).all():
        raise QueueInputError("calls: every value must be a finite number ≥ 0")
    if (aht <= 0).any() or not np.isfinite(aht).all():
        raise QueueInputError("aht_seconds: every value must be a finite number > 0")
    load = calls / interval_seconds * aht
    result = np.zeros(calls.shape, dtype=np.int64)
    pending = load > 0
    floor_n = np.maximum(np.floor(load) + 1, np.ceil(load / max_occupancy - 1e-12))
    b = np.ones(calls.shape)
    k = 0
    while pending.any():
        k += 1
        if k > _MAX_HANDLERS:
            raise QueueInputError(f"no handler count up to {_MAX_HANDLERS} meets the target")
        b = load * b / (k + load * b)
        check = pending & (k >= floor_n)
        if not check.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            p_wait = k * b / (k - load * (1 - b))
            service_level = 1 - p_wait * np.exp(-(k - load) * threshold_seconds / aht)
        met = check & (service_level >= target_service_level) & (load / k <= max_occupancy)
        result[met] = k
        pending &= ~met
    return result


def erlang_c_many(calls: np.ndarray, interval_seconds: float, aht_seconds: np.ndarray,
                  handlers: np.ndarray, threshold_seconds: float) -> dict[str, np.ndarray]:
    """Erlang C figures for many intervals at once.

    Returns:
        Arrays ``p_wait``, ``service_level``, ``asa_seconds`` (NaN where N ≤ A) and
        ``occupancy`` (NaN with no handlers).
    """
    calls = np.asarray(calls, dtype=float)
    aht = np.broadcast_to(np.asarray(aht_seconds, dtype=float), calls.shape)
    handlers = np.asarray(handlers, dtype=np.int64)
    load = calls / interval_seconds * aht
    b = np.ones(calls.shape)
    b_at = np.ones(calls.shape)
    for k in range(1, int(handlers.max(initial=0)) + 1):
        b = load * b / (k + load * b)
        b_at = np.where(handlers == k, b, b_at)
    stable = handlers > load
    with np.errstate(divide="ignore", invalid="ignore"):
        p_wait = np.where(stable, handlers * b_at / (handlers - load * (1 - b_at)), 1.0)
        p_wait = np.where(load == 0, 0.0, p_wait)
        service_level = np.where(
            stable, 1 - p_wait * np.exp(-(handlers - load) * threshold_seconds / aht), 0.0)
        service_level = np.where(load == 0, 1.0, service_level)
        asa = np.where(stable, p_wait * aht / (handlers - load), np.nan)
        asa = np.where(load == 0, 0.0, asa)
        occupancy = np.where(handlers > 0, np.minimum(load / handlers, 1.0), np.nan)
    return {"p_wait": p_wait, "service_level": service_level, "asa_seconds": asa,
            "occupancy": occupancy}


def erlang_a_many(calls: np.ndarray, interval_seconds: float, aht_seconds: np.ndarray,
                  handlers: np.ndarray, patience_seconds: float) -> dict[str, np.ndarray]:
    """Erlang A waiting and abandonment for many intervals at once (N > A only).

    With ``x = N·AHT⁻¹/θ``, ``y = λ/θ`` and ``S = Σ_j yʲ / ((x+1)…(x+j))`` (the queue states'
    weights relative to all N busy), ``P(wait) = S·B / (1 + (S − 1)·B)`` with B the Erlang B
    blocking, and ``P(abandon) = θ·L_q/λ``. Intervals with N ≤ A are NaN (use
    :func:`erlang_a`).

    Returns:
        Arrays ``p_wait``, ``abandonment``, ``mean_wait_seconds`` and ``occupancy``.
    """
    calls = np.asarray(calls, dtype=float)
    aht = np.broadcast_to(np.asarray(aht_seconds, dtype=float), calls.shape)
    handlers = np.asarray(handlers, dtype=np.int64)
    load = calls / interval_seconds * aht
    ok = (handlers > load) & (load > 0)
    out = {name: np.full(calls.shape, np.nan)
           for name in ("p_wait", "abandonment", "mean_wait_seconds", "occupancy")}
    zero = load == 0
    for name in ("p_wait", "abandonment", "mean_wait_seconds"):
        out[name][zero] = 0.0
    out["occupancy"][zero & (handlers > 0)] = 0.0
    if not ok.any():
        return out
    lam = calls[ok] / interval_seconds
    theta = 1.0 / patience_seconds
    x = handlers[ok] / aht[ok] / theta
    y = lam / theta
    size = int(np.max(12 * np.sqrt(y) + 64))
    while True:
        steps = np.arange(1, size + 1, dtype=float)
        terms = np.cumprod(y[:, None] / (x[:, None] + steps[None, :]), axis=1)
        if (terms[:, -1] < 1e-18).all():
            break
        size *= 2
    s0 = 1.0 + terms.sum(axis=1)
    s1 = (terms * steps[None, :]).sum(axis=1)
    b = np.ones(lam.shape)
    b_at = np.ones(lam.shape)
    n_ok = handlers[ok]
    load_ok = load[ok]
    for k in range(1, int(n_ok.max()) + 1):
        b = load_ok * b / (k + load_ok * b)
        b_at = np.where(n_ok == k, b, b_at)
    p_full = b_at / (1.0 + (s0 - 1.0) * b_at)  # probability of exactly N in the system
    abandonment = s1 * p_full / y
    out["p_wait"][ok] = s0 * p_full
    out["abandonment"][ok] = abandonment
    out["mean_wait_seconds"][ok] = s1 * p_full / lam
    out["occupancy"][ok] = load_ok * (1.0 - abandonment) / n_ok
    return out
