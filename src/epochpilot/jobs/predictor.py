"""A trained run's predictor: the saved preprocessing (plain JSON) plus the best weights, for new rows.

``load(RUN_DIR)`` reads ``preprocessor.json``, ``model.json`` and ``model.pt`` (a tensor dict, loaded with
``weights_only=True``); new data never needs the training data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from epochpilot._files import read_json_file
from epochpilot.data.table import Preprocessor
from epochpilot.errors import CheckpointError, ConfigError, DataError

__all__ = ["PREDICTOR_FILES", "Predictor", "load"]

PREDICTOR_FILES = ("preprocessor.json", "model.json", "model.pt")

log = logging.getLogger("epochpilot")


class Predictor:
    """A trained model with its preprocessing: ``predict`` and ``evaluate`` on new rows."""

    def __init__(self, run_dir: Path, pre: Preprocessor, model: torch.nn.Module) -> None:
        self.run_dir = Path(run_dir)
        self.preprocessor = pre
        self.model = model.eval().cpu()

    def _frame(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        return _read_frame(data) if isinstance(data, (str, Path)) else data

    @torch.no_grad()
    def _outputs(self, frame: pd.DataFrame) -> torch.Tensor:
        X, _ = self.preprocessor.transform(frame, with_target=False)
        return self.model(torch.from_numpy(X))

    def predict(self, data: pd.DataFrame | str | Path) -> pd.DataFrame:
        """Predictions for new rows (labels as in training; class probabilities for classification)."""
        frame = self._frame(data)
        out = self._outputs(frame)
        pre = self.preprocessor
        if pre.task == "regression":
            return pd.DataFrame({"prediction": pre.decode_values(out.reshape(-1).numpy())})
        proba = torch.softmax(out.float(), dim=1).numpy()
        result = pd.DataFrame({"prediction": pre.decode(proba.argmax(axis=1))})
        for i, cls in enumerate(pre.classes):
            result[f"p_{cls}"] = proba[:, i]
        return result

    def evaluate(self, data: pd.DataFrame | str | Path) -> dict[str, float]:
        """Loss, accuracy and ROC AUC (binary) for classification; R², MAE, RMSE and MSE in the target's own
        units for regression (see :mod:`epochpilot.core.scores`); ``n`` rows. Undefined scores are NaN."""
        frame = self._frame(data)
        pre = self.preprocessor
        if pre.target not in frame.columns:
            where = frame.attrs.get("source", "the evaluation data")
            raise DataError(f"{where} has no target column {pre.target!r}: add it or use predict")
        X, y = pre.transform(frame)
        return self.score(X, y)

    @torch.no_grad()
    def score(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """:meth:`evaluate` on rows already preprocessed (``X``) with encoded targets (``y``: class indices,
        or the standardised regression target)."""
        from epochpilot.core.scores import classification_scores, standardised_regression_scores

        out = self.model(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        pre = self.preprocessor
        if pre.task == "classification":
            target = torch.from_numpy(np.asarray(y, dtype=np.int64).reshape(-1))
            loss = torch.nn.functional.cross_entropy(out.float(), target).item()
            proba = torch.softmax(out.float(), dim=1).numpy()
            return {"loss": loss, **classification_scores(target.numpy(), proba)}
        return standardised_regression_scores(
            np.asarray(y).reshape(-1), out.float().reshape(-1).numpy(), pre.y_mean, pre.y_scale
        )


def _read_frame(path: str | Path) -> pd.DataFrame:
    from epochpilot.data.csvfile import read_frame

    frame = read_frame(path, "--data")
    if frame.empty:
        raise DataError(f"{path} has no data rows")
    return frame


def _model_info(path: Path) -> dict[str, Any]:
    """``model.json``, checked: a damaged or foreign file is one ConfigError naming it and what is wrong."""
    fix = "restore the file or train the run again"
    info = read_json_file(path, ConfigError, fix)
    if not isinstance(info, dict):
        raise ConfigError(f"{path} holds a JSON {type(info).__name__}, not an object: {fix}")
    problems = []
    if not isinstance(info.get("factory"), str):
        problems.append("'factory' must be a string 'package.module:function'")
    for key in ("n_features", "n_outputs"):
        value = info.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{key!r} must be an int >= 1, got {value!r}")
    if not isinstance(info.get("kwargs", {}), dict):
        problems.append("'kwargs' must be an object")
    search = info.get("search", [])
    if not isinstance(search, list) or not all(isinstance(s, str) for s in search):
        problems.append("'search' must be a list of folders")
    if problems:
        raise ConfigError(
            f"{path} is not an epochpilot model description: {'; '.join(problems)}; {fix}"
        )
    return info


def _build(info: dict[str, Any], source: Path) -> torch.nn.Module:
    """The model ``model.json`` describes; a factory refusing its arguments names the file."""
    from epochpilot.jobs.models import build_model

    try:
        return build_model(
            info["factory"],
            info["n_features"],
            info["n_outputs"],
            info.get("kwargs", {}),
            info.get("search", ()),
        )
    except (ConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except RuntimeError as exc:  # e.g. sizes that overflow, even on the meta device
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{source} describes a model that cannot be built ({first}): restore the file or train the run again"
        ) from None


def _weights(run_dir: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.pt`` (``weights_only=True``); when it cannot be loaded, the run's best weights from its newest
    checkpoint, with one warning line; a file of another model is one ConfigError naming it."""
    from epochpilot.train.checkpoint_check import (
        load_weights,
        newest_best,
        state_dict_diff,
        state_dict_misfit,
    )

    file = run_dir / "model.pt"
    expected = model.state_dict()
    try:
        state = load_weights(file)
    except CheckpointError as exc:
        damage = str(exc).removesuffix("; delete that checkpoint")
        try:
            state, source = newest_best(
                run_dir / "checkpoints", lambda w: state_dict_misfit(w, expected)
            )
        except CheckpointError as again:
            raise CheckpointError(
                f"{damage}; {again}: the checkpoints cannot stand in for it, train the run again"
            ) from None
        log.warning("%s: using the best weights from %s instead", damage, source)
        return state
    problem = state_dict_diff(state, expected)
    if problem is not None:
        raise ConfigError(
            f"{file} does not match model.json: {problem}: the weights belong to another model; "
            f"put back this run's model.pt or train the run again"
        )
    return state


def load(run_dir: str | Path, *, trust_factory: bool = False) -> Predictor:
    """The predictor saved in a run directory (weights loaded with ``weights_only=True``).

    A run directory is data: the model factory its ``model.json`` names is imported only when it is built
    into epochpilot, or with ``trust_factory=True`` (as Hugging Face's ``trust_remote_code``): set it only if
    you trust where the run directory came from.
    """
    from epochpilot.jobs.models import BUILTIN_FACTORIES, check_factory

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(
            f"{run_dir} is not a run directory: give the directory 'epochpilot train' wrote"
        )
    missing = [name for name in PREDICTOR_FILES if not (run_dir / name).exists()]
    if missing:
        raise DataError(
            f"{run_dir} is not a finished epochpilot run (missing {', '.join(missing)}): train it first"
        )
    info = _model_info(run_dir / "model.json")
    check_factory(
        info["factory"], run_dir / "model.json", trust_factory
    )  # before anything is imported
    pre = Preprocessor.from_json(run_dir / "preprocessor.json")
    if (info["n_features"], info["n_outputs"]) != (len(pre.features), pre.n_outputs):
        raise ConfigError(
            f"{run_dir / 'model.json'} describes {info['n_features']} inputs and {info['n_outputs']} outputs, "
            f"but preprocessor.json gives {len(pre.features)} and {pre.n_outputs}: the files come from "
            f"different runs; restore them or train the run again"
        )
    if info["factory"] in BUILTIN_FACTORIES:
        # shapes first, without memory: a model.json asking for a huge model must not allocate it
        with torch.device("meta"):
            state = _weights(run_dir, _build(info, run_dir / "model.json"))
        model = _build(info, run_dir / "model.json")
    else:
        model = _build(info, run_dir / "model.json")
        state = _weights(run_dir, model)
    model.load_state_dict(state)
    return Predictor(run_dir, pre, model)
