"""A trained run's predictor: the saved preprocessing (plain JSON) plus the best weights, for new rows.

``load(RUN_DIR)`` reads ``preprocessor.json``, ``model.json`` and ``model.pt`` (a tensor dict, loaded with
``weights_only=True``); new data never needs the training data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from epochpilot.data import Preprocessor
from epochpilot.errors import DataError

__all__ = ["PREDICTOR_FILES", "Predictor", "load"]

PREDICTOR_FILES = ("preprocessor.json", "model.json", "model.pt")


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
        """Loss and accuracy (classification) or MSE/MAE/R² in the target's units (regression)."""
        frame = self._frame(data)
        pre = self.preprocessor
        if pre.target not in frame.columns:
            raise DataError(
                f"evaluation data has no target column {pre.target!r}: add it or use predict"
            )
        X, y = pre.transform(frame)
        with torch.no_grad():
            out = self.model(torch.from_numpy(X))
        if pre.task == "classification":
            target = torch.from_numpy(y)
            loss = torch.nn.functional.cross_entropy(out, target).item()
            acc = (out.argmax(dim=1) == target).float().mean().item()
            return {"loss": loss, "accuracy": acc, "n": float(len(y))}
        pred = pre.decode_values(out.reshape(-1).numpy())
        y = pre.decode_values(y)
        err = pred - y
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan
        return {
            "mse": float((err**2).mean()),
            "mae": float(np.abs(err).mean()),
            "r2": r2,
            "n": float(len(y)),
        }


def _read_frame(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise DataError(f"{path} cannot be read as CSV: {' '.join(str(exc).split())}") from None
    if frame.empty:
        raise DataError(f"{path} has no data rows")
    return frame


def load(run_dir: str | Path) -> Predictor:
    """The predictor saved in a run directory (weights loaded with ``weights_only=True``)."""
    from epochpilot.models import build_model as _build

    run_dir = Path(run_dir)
    missing = [name for name in PREDICTOR_FILES if not (run_dir / name).exists()]
    if missing:
        raise DataError(
            f"{run_dir} is not a finished epochpilot run (missing {', '.join(missing)}): train it first"
        )
    pre = Preprocessor.from_json(run_dir / "preprocessor.json")
    info = json.loads((run_dir / "model.json").read_text())
    model = _build(
        info["factory"],
        info["n_features"],
        info["n_outputs"],
        info["kwargs"],
        info.get("search", ()),
    )
    try:
        state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise DataError(f"{run_dir / 'model.pt'} cannot be loaded safely: {exc}") from None
    model.load_state_dict(state)
    return Predictor(run_dir, pre, model)
