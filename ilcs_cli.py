"""The ``ilcs`` command: the one place that knows model_zoo, training, service and benchmarks.

Each subcommand is a row of ``COMMANDS`` (its help, its options, what it runs), and what it
runs imports its package only then: building the parser imports none of them, so ``ilcs serve``
needs no training code and ``ilcs train`` no web stack.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

RECIPE = "default: the recipe's, training/config.py"


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, the function adding its options, and the function it runs."""

    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]


def _load(target: str, command: str) -> Callable[[argparse.Namespace], None]:
    """Import ``package.module:function``; a package this installation lacks is a clear error."""
    module, _, function = target.partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as exc:
        if exc.name != module.split(".")[0]:
            raise
        msg = f"`ilcs {command}` needs the {exc.name} package, which this installation lacks; run it from a checkout"
        raise ValueError(msg) from exc


def _recipe_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the data and manifest options left unset with the recipe's (read only when a command runs)."""
    from training.config import TrainConfig

    recipe = TrainConfig()
    for name, default in (("data", recipe.data), ("manifest", recipe.manifest), ("split_manifest", recipe.manifest)):
        if getattr(args, name, "") is None:
            setattr(args, name, default)
    return args


def call(target: str, recipe_paths: bool = False) -> Callable[[argparse.Namespace], None]:
    """What a subcommand runs: ``target`` (``module:function``) called with the parsed options."""

    def run(args: argparse.Namespace) -> None:
        _load(target, args.command)(_recipe_paths(args) if recipe_paths else args)

    return run


def train_config(args: argparse.Namespace):
    """The ``TrainConfig`` of ``ilcs train``: the recipe, with the options given on the command line."""
    from training.config import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    if args.model_kwargs:
        cfg.model_kwargs = json.loads(args.model_kwargs)
    return cfg


def _split(args: argparse.Namespace) -> None:
    from training.config import DEFAULT_MANIFEST
    from training.data import load_image_folder
    from training.split import make_split, write_manifest

    _recipe_paths(args)
    out = args.out or str(DEFAULT_MANIFEST)
    manifest = make_split(load_image_folder(args.data), args.test_fraction, args.val_fraction, args.seed)
    write_manifest(manifest, out)
    print(f"wrote {out}: " + ", ".join(f"{k} {len(manifest[k])}" for k in ("train", "val", "test")))


def _train(args: argparse.Namespace) -> None:
    from training.train import train

    train(train_config(args))


def _serve(args: argparse.Namespace) -> None:
    from service.run import serve

    serve(host=args.host, port=args.port)


BENCHMARKS = (
    ("calibrate", "service.calibration:calibrate_cli"),
    ("load", "benchmarks.load:main"),
    ("models", "benchmarks.models:main"),
)


def _bench(args: argparse.Namespace) -> None:
    chosen = [target for flag, target in BENCHMARKS if getattr(args, flag)]
    if not chosen:
        msg = "say which benchmark: --calibrate, --load or --models"
        raise ValueError(msg)
    for target in chosen:
        _load(target, getattr(args, "command", "bench"))(args)


# --------------------------------------------------------------------------- options, one function per subcommand


def _split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help=RECIPE)
    p.add_argument("--out", help="the manifest to write (" + RECIPE + ")")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--val-fraction", type=float, default=0.1)


def _train_options(p: argparse.ArgumentParser) -> None:
    for name in ("--model", "--data", "--manifest", "--out", "--device", "--version"):
        p.add_argument(name, help=RECIPE)
    for name in ("--epochs", "--batch-size", "--input-size", "--seed", "--threads"):
        p.add_argument(name, type=int, help=RECIPE)
    for name in ("--lr", "--weight-decay", "--label-smoothing"):
        p.add_argument(name, type=float, help=RECIPE)
    p.add_argument("--box-loss-weight", type=float, help="weight of the heatmap's weak box supervision; 0: off")
    p.add_argument("--warmup-epochs", type=float, help=RECIPE)
    p.add_argument("--select", choices=["val_loss", "val_box_loss"], help="tie-break between epochs of equal "
                   "validation top-1 (" + RECIPE + ")")  # fmt: skip
    p.add_argument("--init-from", help="start from this checkpoint's weights (a fine-tuning stage)")
    p.add_argument("--resume", help="path to a run's last.pt")
    p.add_argument("--model-kwargs", help="JSON merged over the recipe's model options, e.g. '{\"attn_layer\": null}'")


def _eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="checkpoint stem/.json/.safetensors (default: shipped)")
    p.add_argument("--data", help=RECIPE)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split-manifest", help="use the manifest's --subset list (" + RECIPE + ")")
    g.add_argument("--all", action="store_true", help="use every image in --data")
    p.add_argument("--subset", default="test", choices=["train", "val", "test"])
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _localise_options(p: argparse.ArgumentParser) -> None:
    _eval_options(p)  # the same checkpoint, data and subset choices as eval
    p.add_argument("--method", default="model", help="model (the served map), energy, gradcam:<module>, "
                   "gradcam++:<module>, or all")  # fmt: skip
    p.add_argument("--raw", action="store_true", help="score the maps as the model gives them, not as the card "
                   "says to show them (heatmap_blur, heatmap_gamma)")  # fmt: skip
    p.add_argument("--fit-style", action="store_true", help="choose the served map's blur and gamma on --subset "
                   "(val; never test) and write them into the --checkpoint's card")  # fmt: skip


def _calibrate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="checkpoint stem/.json/.safetensors (its card is rewritten; required)")
    p.add_argument("--data", help=RECIPE)
    p.add_argument("--split-manifest", help=RECIPE)
    p.add_argument("--copies", type=int, default=8, help="training-augmented copies of each validation image")


def _profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="reports/table3.md")
    p.add_argument("--sizes", type=int, nargs="+", default=[300, 200])


def _heatmaps_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", help=RECIPE)
    p.add_argument("--split-manifest", help=RECIPE)
    p.add_argument("--out", default="reports/figures")


def _report_options(p: argparse.ArgumentParser) -> None:
    _heatmaps_options(p)
    p.add_argument("--runs", default="reports/runs/ablation", help="folder of the paired MIAM runs (log + card each)")
    p.set_defaults(out="reports/neu-ilcs.md")


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--out", default="exports/ilcs.onnx")


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="default: ILCS_HOST or 0.0.0.0")
    p.add_argument("--port", type=int, default=None, help="default: ILCS_PORT or 8000")


def _bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibrate", action="store_true", help="throughput per batch size on this device")
    p.add_argument("--load", action="store_true", help="closed-loop HTTP load test against a local service")
    p.add_argument("--models", action="store_true", help="speed of the seven models (reports/speed.md)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=800)
    p.add_argument("--out", default=None)


COMMANDS: dict[str, Command] = {
    "split": Command("write a stratified, duplicate-safe train/val/test manifest", _split_options, _split),
    "train": Command("train a registry model (defaults: the shipped ILCS recipe)", _train_options, _train),
    "eval": Command(
        "top-1/top-5 (paper Algorithm 2), per-class figures, confusion matrix",
        _eval_options,
        call("training.evaluate:evaluate_cli", recipe_paths=True),
    ),
    "calibrate": Command(
        "fit a checkpoint's temperature on its validation slice (written into its card)",
        _calibrate_options,
        call("training.calibration:calibrate_cli", recipe_paths=True),
    ),
    "localise": Command(
        "score heatmaps against VOC boxes (energy in boxes, pointing game)",
        _localise_options,
        call("training.localise:localise_cli", recipe_paths=True),
    ),
    "profile": Command(
        "parameters and FLOPs of the seven models (paper Table 3)", _profile_options, call("benchmarks.table3:main")
    ),
    "heatmaps": Command(
        "Figure 9 heatmap grid, confusion matrix, reliability diagram, localisation scores",
        _heatmaps_options,
        call("training.report:heatmaps_cli", recipe_paths=True),
    ),
    "report": Command(
        "write reports/neu-ilcs.md from the shipped checkpoint and the paired MIAM runs",
        _report_options,
        call("training.report:report_cli", recipe_paths=True),
    ),
    "export": Command(
        "export a checkpoint to ONNX (logits and attention outputs)",
        _export_options,
        call("training.export:export_cli"),
    ),
    "serve": Command("run the inspection service (settings from ILCS_* environment variables)", _serve_options, _serve),
    "bench": Command("benchmarks: --calibrate, --load, --models", _bench_options, _bench),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ilcs", description="ILCS steel-surface defect classifier: train, evaluate, serve")
    sub = p.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        s = sub.add_parser(name, help=command.help)
        command.options(s)
        s.set_defaults(func=command.run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"ilcs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
