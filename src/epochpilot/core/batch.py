"""The batch-size search's arithmetic, pure (no torch): the largest batch that fits by doubling then
bisection, and the batch that keeps an effective batch exact. ``epochpilot.train.batch_size`` runs the tries."""

from __future__ import annotations

from collections.abc import Callable

from epochpilot.errors import ConfigError

__all__ = ["fit_to_effective", "search_largest"]


def search_largest(
    fits: Callable[[int], bool], low: int, cap: int, stop: Callable[[], bool] = lambda: False
) -> int | None:
    """Largest batch in ``[low, cap]`` with ``fits(batch)``: double from ``low``, then bisect; None if ``low`` fails.

    Assumes fitting is monotone (a batch fits when a bigger one does). ``stop()`` true ends the search early
    with the largest batch known to fit.

    >>> search_largest(lambda b: b <= 48, 1, 1000)
    48
    """
    if not fits(low):
        return None
    good, bad = low, None
    while good < cap:
        if stop():
            return good
        nxt = min(2 * good, cap)
        if fits(nxt):
            good = nxt
        else:
            bad = nxt
            break
    if bad is None:
        return good
    while bad - good > 1:
        if stop():
            break
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def fit_to_effective(
    largest: int, effective_batch: int | None, min_batch: int = 1
) -> tuple[int, int]:
    """``(batch, accumulation)``: the largest batch <= ``largest`` dividing ``effective_batch`` exactly.

    The effective batch is then exactly what was asked (batch * accumulation == effective_batch), at the cost
    of a smaller batch when ``effective_batch`` is not a multiple of ``largest``. Without ``effective_batch``
    the answer is ``(largest, 1)``.

    >>> fit_to_effective(48, 128)
    (32, 4)
    """
    if effective_batch is None:
        return largest, 1
    for batch in range(min(largest, effective_batch), min_batch - 1, -1):
        if effective_batch % batch == 0:
            return batch, effective_batch // batch
    raise ConfigError(
        f"effective_batch={effective_batch} has no divisor between min_batch={min_batch} and the largest "
        f"fitting batch {largest}: pick an effective_batch that is a multiple of a batch in that range"
    )
