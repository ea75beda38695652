"""Command line: ``python -m labkit train MODEL [--epochs N] [--seed S] [--out DIR]``, ``report``, ``doctor``,
``notebooks`` (what ``make run`` runs), ``submit`` and ``grade``.

``train`` trains one model headless and writes ``DIR/metrics.json`` with its figures beside it
(default DIR: ``runs/MODEL``); ``LABKIT_SMOKE=1`` reduces epochs and data. A checkpoint is saved in
DIR after every epoch: running the same command again resumes an interrupted run; ``--tensorboard``
also writes TensorBoard event files into ``DIR/tensorboard`` (``labkit.engine.tensorboard``).
``report`` builds REPORT.md from the runs. ``doctor`` checks the environment and trains every model
briefly on this device.

On several GPUs (Kaggle's two T4s): ``torchrun --nproc_per_node 2 -m labkit train MODEL ...`` trains
with DistributedDataParallel, each process on its share of the data (``labkit.engine.distributed``);
``--batch-size`` is then per process, and rank 0 alone prints and writes the run.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import experiments
from .engine import distributed, runs, tensorboard
from .engine.environment import DeviceUnavailable, pick_device


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one model and write metrics.json and figures")
    train.add_argument("model", choices=sorted(experiments.RECIPES), help="which model to train")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the notebook's; 2 in smoke mode)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--out", help="output folder (default runs/MODEL)")
    train.add_argument(
        "--batch-size",
        type=int,
        dest="batch_size",
        help="batch size (under torchrun per process: N processes train on N times this)",
    )
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    for option in experiments.options():  # each family's own, as its recipes declare them
        if option.kind is bool:
            train.add_argument(option.flag, action="store_true", default=None, dest=option.name, help=option.help)
        else:
            train.add_argument(
                option.flag, type=option.kind, choices=option.choices, dest=option.name, help=option.help
            )
    train.add_argument("--dataset", help="mnist, fashion-mnist, kmnist, cifar10, abstract-art or an image folder")
    train.add_argument("--image-size", type=int, dest="image_size", help="pixels a side, resized (default: the data's)")
    train.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="auto (default): mixed precision on a CUDA GPU, float32 elsewhere",
    )
    train.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="compile the networks with torch.compile (slower first epoch; may pay off on a GPU)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write every epoch's numbers and a picture to DIR/tensorboard for TensorBoard (needs tensorboard)",
    )
    doctor = commands.add_parser("doctor", help="check the environment and train every model briefly on this device")
    doctor.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    submit = commands.add_parser("submit", help="pack REPORT.md, figures, metrics and weights into one archive")
    submit.add_argument("--runs", help="folder of runs (default runs/ or $LABKIT_RUNS); REPORT.md lies beside it")
    submit.add_argument("--out", help="archive to write (default: submission.zip beside the runs folder)")
    submit.add_argument("--allow-smoke", action="store_true", help="accept smoke-mode runs (a practice submission)")
    grade = commands.add_parser("grade", help="grade a folder of submissions: gradebook.csv and class_report.md")
    grade.add_argument("submissions", help="folder with one archive (or unpacked folder) per student")
    grade.add_argument("--out", required=True, help="folder for gradebook.csv, class_report.md and the unpacked files")
    grade.add_argument("--course", help="JSON file of the settings the course fixed: {run: {setting: value}}")
    grade.add_argument("--reference", help="the instructor's runs folder or submission, marked on the figures")
    grade.add_argument(
        "--similarity",
        type=float,
        default=None,
        help="flag two Discussions at least this similar (TF-IDF cosine, default 0.8)",
    )
    grade.add_argument("--device", default="cpu", help="device for re-evaluating the weights (default cpu)")
    notebooks = commands.add_parser(
        "notebooks", help="execute the notebooks headless in order (make run), saying what runs and how long"
    )
    notebooks.add_argument("--notebooks", default="notebooks", help="folder of the notebooks (default notebooks/)")
    notebooks.add_argument("--out", default="runs/notebooks", help="folder for the executed notebooks")
    report = commands.add_parser("report", help="build REPORT.md from the runs")
    report.add_argument("--runs", help="folder of runs (default runs/ or $LABKIT_RUNS)")
    report.add_argument(
        "--out", help="report file (default: REPORT.md beside the runs folder, the top of the checkout for runs/)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        common = ("epochs", "seed", "batch_size", "lr", "dataset", "image_size", "precision", "compile")
        overrides = {k: getattr(args, k) for k in (*common, *(option.name for option in experiments.options()))}
        allowed = set(experiments.RECIPES[args.model].settings.__dataclass_fields__)
        unused = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None and k not in allowed]
        if unused:
            print(f"error: {', '.join(unused)} does not apply to {args.model}", file=sys.stderr)
            return 2
        if args.epochs == 0:
            print(
                "error: --epochs 0 trains nothing, and the run would record an untrained model: give --epochs 1 "
                "or more (a run that was cut off resumes from the checkpoint in its folder)",
                file=sys.stderr,
            )
            return 2
        try:
            cfg = experiments.settings_for(args.model, **{k: v for k, v in overrides.items() if k in allowed})
            pick_device(args.device, verbose=False)  # a device that is not here: refused before anything is written
            recipe = experiments.RECIPES[args.model]
            with distributed.quiet_unless_main(), tensorboard.log_every_run(args.tensorboard):
                trained = recipe.run(cfg, out=args.out, device=args.device, progress=not args.no_progress)
        except (
            ValueError,
            FileNotFoundError,
            PermissionError,
            FloatingPointError,
            OSError,
            tensorboard.TensorBoardMissing,
        ) as e:
            runs.remove_unused_runs()  # a run that failed before writing anything leaves no empty folder
            print(f"error: {e}", file=sys.stderr)
            return 2
        if distributed.is_main():
            print(json.dumps({"model": args.model, "final": trained.final}))
    elif args.command == "doctor":
        from .doctor import main as doctor

        try:
            pick_device(args.device, verbose=False)
        except DeviceUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return doctor(args.device)
    elif args.command == "submit":
        from .submit import build_submission

        try:
            path, warnings = build_submission(args.runs, args.out, allow_smoke=args.allow_smoke)
        except (ValueError, OSError) as e:  # OSError: a full disk, a folder that cannot be written
            print(f"error: {e}", file=sys.stderr)
            return 2
        for warning in warnings:
            print(f"warning: {warning}")
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB): upload this file")
    elif args.command == "grade":
        from .grade.grading import SIMILARITY, grade

        try:
            course = None
            if args.course:
                with open(args.course, encoding="utf-8") as f:
                    try:
                        course = json.load(f)
                    except ValueError as e:
                        raise ValueError(f"--course {args.course} is not a JSON file ({e})") from None
            book, class_report = grade(
                args.submissions,
                args.out,
                course,
                args.reference,
                args.similarity if args.similarity is not None else SIMILARITY,
                args.device,
            )
        except (ValueError, FileNotFoundError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {book} and {class_report}")
    elif args.command == "notebooks":
        from .run_notebooks import run_notebooks

        try:
            return run_notebooks(args.notebooks, args.out)
        except (RuntimeError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.command == "report":
        from .report.build import build_report

        try:
            path = build_report(args.runs, args.out)
        except (ValueError, OSError) as e:  # OSError: a full disk, a folder that cannot be written
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
