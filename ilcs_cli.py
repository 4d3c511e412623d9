"""The ``ilcs`` command: the one place that knows model_zoo, training and service.

Each subcommand imports its package only when it runs, so ``ilcs serve`` in a
serving container never loads the training loop (the parser reads the recipe's
defaults from ``training/config.py``, standard library only) and ``ilcs train``
never loads the web stack.
"""

from __future__ import annotations

import argparse
import json
import sys


def _split(args: argparse.Namespace) -> None:
    from training.data import load_image_folder
    from training.split import make_split, write_manifest

    data = load_image_folder(args.data)
    manifest = make_split(data, args.test_fraction, args.val_fraction, args.seed)
    write_manifest(manifest, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {len(manifest[k])}" for k in ("train", "val", "test")))


def _train(args: argparse.Namespace) -> None:
    from training.train import TrainConfig, train

    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    if args.model_kwargs:
        cfg.model_kwargs = json.loads(args.model_kwargs)
    train(cfg)


def _eval(args: argparse.Namespace) -> None:
    from training.evaluate import evaluate_cli

    evaluate_cli(args)


def _profile(args: argparse.Namespace) -> None:
    from model_zoo.profile import write_table3

    print(write_table3(args.out, sizes=tuple(args.sizes)))


def _heatmaps(args: argparse.Namespace) -> None:
    from training.report import heatmaps_cli

    heatmaps_cli(args)


def _report(args: argparse.Namespace) -> None:
    from training.report import report_cli

    report_cli(args)


def _serve(args: argparse.Namespace) -> None:
    from service.run import serve

    serve(host=args.host, port=args.port)


def _bench(args: argparse.Namespace) -> None:
    """Run the benchmarks the flags ask for, in the order calibrate, load, models (each imported when asked)."""
    if not (args.calibrate or args.load or args.models):
        msg = "say which benchmark: --calibrate, --load or --models"
        raise ValueError(msg)
    if args.calibrate:
        from service.calibration import calibrate_cli

        calibrate_cli(args)
    if args.load:
        from benchmarks.load import main as load_main

        load_main(args)
    if args.models:
        from benchmarks.models import main as models_main

        models_main(args)


def _export(args: argparse.Namespace) -> None:
    from training.export import export_cli

    export_cli(args)


def build_parser() -> argparse.ArgumentParser:
    from training.config import TrainConfig  # the recipe's defaults; stdlib only

    d = TrainConfig()
    p = argparse.ArgumentParser(prog="ilcs", description="ILCS steel-surface defect classifier: train, evaluate, serve")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("split", help="write a stratified, duplicate-safe train/val/test manifest")
    s.add_argument("--data", default=d.data)
    s.add_argument("--out", default=d.manifest)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--test-fraction", type=float, default=0.3)
    s.add_argument("--val-fraction", type=float, default=0.1)
    s.set_defaults(func=_split)

    t = sub.add_parser("train", help="train a registry model (defaults: the shipped ILCS recipe)")
    t.add_argument("--model", default=d.model)
    t.add_argument("--data", default=d.data)
    t.add_argument("--manifest", default=d.manifest)
    t.add_argument("--out", default=d.out)
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    t.add_argument("--input-size", type=int, default=d.input_size)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--device", default=d.device)
    t.add_argument("--threads", type=int)
    t.add_argument("--resume", help="path to a run's last.pt")
    t.add_argument("--model-kwargs", help='JSON of extra hyperparameters, e.g. \'{"head": "paper"}\'')
    t.add_argument("--version", default=d.version)
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="top-1/top-5 (paper Algorithm 2), per-class figures, confusion matrix")
    e.add_argument("--checkpoint", default=None, help="checkpoint stem/.json/.safetensors (default: shipped)")
    e.add_argument("--data", default=d.data)
    g = e.add_mutually_exclusive_group()
    g.add_argument("--split-manifest", default=d.manifest, help="evaluate the manifest's test list")
    g.add_argument("--all", action="store_true", help="evaluate every image in --data")
    e.add_argument("--subset", default="test", choices=["train", "val", "test"])
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=_eval)

    pr = sub.add_parser("profile", help="parameters and FLOPs of the seven models (paper Table 3)")
    pr.add_argument("--out", default="reports/table3.md")
    pr.add_argument("--sizes", type=int, nargs="+", default=[300, 200])
    pr.set_defaults(func=_profile)

    h = sub.add_parser("heatmaps", help="Figure 9 heatmap grid, curves, confusion matrix, localisation scores")
    h.add_argument("--checkpoint", default=None)
    h.add_argument("--data", default=d.data)
    h.add_argument("--split-manifest", default=d.manifest)
    h.add_argument("--log", default=None, help="training log.json for the curves")
    h.add_argument("--out", default="reports/figures")
    h.set_defaults(func=_heatmaps)

    r = sub.add_parser("report", help="write reports/neu-ilcs.md from a run and the shipped checkpoint")
    r.add_argument("--checkpoint", default=None)
    r.add_argument("--data", default=d.data)
    r.add_argument("--split-manifest", default=d.manifest)
    r.add_argument("--log", default="reports/runs/ilcs/log.json")
    r.add_argument("--out", default="reports/neu-ilcs.md")
    r.set_defaults(func=_report)

    x = sub.add_parser("export", help="export a checkpoint to ONNX (logits and attention outputs)")
    x.add_argument("--checkpoint", default=None)
    x.add_argument("--out", default="exports/ilcs.onnx")
    x.set_defaults(func=_export)

    sv = sub.add_parser("serve", help="run the inspection service (settings from ILCS_* environment variables)")
    sv.add_argument("--host", default=None, help="default: ILCS_HOST or 0.0.0.0")
    sv.add_argument("--port", type=int, default=None, help="default: ILCS_PORT or 8000")
    sv.set_defaults(func=_serve)

    b = sub.add_parser("bench", help="benchmarks: --calibrate, --load, --models")
    b.add_argument("--calibrate", action="store_true", help="throughput per batch size on this device")
    b.add_argument("--load", action="store_true", help="closed-loop HTTP load test against a local service")
    b.add_argument("--models", action="store_true", help="throughput of the seven models")
    b.add_argument("--clients", type=int, default=16)
    b.add_argument("--requests", type=int, default=800)
    b.add_argument("--out", default=None)
    b.set_defaults(func=_bench)
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
