"""Forecast's fixed settings, each with where it was chosen (pure constants; ``forecast`` re-exports them)."""

from __future__ import annotations

__all__ = ["EXCURSION", "FIT_OPTIONS", "LOOKAHEAD", "MAX_FIT_POINTS", "MIN_FIT_POINTS"]

#: fewest finite values the curve ensemble is fitted to (2-3 coefficients plus a noise estimate)
MIN_FIT_POINTS = 5
#: most recent epochs fitted (older ones weigh ~nothing under the recency weights anyway)
MAX_FIT_POINTS = 256
#: P(improve) looks this fraction of the budget ahead (at least 3 epochs): see the class docstring
LOOKAHEAD = 0.2
#: ensemble settings, chosen with a small grid on the tuning split (bench/stopping.py --tune)
FIT_OPTIONS: dict[str, float] = {
    "tau_frac": 0.5,
    "tau_min": 5.0,
    "sigma_floor": 1e-3,
    "temperature": 1.0,
    "noise_factor": 1.0,
    "start_frac": 0.3,
}
#: excursion guard: no forecast stop while one of the last ``lookahead`` values is worse than the first
#: value by more than this multiple of ``|first|`` (mode "min": above twice a positive first loss).
#: 0.5, 1 and 3 were compared on the tuning split's validation curves: 0.5 cost compute for no gain, 1 and 3
#: tied; 1 kept. See the class docstring.
EXCURSION = 1.0
