"""``epochpilot schedule SPEC --steps N [--plot out.png]``: see a schedule before training with it."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  epochpilot schedule "warmup(cosine)" --steps 1000 --lr 3e-4 --plot lr.png
  epochpilot schedule onecycle --steps 500 --lr 0.1
  epochpilot schedule "warmup(linear)" --steps 2000 --warmup-steps 100
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = subparsers.add_parser(
        "schedule",
        help="print and plot a learning-rate schedule",
        description="Simulate a learning-rate schedule per optimizer update; print key points, plot it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "spec",
        help="NAME or warmup(NAME); NAME in constant, cosine, exponential, linear, onecycle, step",
    )
    p.add_argument("--steps", type=int, required=True, help="total optimizer updates")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument(
        "--warmup-steps", type=int, default=None, help="warmup length (default 5%% of steps)"
    )
    p.add_argument("--plot", type=Path, default=None, help="write a PNG of the schedule here")


def run(args: argparse.Namespace) -> int:
    """Print the schedule's key points and optionally plot it."""
    from epochpilot.schedules import parse, simulate

    schedule = parse(args.spec, lr=args.lr, total_steps=args.steps, warmup_steps=args.warmup_steps)
    lrs = simulate(schedule, args.steps)
    print(f"{args.spec}: {schedule!r}")
    marks = sorted({0, args.steps // 4, args.steps // 2, 3 * args.steps // 4, args.steps - 1})
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    print(f"  peak lr {lrs[peak]:.4g} at step {peak}")
    for step in marks:
        print(f"  step {step:>7}: lr {lrs[step]:.4g}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
        ax.plot(range(len(lrs)), lrs, color="#2563eb", lw=1.8)
        ax.set(xlabel="optimizer step", ylabel="learning rate", title=args.spec)
        ax.grid(alpha=0.3)
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"plot written to {args.plot}")
    return 0
