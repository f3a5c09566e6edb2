"""epochpilot inside Hugging Face's Trainer: stop with a policy, warm up + linear decay through
``to_hf_scheduler``, restore the best weights, keep the policy in checkpoints, write a run directory
``epochpilot report`` reads. A 2-layer BERT built from a config on synthetic tokens: nothing is downloaded.

    python examples/hf_example.py
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tempfile

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from epochpilot.integrations.transformers import EpochPilot, to_hf_scheduler
from epochpilot.schedules import linear_with_warmup
from epochpilot.stopping import EarlyStopping

torch.set_num_threads(1)
torch.manual_seed(0)


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
train, val = Tokens(256, seed=1), Tokens(64, seed=2)
epochs, batch_size = 15, 32
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
scheduler = to_hf_scheduler(
    linear_with_warmup(3e-3, warmup_steps=8, total_steps=epochs * len(train) // batch_size),
    optimizer,
)
pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=2), run_dir="runs/hf-example")
args = TrainingArguments(
    output_dir=tempfile.mkdtemp(prefix="hf-example-"),
    num_train_epochs=epochs,
    per_device_train_batch_size=batch_size,
    eval_strategy="epoch",
    logging_strategy="epoch",
    save_strategy="no",
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
    optimizers=(optimizer, scheduler),
    callbacks=[pilot],
)
trainer.remove_callback(PrinterCallback)  # quiet: the run directory keeps the history
trainer.train()
print(pilot.summary_["stop_message"])
print(f"best epoch {pilot.best_epoch_}: val_loss {pilot.best_value_:.4f} (weights restored)")
print("report: runs/hf-example/report.html")
