"""Keeping and restoring a run's state: best weights, checkpoints, in-memory snapshots, RNG states, and what
a non-finite loss does (stop, or roll back to the last good epoch). Mixed into ``Loop``."""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from epochpilot.core.stopping.base import Reason
from epochpilot.errors import CheckpointError
from epochpilot.train import distributed as D
from epochpilot.train.rng import get_rng, set_rng
from epochpilot.train.serial import (
    JSONList,
    json_text,
    ready_event,
    sanitize,
    serialize,
    snapshot,
    to_host,
)

__all__ = ["Persistence"]

log = logging.getLogger("epochpilot")


class Persistence:
    """State in and out of checkpoints and snapshots (the attributes come from ``Loop``)."""

    # -- NaN -----------------------------------------------------------------------------------------------
    def _not_finite(self) -> bool:
        """Handle a non-finite training loss (its epoch's row already recorded): True to retry (rollback),
        False to stop."""
        st = self.state
        where = f"epoch {st.epoch} (update {st.step})"
        if self.cfg.on_nan == "rollback" and self.snapshot is not None and st.rollbacks < 3:
            tries = st.rollbacks + 1
            self._restore(snapshot(self.snapshot))  # a copy: the optimizer would alias its tensors
            st.rollbacks = tries
            st.lr_scale *= 0.5
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.5
            self._reset_accumulators()
            log.warning(
                "loss was not finite in %s: rolled back to epoch %d and halved the lr (try %d of 3)",
                where,
                st.epochs_done,
                tries,
            )
            return True
        st.stop, st.stop_reason = True, Reason.NOT_FINITE
        if self.cfg.on_nan == "rollback":
            st.stop_message = f"the training loss was still not finite after 3 rollbacks with halved lr (in {where}): lower lr or check the data"
        else:
            st.stop_message = f"the training loss became not finite in {where}: lower lr, clip gradients or check the data; kept the best weights"
        self._handle(self._dispatch("epoch_end"))
        return False

    # -- best weights, snapshots, checkpoints ----------------------------------------------------------------
    def keep_best(self) -> None:
        """Copy the current weights to CPU as the best so far, and to ``checkpoints/best`` when saving."""
        # on CUDA copied without waiting: a save or the writer synchronizes on an event recorded after it
        self.best_weights = {k: to_host(v, True) for k, v in self.module.state_dict().items()}
        self.state.best_mid = self._mid
        # written at the end of the epoch, or held by the epoch's checkpoint if there is one
        self.best_dirty = True

    def _write_best(self) -> None:
        """Write ``checkpoints/best`` (rank 0) from the kept weights: for a best epoch without a checkpoint of
        its own (a best epoch with one is linked lazily, see ``CheckpointDir.save(holds_best=True)``)."""
        self.best_dirty = False
        if self.ckpts is None or not self.state.is_main:
            return
        self.ckpts.save(
            "best",
            model=self.best_weights,
            optimizer=None,
            state=None,
            meta=self._meta(),
            ready=ready_event(self.device),
        )

    def _meta(self) -> dict[str, Any]:
        import epochpilot

        return {
            "epochpilot_version": epochpilot.__version__,
            "torch_version": torch.__version__,
            "config_hash": self.config_hash,
            "world_size": self.dist.world_size,
            "counters": dict(
                self.state.counters(), extended=self.extended, budget=self.budget.state_dict()
            ),
            "history": self._json_rows(self.state.history),
            "checks": self._json_rows(self.state.checks_log),
            "created": time.time(),
        }

    def _json_rows(self, rows: list[dict[str, Any]]) -> JSONList:
        """JSON-safe copies of history rows with their JSON text, each made once: recorded rows do not change,
        and a checkpoint rewrites the whole history, so encoding it afresh every save would cost O(epochs)
        per save (in the writer thread, holding the GIL the training thread needs)."""
        cache: dict[int, tuple[dict[str, Any], int, dict[str, Any], str]]
        cache = self.__dict__.setdefault("_row_cache", {})
        out, texts = [], []
        for row in rows:
            hit = cache.get(id(row))
            if hit is None or hit[0] is not row or hit[1] != len(row):
                clean = sanitize(dict(row))
                hit = (row, len(row), clean, json_text(clean))
                cache[id(row)] = hit
            out.append(hit[2])
            texts.append(hit[3])
        return JSONList.of(out, texts)

    def _capture(
        self, pinned: bool = False, rng: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Everything needed to continue from here, as CPU copies (safe to keep or to write in the background);
        ``pinned``: CUDA tensors copied without waiting (synchronize an event recorded after it first).
        ``rng``: every rank's RNG states, for a checkpoint. A checkpoint of a run on the CPU gets its three
        files as bytes (``torch.save`` here, which is the copy): the writer thread then only does file I/O,
        which releases the GIL, instead of pickling while the training thread waits for the GIL."""
        state = {
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks},
            "data": self.train.state_dict(),
            "data_seed": self.data_seed,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "acc": self.acc,
            "batching": self.batching.state_dict(),
        }
        live = {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}
        if rng is not None and self.device.type == "cpu":
            # cooldown="sweep": the trunk's copies (never mutated) go with the state
            state.update(self._trunk_parts(), rng=rng)
            parts: dict[str, Any] = {k: serialize(v) for k, v in [*live.items(), ("state", state)]}
        else:
            parts = snapshot(dict(live, state=state), pinned)
            # not copied: never mutated
            parts["state"].update(self._trunk_parts())
            if rng is not None:
                parts["state"]["rng"] = rng
        parts["meta"] = self._meta()
        parts["best"] = self.best_weights
        return parts

    def _trunk_parts(self) -> dict[str, Any]:
        """cooldown="sweep": inside a branch, the trunk's copy to return to; on the trunk, its best epoch since
        the last fork."""
        out = {}
        if self.trunk is not None:
            out["trunk"] = self.trunk
        if self.trunk_best is not None:
            out["trunk_best"] = self.trunk_best
        return out

    def save(self, mid_epoch: bool = False) -> None:
        """Queue a checkpoint (rank 0) with every rank's RNG states; the summary is rewritten after it."""
        if self.ckpts is None:
            return
        rngs = D.gather(get_rng(), self.dist)
        if self.state.is_main:
            parts = self._capture(pinned=True, rng=rngs)
            ready = ready_event(self.device)  # the writer waits on it, not this thread
            st = self.state
            name = f"step-{st.step:07d}" if mid_epoch else f"epoch-{st.epochs_done:04d}"
            holds_best = (
                self.best_dirty
                and not mid_epoch
                and not st.best_mid
                and st.best_epoch == st.epochs_done
            )
            self.ckpts.save(
                name,
                after=self.summary_writer(),
                holds_best=holds_best,
                model=parts["model"],
                optimizer=parts["optimizer"],
                state=parts["state"],
                meta=parts["meta"],
                ready=ready,
            )
            if (
                holds_best
            ):  # best/ follows from this checkpoint when it is rotated out (see CheckpointDir)
                self.best_dirty = False

    def _restore(self, parts: dict[str, Any], best: dict[str, torch.Tensor] | None = None) -> None:
        """Load a checkpoint or snapshot into model, optimizer, callbacks, data position, RNG and counters.

        Checkpoint parts (from ``load_checkpoint``: they carry a ``path``) are checked against this model and
        optimizer first; see :meth:`_resume_parts` for what happens when they do not fit."""
        from_checkpoint = "path" in parts
        if from_checkpoint:
            parts, best = self._resume_parts(parts, best)
        st = self.state
        self.module.load_state_dict(parts["model"])
        self.optimizer.load_state_dict(parts["optimizer"])
        inner = parts["state"]
        by_key = inner.get("callbacks", {})
        for cb in self.callbacks:
            if cb.state_key in by_key:
                cb.load_state_dict(copy.deepcopy(by_key[cb.state_key]))
            elif cb.state_dict():
                log.warning(
                    "checkpoint has no state for callback %r: it starts fresh", cb.state_key
                )
        self.train.load_state_dict(inner.get("data", {}))
        if (
            from_checkpoint and "batching" in inner
        ):  # a rollback keeps the splits an out-of-memory forced
            self.batching.load_state_dict(inner["batching"])
        self.trunk = inner.get("trunk")
        self.trunk_best = inner.get("trunk_best")
        self.data_seed = inner.get("data_seed", self.data_seed)
        if self.scaler is not None and inner.get("scaler"):
            self.scaler.load_state_dict(inner["scaler"])
        acc = inner["acc"]
        self.acc = {
            k: (v.to(self.device).clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v))
            for k, v in acc.items()
        }
        counters = dict(parts["meta"]["counters"])
        self.extended = counters.pop("extended", 0)
        budget = counters.pop("budget", None)
        if budget is not None:
            self.budget.load_state_dict(budget)
        st.load_counters(counters)
        self._sync_schedule()  # a cooldown decided before this checkpoint (or none, after a rollback)
        st.max_epochs = self.budget.epochs + self.extended
        # JSON stored non-finite values as null; rows hold floats, so they come back as NaN
        st.checks_log = [
            {k: (math.nan if v is None else v) for k, v in row.items()}
            for row in parts["meta"].get("checks", [])
        ]
        st.history = [
            {k: (math.nan if v is None else v) for k, v in row.items()}
            for row in parts["meta"]["history"]
        ]
        if "rng" in inner:
            rngs = inner["rng"]
            if len(rngs) != self.dist.world_size:
                log.warning(
                    "checkpoint was written by %d processes, now %d: RNG streams restart",
                    len(rngs),
                    self.dist.world_size,
                )
            set_rng(rngs[min(self.dist.rank, len(rngs) - 1)])
        if "best" in parts:
            self.best_weights = parts["best"]
        elif best is not None:
            self.best_weights = best

    # -- checking a checkpoint before resuming from it ---------------------------------------------------------
    def _model_misfit(self, weights: dict[str, Any]) -> str | None:
        from epochpilot.train.checkpoint_check import state_dict_misfit

        return state_dict_misfit(weights, self.module.state_dict())

    def _misfit(self, parts: dict[str, Any]) -> str | None:
        """Why checkpoint ``parts`` cannot be restored into this model, optimizer and loop (naming the file), or
        None. Nothing is changed, so a misfit can fall back to another checkpoint."""
        path = Path(parts["path"])
        problem = self._model_misfit(parts["model"])
        if problem is not None:
            return f"{path / 'model.pt'} {problem}"
        opt, live = parts["optimizer"], self.optimizer.param_groups
        groups = opt["param_groups"]
        sizes, live_sizes = [len(g["params"]) for g in groups], [len(g["params"]) for g in live]
        if sizes != live_sizes:
            return (
                f"{path / 'optimizer.pt'} does not match the optimizer (parameter groups of sizes {sizes}, "
                f"the optimizer's are {live_sizes})"
            )
        ids = [i for g in groups for i in g["params"]]
        params = dict(zip(ids, [p for g in live for p in g["params"]]))
        for pid, entry in opt["state"].items():
            param = params.get(pid)
            if param is None or not isinstance(entry, dict):
                return f"{path / 'optimizer.pt'} holds state for an unknown parameter {pid!r}"
            for key, value in entry.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.dim() > 0
                    and value.shape != param.shape
                ):
                    return (
                        f"{path / 'optimizer.pt'} does not match the model ({key} of parameter {pid} is "
                        f"{list(value.shape)}, the parameter's is {list(param.shape)})"
                    )
        counters = parts["meta"]["counters"]
        unknown = sorted(set(counters) - set(self.state.counters()) - {"extended", "budget"})
        if unknown:
            return f"{path / 'meta.json'} has unknown counters {unknown[:5]}"
        try:
            Reason(counters.get("stop_reason", Reason.CONTINUE.value))
        except ValueError:
            return f"{path / 'meta.json'} has an unknown stop_reason {counters['stop_reason']!r}"
        return None

    def _check_parts(
        self, parts: dict[str, Any], best: dict[str, torch.Tensor] | None = None
    ) -> tuple[str | None, dict[str, torch.Tensor] | None, str | None]:
        """``(misfit, best weights, why the best weights are lost)`` for checkpoint ``parts``."""
        from epochpilot.train.checkpoint_check import find_best

        problem = self._misfit(parts)
        if problem is not None:
            return problem, None, None
        if best is not None and self._model_misfit(best) is None:
            return None, best, None
        weights, _, why = find_best(Path(parts["path"]), parts, self._model_misfit)
        return None, weights, why

    def _resume_parts(
        self, parts: dict[str, Any], best: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        """The checkpoint to restore and its best weights: ``parts`` when they fit this loop and their best
        weights are found. Otherwise, when the checkpoint was chosen automatically (``resume`` True or
        "auto"), the newest older checkpoint that is usable, announced in one warning line, so the run goes on
        exactly as from that checkpoint; failing that, the newest one usable but for its best weights. A
        checkpoint given by path, or a run with no usable checkpoint, raises one CheckpointError line."""
        from epochpilot.train.checkpoint import list_checkpoints
        from epochpilot.train.checkpoint_check import one_line, start_again, verify_checkpoint

        path = Path(parts["path"])
        problem, weights, lost = self._check_parts(parts, best)
        self.resumed_from = path
        if problem is None and lost is None:
            return parts, weights
        auto = self.cfg.resume is True or self.cfg.resume == "auto"
        if not auto:
            if problem is not None:
                raise CheckpointError(f"{problem}: resume from a checkpoint of this model")
            log.warning("%s: resuming %s without them", lost, path.name)
            return parts, None
        problems = [problem or lost]
        partial = (path, parts) if problem is None else None  # usable but for its best weights
        known = list_checkpoints(path.parent)
        older = known[: known.index(path)] if path in known else known
        for cand_path in reversed(older):
            try:
                cand = verify_checkpoint(cand_path)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            problem, weights, lost = self._check_parts(cand)
            if problem is None and lost is None:
                log.warning(
                    "unusable checkpoint: %s; resuming from %s, the newest usable checkpoint",
                    one_line(problems),
                    cand_path.name,
                )
                self.resumed_from = cand_path
                return cand, weights
            problems.append(problem or lost)
            if partial is None and problem is None:
                partial = (cand_path, cand)
        if partial is not None:
            log.warning(
                "unusable checkpoint: %s; resuming from %s without its best weights: the final model will be "
                "the best epoch trained from here on, or the last",
                one_line(problems),
                partial[0].name,
            )
            self.resumed_from = partial[0]
            return partial[1], None
        raise CheckpointError(
            f"no usable checkpoint in {path.parent}: {one_line(problems)}; restore the damaged files, or start "
            f"the run again ({start_again(path.parent)})"
        )
