"""Forecast's words: the plain clauses of its decisions and the details line with the numbers behind them.

Pure: standard library only (the policy and its forecast are passed in).
"""

from __future__ import annotations

from typing import Any

from epochpilot.core.stopping import _prior_weights
from epochpilot.core.stopping._prior import LABEL_NOISE, LABEL_REL
from epochpilot.core.stopping.base import fmt_value
from epochpilot.core.stopping.wording import chance, metric_words, percent
from epochpilot.core.stopping.wording import epochs as n_epochs

__all__ = ["at_budget", "budget_used", "details", "expect", "margin"]


def margin(policy: Any, fc: Any) -> float:
    """The gain that counts as an improvement, in the metric's units: more than the curve's noise, than the
    prior's label floor (a fraction of ``|best|``) and than ``min_delta``."""
    best = abs(float(policy.best_value_ or 0.0))
    rel = float((_prior_weights.WEIGHTS or {}).get("label_rel", LABEL_REL))
    return max(LABEL_NOISE * float(fc.sigma), rel * best, policy._delta(best))


def expect(policy: Any, fc: Any, horizon: int, below: float | None = None) -> str:
    """``"improve by more than 1.5% in the next 6 epochs (a 3% chance)"``; with ``below`` (the threshold a
    stop compares to): ``"(a 3% chance, under the 5% needed to go on)"``."""
    size, best = margin(policy, fc), abs(float(policy.best_value_ or 0.0))
    by = percent(size / best) if best > 0 else fmt_value(size)
    odds = chance(fc.p_improve)
    if below is not None:
        odds += f", under the {percent(below)} needed to go on"
    return f"improve by more than {by} in the next {n_epochs(horizon)} ({odds})"


def details(policy: Any, fc: Any, threshold: float, horizon: int) -> str:
    """The details line: P(improve) against its threshold, the forecast best and its spread, the best."""
    best_txt = f"{fmt_value(policy.best_value_)} at epoch {policy.best_epoch_}"
    extra = ""
    if policy.train_values_ and policy.train_values_[-1] is not None:
        extra += f"; {policy.train_monitor} {fmt_value(policy.train_values_[-1])}"
    if policy.grad_values_ and policy.grad_values_[-1] is not None:
        extra += f"; {policy.grad_monitor} {fmt_value(policy.grad_values_[-1])}"
    cmp = "<" if fc.p_improve < threshold else ">="
    return (
        f"{policy.name}: P(improve) = {fc.p_improve:.2f} {cmp} {threshold:.2f} (1 - confidence) over "
        f"the next {n_epochs(horizon)}, a gain counting above {fmt_value(margin(policy, fc))}; "
        f"forecast best {fmt_value(policy._ext(fc.best))} at epoch {fc.best_epoch} +- {fc.sd:.2g}; "
        f"current best {best_txt}{extra}"
    )


def budget_used(policy: Any) -> str:
    """``"the budget of 14 epochs is used up"`` (with the extension granted so far, when any)."""
    budget, extended = int(policy.budget), int(policy.extended_)
    if not extended:
        return f"the budget of {n_epochs(budget)} is used up"
    return (
        f"the budget of {n_epochs(budget)} and the {n_epochs(extended)} added to it "
        f"(at most {float(policy.max_extension):g} of the budget may be added) are used up"
    )


def at_budget(policy: Any, fc: Any, horizon: int, room: int, threshold: float) -> str:
    """What Forecast says at its budget: the request for more epochs (a sentence) when ``room`` is left and
    a gain is likely (``P(improve) >= threshold``); otherwise the reason clause of its stop, with what it
    still expected."""
    used, words = budget_used(policy), metric_words(policy.monitor)
    if fc.p_improve >= threshold:
        gain = expect(policy, fc, horizon)
        if room > 0:
            more = f"{horizon} more epoch{'s' if horizon != 1 else ''}"
            return f"{used[0].upper()}{used[1:]}, but {words} may still {gain}: asking for {more}"
        return f"{used}; {words} might still {gain}: a larger budget may help"
    gain = expect(policy, fc, horizon, threshold)
    if room > 0:
        return f"{used} and {words} is unlikely to {gain}, so no extension was asked"
    return f"{used}; {words} was unlikely to {gain}"
