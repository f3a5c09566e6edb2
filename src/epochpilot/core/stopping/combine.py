"""Combine stop policies: ``AnyOf`` stops when any of its policies says stop."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from epochpilot.core.stopping.base import STATE_VERSION, Decision, Policy, Reason, check_epoch
from epochpilot.core.stopping.wording import stop_sentence

__all__ = ["AnyOf"]


def _fired(decision: Decision, also: str) -> str:
    """The details line of a stop: which policy fired (and which also did), then its numbers."""
    details = decision.details or decision.message
    if details.startswith(f"{decision.policy} fired"):  # from a nested AnyOf: named already
        return details
    prefix = f"{decision.policy}: "
    if details.startswith(prefix):
        details = details[len(prefix) :]
    return f"{decision.policy} fired{also}: {details}"


class AnyOf(Policy):
    """Stop as soon as any policy says stop; every policy is updated at every epoch.

    The decision names the policy that fired (``Decision.policy`` and ``details``; the first one in
    argument order when several fire at once); its ``message`` is the plain stop sentence with the fired
    policy's reason and the first policy's kept epoch. ``improved``, ``best_epoch`` and ``best_value`` come
    from the *first* policy, so put the one whose best epoch you want to keep first. NaN/inf handling is
    each policy's own (e.g. ``EarlyStopping(check_finite=True)`` fires with ``NOT_FINITE``).

    >>> from epochpilot.core.stopping import EarlyStopping, GeneralizationLoss
    >>> policy = AnyOf(EarlyStopping("val_loss", mode="min", patience=10),
    ...                GeneralizationLoss(alpha=5.0, monitor="val_loss"))
    >>> for epoch, loss in enumerate([1.0, 0.8, 0.9], start=1):
    ...     decision = policy.update(epoch, {"val_loss": loss})
    >>> decision.stop, decision.reason.value, decision.policy, decision.best_epoch
    (True, 'generalization_loss', 'GeneralizationLoss(val_loss)', 2)
    >>> print(decision.message)
    Stopped at epoch 3: validation loss is 12.5% above its best, more than the 5% allowed. Kept epoch 2 (val_loss 0.8).
    >>> print(decision.details)
    GeneralizationLoss(val_loss) fired: GL(val_loss) = 12.5 > alpha 5: val_loss 0.9 is 12.5% above its best (best 0.8 at epoch 2)
    """

    def __init__(self, *policies: Policy) -> None:
        if not policies:
            raise ValueError("AnyOf needs at least one policy, e.g. AnyOf(EarlyStopping(...), ...)")
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise TypeError(
                    f"policies[{index}] must be a stop Policy, got {type(policy).__name__}"
                )
        if len({id(policy) for policy in policies}) != len(policies):
            raise ValueError(
                "policies: the same policy object is given twice; it would be updated twice"
            )
        self.policies = policies

    @property
    def name(self) -> str:
        """``AnyOf(name1, name2, ...)``."""
        return f"AnyOf({', '.join(policy.name for policy in self.policies)})"

    def _init_state(self) -> None:
        for policy in self.policies:
            policy._init_state()

    def reset(self) -> None:
        """Reset every policy."""
        for policy in self.policies:
            policy.reset()

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        """Update every policy with epoch ``epoch``'s metrics (1-based); stop if any says stop."""
        epoch = check_epoch(epoch)
        decisions = [policy.update(epoch, metrics) for policy in self.policies]
        first = decisions[0]
        fired = [decision for decision in decisions if decision.stop]
        if fired:
            hit = fired[0]
            also = f" (also: {', '.join(d.policy for d in fired[1:])})" if len(fired) > 1 else ""
            why = hit.why or hit.message.strip().rstrip(".")
            monitor = str(getattr(self.policies[0], "monitor", "") or "the monitor")
            return Decision(
                stop=True,
                reason=hit.reason,
                improved=first.improved,
                best_epoch=first.best_epoch,
                best_value=first.best_value,
                message=stop_sentence(epoch, why, first.best_epoch, monitor, first.best_value),
                policy=hit.policy,
                details=_fired(hit, also),
                why=why,
            )
        return Decision(
            stop=False,
            reason=Reason.CONTINUE,
            improved=first.improved,
            best_epoch=first.best_epoch,
            best_value=first.best_value,
            message="; ".join(f"{d.policy}: {d.message}" for d in decisions),
            policy=self.name,
            extend_by=max(decision.extend_by for decision in decisions),
            details="; ".join(d.details for d in decisions if d.details),
        )

    def state_dict(self) -> dict[str, Any]:
        """``{"policy": "AnyOf", "version": ..., "state": {"policies": [child state dicts, in order]}}``."""
        children = [policy.state_dict() for policy in self.policies]
        return {
            "policy": type(self).__name__,
            "version": STATE_VERSION,
            "state": {"policies": children},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore every child's state; nothing changes unless every child's state loads."""
        inner = self._unwrap_state(state)
        if set(inner) != {"policies"}:
            raise ValueError(
                f"AnyOf state must have exactly the key 'policies', got {sorted(inner)}"
            )
        children = inner["policies"]
        if not isinstance(children, list) or len(children) != len(self.policies):
            count = len(children) if isinstance(children, list) else type(children).__name__
            raise ValueError(
                f"AnyOf state holds {count} policies, this AnyOf has {len(self.policies)}"
            )
        for policy, child in zip(self.policies, children):
            copy.deepcopy(policy).load_state_dict(child)  # validate all before changing any
        for policy, child in zip(self.policies, children):
            policy.load_state_dict(child)
