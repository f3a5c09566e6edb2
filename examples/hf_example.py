"""A Hugging Face ``Trainer`` whose early stopping and best-model loading are swapped for epochpilot's callback.

Before, early stopping needs the Trainer to save and reload checkpoints::

    args = TrainingArguments(..., eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                             metric_for_best_model="eval_loss", greater_is_better=False)
    trainer = Trainer(..., callbacks=[EarlyStoppingCallback(early_stopping_patience=10)])
    trainer.train()
    trainer.save_model("best-model")

After, one callback (``EpochPilot()`` with no policy is epochpilot.fit's default: patience 10 on val_loss, which
is the Trainer's eval_loss): it prints one line when it stops, keeps the best evaluation's weights in memory
and puts them back at the end (no checkpoint round trip: ``save_strategy="no"`` is fine), and writes a run
directory with ``history.csv``, ``summary.json``, ``report.html`` and the kept model as a ``save_pretrained``
folder (``model/``) that ``from_pretrained`` reads. The learning rate follows an epochpilot schedule through
``to_hf_scheduler``.

A 2-layer BERT built from a config, on synthetic token sequences: nothing is downloaded.

    python examples/hf_example.py          # 15 epochs at most: about a minute on a CPU
    python examples/hf_example.py --tiny   # 64 sequences, 2 epochs (the tests run this)
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tempfile

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from epochpilot.integrations.transformers import EpochPilot, to_hf_scheduler
from epochpilot.schedules import linear_with_warmup

TINY = "--tiny" in sys.argv or os.environ.get("EPOCHPILOT_EXAMPLE_TINY") == "1"
N, EPOCHS = (64, 2) if TINY else (256, 15)
RUN_DIR = "runs/hf-example"


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the label says whether token 7 occurs in them (20% flipped: noise to overfit)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(10, 100, (n, 16), generator=g)
        rows = torch.nonzero(torch.rand(n, generator=g) < 0.5).flatten()
        self.ids[rows, torch.randint(0, 16, (len(rows),), generator=g)] = 7
        flip = torch.rand(n, generator=g) < 0.2
        self.labels = ((self.ids == 7).any(1) ^ flip).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    train, val = Tokens(N, seed=1), Tokens(N // 4, seed=2)
    batch_size = 32
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    total_steps = EPOCHS * -(-len(train) // batch_size)  # optimizer updates in the whole budget
    schedule = linear_with_warmup(3e-3, warmup_steps=total_steps // 10, total_steps=total_steps)
    pilot = EpochPilot(run_dir=RUN_DIR)  # stops, keeps the best evaluation, writes RUN_DIR/model/
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="hf-example-"),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=batch_size,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",  # no checkpoints needed to keep the best model
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=val,
        optimizers=(optimizer, to_hf_scheduler(schedule, optimizer)),
        callbacks=[pilot],
    )
    trainer.remove_callback(PrinterCallback)  # quiet: the run directory keeps the history
    trainer.train()

    kept = BertForSequenceClassification.from_pretrained(f"{RUN_DIR}/model")  # the kept model
    kept.eval()
    with torch.no_grad():
        accuracy = (kept(input_ids=val.ids).logits.argmax(1) == val.labels).float().mean().item()
    print(f"validation accuracy of the kept model (epoch {pilot.best_epoch_}): {accuracy:.3f}")
    print(f"report: {RUN_DIR}/report.html")
