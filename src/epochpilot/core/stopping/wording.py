"""Plain words for stop decisions: one sentence per stop ("Stopped at epoch 21: ... Kept epoch 15 (val_loss
0.145).") built from a policy's reason clause, with the numbers kept apart on a details line.

Pure: standard library only. Every policy and the training loop word their stops through these helpers, so a
stop reads the same in the console, ``summary.json``, the adapters and the report.
"""

from __future__ import annotations

import math

__all__ = [
    "chance",
    "epochs",
    "kept_sentence",
    "metric_words",
    "not_finite",
    "percent",
    "stop_sentence",
    "value",
]

_PREFIXES = (
    ("validation_", "validation "),
    ("valid_", "validation "),
    ("val_", "validation "),
    ("eval_", "validation "),
    ("training_", "training "),
    ("train_", "training "),
    ("test_", "test "),
)
_WORDS = {
    "acc": "accuracy",
    "auc": "ROC AUC",
    "roc_auc": "ROC AUC",
    "mse": "MSE",
    "mae": "MAE",
    "rmse": "RMSE",
    "r2": "R²",
    "f1": "F1",
    "wer": "WER",
    "cer": "CER",
    "bleu": "BLEU",
    "ppl": "perplexity",
}


def metric_words(monitor: str) -> str:
    """A metric's name in words: ``val_loss`` -> "validation loss", ``train_acc`` -> "training accuracy".

    >>> metric_words("val_loss"), metric_words("eval_f1"), metric_words("retention")
    ('validation loss', 'validation F1', 'retention')
    """
    name = str(monitor)
    head = ""
    for prefix, words in _PREFIXES:
        if name.lower().startswith(prefix) and len(name) > len(prefix):
            head, name = words, name[len(prefix) :]
            break
    rest = _WORDS.get(name.lower(), name.replace("_", " "))
    return f"{head}{rest}"


def value(x: float | None) -> str:
    """A metric value for a sentence: 4 significant digits, "none" for None."""
    if x is None:
        return "none"
    return f"{x:.4g}"


def epochs(n: int, unit: str = "epoch") -> str:
    """``"1 epoch"`` / ``"6 epochs"`` (or another unit)."""
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def percent(fraction: float) -> str:
    """A fraction as a short percentage: 0.015 -> "1.5%", 0.0004 -> "0.04%"."""
    pct = 100.0 * fraction
    if pct == 0 or not math.isfinite(pct):
        return f"{pct:g}%"
    return f"{pct:.2g}%" if abs(pct) < 10 else f"{pct:.0f}%"


def chance(p: float) -> str:
    """A probability in words: "a 3% chance", "an under 1% chance", "an over 99% chance"."""
    if p < 0.01:
        return "an under 1% chance"
    if p > 0.99:
        return "an over 99% chance"
    pct = round(100 * p)
    article = "an" if pct in (8, 11, 18) or 80 <= pct <= 89 else "a"
    return f"{article} {pct}% chance"


def kept_sentence(best_epoch: int | None, monitor: str, best_value: float | None) -> str:
    """``"Kept epoch 15 (val_loss 0.145)."``, or a sentence saying no epoch could be kept."""
    if best_epoch is None:
        return f"No epoch is kept (no best {monitor} yet)."
    return f"Kept epoch {best_epoch} ({monitor} {value(best_value)})."


def stop_sentence(
    epoch: int | str, why: str, best_epoch: int | None, monitor: str, best_value: float | None
) -> str:
    """The one plain sentence of a stop: ``"Stopped at epoch {epoch}: {why}. Kept epoch ... (...)."``.

    ``epoch`` may be a ready phrase ("epoch 3, validation 7") for loops that count validations.

    >>> stop_sentence(21, "validation loss has not improved for 6 epochs", 15, "val_loss", 0.145)
    'Stopped at epoch 21: validation loss has not improved for 6 epochs. Kept epoch 15 (val_loss 0.145).'
    """
    where = epoch if isinstance(epoch, str) else f"epoch {epoch}"
    why = why.strip().rstrip(".")
    return f"Stopped at {where}: {why}. {kept_sentence(best_epoch, monitor, best_value)}"


def not_finite(words: str, raw: float) -> str:
    """The clause for a NaN/inf value: "validation loss is NaN (not a number): training has diverged"."""
    what = "NaN (not a number)" if math.isnan(raw) else "infinite" if raw > 0 else "minus infinity"
    return f"{words} is {what}: training has diverged"
