"""``epochpilot schedule SPEC --steps N [--plot out.png]``: see a schedule before training with it."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  epochpilot schedule "warmup(cosine)" --steps 1000 --lr 3e-4 --plot lr.png
  epochpilot schedule onecycle --steps 500 --lr 0.1
  epochpilot schedule "warmup(linear)" --steps 2000 --warmup-steps 100
"""


#: Image formats matplotlib writes everywhere (checked before any work, so a typo costs nothing).
IMAGE_FORMATS = ("png", "svg", "svgz", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


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
    """Print the schedule's key points and optionally plot it; any ``--steps`` returns at once (the schedule is
    evaluated at the points shown and at about 2,000 points for the plot, never at every step)."""
    from epochpilot._files import atomic_open, check_output_path, path_error
    from epochpilot.core.schedules import parse, peak, sample
    from epochpilot.errors import ConfigError

    steps = args.steps
    if args.warmup_steps is not None:
        if args.warmup_steps >= steps:
            raise ConfigError(
                f"--warmup-steps must be < --steps ({steps}), got {args.warmup_steps}: shorten the warmup"
            )
        if args.warmup_steps and not args.spec.strip().lower().startswith("warmup("):
            raise ConfigError(
                f"--warmup-steps needs a warmup spec: write 'warmup({args.spec.strip()})'"
            )
    if args.plot is not None:
        suffix = args.plot.suffix.lower()
        if suffix and suffix[1:] not in IMAGE_FORMATS:
            raise ConfigError(
                f"--plot {args.plot}: {suffix!r} is not an image format: end the name in .png, .svg or .pdf"
            )
        try:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise path_error(exc, args.plot, "--plot") from None
        check_output_path(args.plot, "--plot")
    schedule = parse(args.spec, lr=args.lr, total_steps=steps, warmup_steps=args.warmup_steps)
    print(f"{args.spec}: {schedule!r}")
    top, top_lr = peak(schedule, steps)
    print(f"  peak lr {top_lr:.4g} at step {top}")
    for step in sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps - 1}):
        print(f"  step {step:>7}: lr {schedule(step):.4g}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs, lrs = sample(schedule, steps)
        fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
        ax.plot(xs, lrs, color="#2563eb", lw=1.8)
        ax.set(xlabel="optimizer step", ylabel="learning rate", title=args.spec)
        ax.grid(alpha=0.3)
        try:
            with atomic_open(args.plot, "wb", field="--plot") as fh:
                fig.savefig(fh, dpi=120, format=args.plot.suffix.lstrip(".").lower() or "png")
        finally:
            plt.close(fig)
        print(f"plot written to {args.plot}")
    return 0
