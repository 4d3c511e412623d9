"""``ilcs heatmaps`` and ``ilcs report``: reports/neu-ilcs.md and its figures, regenerated from the
shipped checkpoint, the paired MIAM runs and the data, never written by hand."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from string import Template

import numpy as np
import torch

from model_zoo.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from model_zoo.preprocess import Preprocess
from training.calibration import expected_calibration_error, reliability_bins
from training.data import load_image_folder
from training.engine import predict
from training.figures import plot_confusion, plot_heatmap_grid, plot_reliability, plot_runs
from training.localisation import read_boxes
from training.localise import localise, method_names
from training.metrics import classification_report
from training.runs import full_runs
from training.split import load_manifest, manifest_sha256

__all__ = ["heatmap_name", "make_figures", "report_cli", "heatmaps_cli"]

TEMPLATE = Path(__file__).parent / "templates" / "neu-ilcs.md"
TARGET_TOP1, TARGET_ENERGY, TARGET_POINTING, TARGET_RATIO = 0.995, 0.60, 0.90, 1.5
HARD_CLASSES = ("inclusion", "patches", "scratches")  # the classes paper Fig. 9 says attention pinpoints


def heatmap_name(card) -> str:
    """A truthful name for what the served heatmap is."""
    box = card.training.get("config", {}).get("box_loss_weight", 0)
    if card.heatmap_method == "miam_spatial":
        return "MIAM's spatial attention map Ms(F')" + (", trained with weak box supervision" if box else "")
    return "the activation energy of the last feature map (a class-agnostic saliency map, not attention)"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _mean_sd(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"{100 * statistics.mean(xs):.2f} +- {100 * sd:.2f}"


def _softmax(logits: np.ndarray, t: float) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits) / t, 1).numpy()


def make_figures(checkpoint, data, manifest, out_dir) -> dict:
    """Evaluate on val and test, score heatmaps, draw the figures; everything the report needs."""
    out_dir = Path(out_dir)
    model, card = load_checkpoint(checkpoint)
    pre = Preprocess.from_card(card)
    images = load_image_folder(data, classes=card.labels)
    split = load_manifest(manifest)
    val, test = images.subset(split["val"]), images.subset(split["test"])
    val_logits, _ = predict(model, val.images, pre, torch.device("cpu"), logits_only=True)
    test_logits, maps = predict(model, test.images, pre, torch.device("cpu"), logits_only=True, with_attention=True)
    t = card.temperature
    scores = _softmax(test_logits, t)
    report = classification_report(scores, test.labels, card.labels)
    calib = {
        f"{name}_ece_{when}": expected_calibration_error(_softmax(lg, tt), ds.labels)
        for name, lg, ds in (("val", val_logits, val), ("test", test_logits, test))
        for when, tt in (("before", 1.0), ("after", t))
    }
    fig = {
        "reliability": plot_reliability(
            reliability_bins(_softmax(test_logits, 1.0), test.labels),
            reliability_bins(scores, test.labels),
            out_dir / "reliability.png",
            labels=("T = 1", f"T = {t:.2f}"),
        ),
        "confusion": plot_confusion(report["confusion"], report["classes"], out_dir / "confusion.png"),
    }
    examples = []
    for c, cls in enumerate(card.labels):
        i = next(i for i, lab in enumerate(test.labels) if lab == c)  # the first test image of the class
        xml = Path(data) / "annotations" / (Path(test.names[i]).stem + ".xml")
        examples.append(
            {
                "label": cls,
                "name": test.names[i],
                "image": test.images[i],
                "attention": maps[i],
                "pred": card.labels[int(scores[i].argmax())],
                "boxes": read_boxes(xml, cls) if xml.is_file() else [],
            }
        )
    fig["heatmaps"] = plot_heatmap_grid(
        examples,
        out_dir / "heatmaps.png",
        title=f"{card.heatmap_method}, blur {card.heatmap_blur:g}, gamma {card.heatmap_gamma:g}",
        style=card.heatmap_style,
    )
    methods = [
        localise(model, val, pre, m, progress=False, baselines=i == 0) for i, m in enumerate(method_names(model))
    ]
    start = card.training.get("config", {}).get("init_from")
    before = None
    if start and Path(start).with_suffix(".json").is_file():  # the stage this checkpoint was fine-tuned from
        first, first_card = load_checkpoint(start)
        before = localise(first, val, pre, "model", progress=False, baselines=False)
        before["val_top1"] = first_card.metrics.get("val_top1")
    style = card.heatmap_style
    served = localise(model, test, pre, "model", progress=False, style=style)
    served_raw = localise(model, test, pre, "model", progress=False)
    return {
        "card": card,
        "report": report,
        "calibration": calib,
        "figures": fig,
        "val_methods": methods,
        "test_localisation": served,
        "test_localisation_raw": served_raw,
        "before_finetune": before,
        "test_scores": scores,
        "test_labels": test.labels,
    }


def heatmaps_cli(args) -> None:
    res = make_figures(args.checkpoint or SHIPPED_CHECKPOINT, args.data, args.split_manifest, args.out)
    for name, path in res["figures"].items():
        print(f"{name}: {path}")
    print(json.dumps({"localisation": res["test_localisation"]}, indent=1))


def _ablation(runs: list[dict]) -> tuple[str, str, bool | None]:
    arms = {"miam": {}, "nomiam": {}}
    for r in runs:
        arm, _, seed = r["name"].rpartition("_s")
        if arm in arms:
            arms[arm][int(seed)] = r
    rows = [
        "| arm | seed | best epoch | val top-1 | val loss | test top-1 | wall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, by_seed in arms.items():
        for seed, r in sorted(by_seed.items()):
            m = r["metrics"]
            rows.append(
                f"| {'MIAM' if arm == 'miam' else 'no MIAM'} | {seed} | {m['best_epoch']} | "
                f"{_pct(m['val_top1'])} | {m['val_loss']:.4f} | {_pct(m.get('test_top1', float('nan')))} | "
                f"{(r['wall_seconds'] or 0) / 60:.0f} min |"
            )
    for arm, by_seed in arms.items():
        if by_seed:
            ms = [r["metrics"] for r in by_seed.values()]
            rows.append(
                f"| **{'MIAM' if arm == 'miam' else 'no MIAM'}, mean +- sd** | n = {len(ms)} | | "
                f"{_mean_sd([m['val_top1'] for m in ms])} | "
                f"{statistics.mean(m['val_loss'] for m in ms):.4f} | "
                f"{_mean_sd([m.get('test_top1', float('nan')) for m in ms])} | |"
            )
    paired = sorted(set(arms["miam"]) & set(arms["nomiam"]))
    if not paired:
        return "\n".join(rows), "No seed has both arms yet.", None
    dv = [arms["miam"][s]["metrics"]["val_top1"] - arms["nomiam"][s]["metrics"]["val_top1"] for s in paired]
    dt = [
        arms["miam"][s]["metrics"].get("test_top1", 0) - arms["nomiam"][s]["metrics"].get("test_top1", 0)
        for s in paired
    ]
    spread = statistics.stdev(dv) if len(dv) > 1 else 0.0
    ok = statistics.mean(dv) + spread >= 0
    summary = (
        f"Paired difference MIAM minus no MIAM over seeds {paired}: validation top-1 "
        f"{_mean_sd(dv)} points, test top-1 {_mean_sd(dt)} points (one validation image is "
        f"{100 / 108:.2f} points, one test image 0.22). Decision rule, validation only: ship MIAM if its "
        f"mean paired validation difference plus one sd is >= 0: **{'MIAM shipped' if ok else 'MIAM not shipped'}**."
    )
    return "\n".join(rows), summary, ok


def _loc_table(loc: dict) -> str:
    rows = [
        "| class | n | energy in boxes | chance | ratio | pointing game |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c, m in loc["per_class"].items():
        rows.append(
            f"| {c} | {m['n']} | {_pct(m['energy_in_boxes'])} | {_pct(m['chance'])} | "
            f"{m['energy_in_boxes'] / max(m['chance'], 1e-9):.2f}x | {_pct(m['pointing_game'])} |"
        )
    rows.append(
        f"| **all** | {loc['n']} | **{_pct(loc['energy_in_boxes'])}** | {_pct(loc['chance'])} | "
        f"{loc['energy_in_boxes'] / max(loc['chance'], 1e-9):.2f}x | **{_pct(loc['pointing_game'])}** |"
    )
    for name, b in loc["baselines"].items():
        rows.append(
            f"| baseline: {name.replace('_', ' ')} | {b['n']} | {_pct(b['energy_in_boxes'])} | | | "
            f"{_pct(b['pointing_game'])} |"
        )
    return "\n".join(rows)


def _style_section(card, raw: dict) -> str:
    """The validation grid that chose the served map's blur and gamma, and the test scores without them."""
    fit = card.metrics.get("heatmap_style")
    shown = f"blur {card.heatmap_blur:g} map cells, gamma {card.heatmap_gamma:g}"
    rows = [
        f"The map is shown smoothed and sharpened ({shown}). Without them, as the model gives it, it scores "
        f"{_pct(raw['energy_in_boxes'])} energy in boxes and {_pct(raw['pointing_game'])} pointing game on the "
        f"test split (centred Gaussian {_pct(raw['baselines']['centred_gaussian']['energy_in_boxes'])} / "
        f"{_pct(raw['baselines']['centred_gaussian']['pointing_game'])}).",
    ]
    if not fit:
        return "\n".join(rows)
    rows += [
        "",
        f"Both were chosen on the {fit['n']} images of the `{fit['subset']}` slice (`ilcs localise --fit-style`, "
        "rule in `training/heatmap_style.py`): the blur with the best pointing game, then the gamma whose bright "
        "region (at least half the peak) is closest in size to the boxes, so the map is not sharpened into a dot:",
        "",
        "| blur | gamma | energy in boxes | pointing game | bright area | box area |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in fit["grid"]:
        mark = "**" if (r["blur"], r["gamma"]) == (fit["blur"], fit["gamma"]) else ""
        rows.append(
            f"| {mark}{r['blur']:g}{mark} | {mark}{r['gamma']:g}{mark} | {_pct(r['energy_in_boxes'])} | "
            f"{_pct(r['pointing_game'])} | {_pct(r['bright_area_share'])} | {_pct(r['box_area_share'])} |"
        )
    return "\n".join(rows)


def _targets(top1: float, loc: dict) -> str:
    def line(ok: bool, text: str) -> str:
        return f"- {'met' if ok else '**MISSED**'}: {text}"

    out = [
        line(top1 >= TARGET_TOP1, f"test top-1 >= 99.5% ({_pct(top1)})"),
        line(loc["energy_in_boxes"] >= TARGET_ENERGY, f"energy in boxes >= 60% ({_pct(loc['energy_in_boxes'])})"),
        line(loc["pointing_game"] >= TARGET_POINTING, f"pointing game >= 90% ({_pct(loc['pointing_game'])})"),
    ]
    for c in HARD_CLASSES:
        m = loc["per_class"].get(c)
        if m:
            r = m["energy_in_boxes"] / max(m["chance"], 1e-9)
            out.append(
                line(
                    r >= TARGET_RATIO,
                    f"{c}: energy >= 1.5x chance ({r:.2f}x: {_pct(m['energy_in_boxes'])} against {_pct(m['chance'])})",
                )
            )
    return "\n".join(out)


def write_report(res: dict, runs: list[dict], out: Path, command: str, manifest) -> str:
    card, report, loc, cal = res["card"], res["report"], res["test_localisation"], res["calibration"]
    cfg, fit = card.training.get("config", {}), card.metrics.get("calibration", {})
    rel = lambda p: Path(p).resolve().relative_to(out.parent.resolve()).as_posix()  # noqa: E731
    table, summary, _ = _ablation(runs)
    fig_runs = plot_runs(runs, out.parent / "figures" / "ablation-curves.png") if runs else None
    methods = ["| method | energy in boxes | pointing game |", "| --- | ---: | ---: |"]
    for m in res["val_methods"]:
        methods.append(f"| `{m['method']}` | {_pct(m['energy_in_boxes'])} | {_pct(m['pointing_game'])} |")
    for name, b in res["val_methods"][0]["baselines"].items():
        methods.append(
            f"| baseline: {name.replace('_', ' ')} | {_pct(b['energy_in_boxes'])} | {_pct(b['pointing_game'])} |"
        )
    per_class = ["| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for c in report["classes"]:
        m = report["per_class"][c]
        per_class.append(f"| {c} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
    recipe = [
        "| setting | value |",
        "| --- | --- |",
        *[
            f"| {k} | `{Path(v).name if k == 'manifest' else v}` |"
            for k, v in cfg.items()
            if k not in ("data", "resume", "out")
        ],
        f"| model options | `{card.hyperparameters}` |",
        f"| wall time of this run | {card.training.get('wall_seconds', 0) / 60:.0f} min, "
        f"{card.training.get('threads')} thread(s) |",
        f"| git commit | `{card.training.get('git_commit', '')[:12]}` |",
    ]
    attn = card.hyperparameters.get("attn_layer", "miam")
    text = Template(TEMPLATE.read_text()).substitute(
        command=command,
        shipped_model=f"ILCS {'with MIAM' if attn == 'miam' else 'without MIAM'} "
        f"({card.hyperparameters.get('input_size')} px, seed {cfg.get('seed')})",
        test_top1=f"**{_pct(report['top1'])}**",
        heatmap_name=heatmap_name(card),
        energy=_pct(loc["energy_in_boxes"]),
        pointing=_pct(loc["pointing_game"]),
        gauss_energy=_pct(loc["baselines"]["centred_gaussian"]["energy_in_boxes"]),
        flat_energy=_pct(loc["baselines"]["flat"]["energy_in_boxes"]),
        temperature=f"{card.temperature:.2f}",
        ece_before=_pct(cal["test_ece_before"]),
        ece_after=_pct(cal["test_ece_after"]),
        val_ece_before=_pct(cal["val_ece_before"]),
        val_ece_after=_pct(cal["val_ece_after"]),
        manifest_sha=manifest_sha256(manifest)[:12],
        n_train=card.training.get("n_train"),
        n_val=card.training.get("n_val"),
        targets=_targets(report["top1"], loc),
        epochs=runs[0]["config"].get("epochs") if runs else "n/a",
        recipe_box_weight=runs[0]["config"].get("box_loss_weight") if runs else "n/a",
        stages=_stages(card, res.get("before_finetune"), res["val_methods"][0]),
        ablation_table=table,
        ablation_summary=summary,
        fig_runs=rel(fig_runs) if fig_runs else "",
        box_weight=cfg.get("box_loss_weight"),
        methods_table="\n".join(methods),
        served_method=card.heatmap_method,
        localisation_table=_loc_table(loc),
        style_section=_style_section(card, res["test_localisation_raw"]),
        fig_heatmaps=rel(res["figures"]["heatmaps"]),
        nll_before=f"{fit.get('nll_before', float('nan')):.4f}",
        nll_after=f"{fit.get('nll_after', float('nan')):.4f}",
        bound_note="; the minimum lies at the grid's edge, so T is only a bound" if fit.get("at_bound") else "",
        fig_reliability=rel(res["figures"]["reliability"]),
        review_band=_review_band(res["test_scores"], res["test_labels"]),
        per_class_table="\n".join(per_class),
        fig_confusion=rel(res["figures"]["confusion"]),
        recipe_table="\n".join(recipe),
        input_size=card.input_size,
        reproduce="\n".join(_reproduce(cfg)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def _stages(card, before: dict | None = None, after: dict | None = None) -> str:
    stages = card.training.get("stages") or [{"stage": "recipe", "command": "ilcs train"}]
    lines = [f"{i}. {s['stage']}: `{s['command']}`" for i, s in enumerate(stages, 1)]
    m = card.metrics
    lines += [
        "",
        f"The last training stage kept epoch {m.get('best_epoch')} (validation top-1 "
        f"{_pct(m.get('val_top1', float('nan')))}, validation loss {m.get('val_loss', float('nan')):.4f}).",
    ]
    if before and after:
        lines += [
            "",
            f"On the validation slice, the fine-tuned checkpoint's heatmap scores {_pct(after['energy_in_boxes'])} "
            f"energy in boxes and {_pct(after['pointing_game'])} pointing game against "
            f"{_pct(before['energy_in_boxes'])} and {_pct(before['pointing_game'])} before the stage, at "
            f"validation top-1 {_pct(m.get('val_top1', float('nan')))} against {_pct(before['val_top1'])} "
            "(one validation image is 0.93 points). The stage was run and kept for its lower validation box loss, the "
            "criterion it was run with; on the two localisation scores the gain is mixed (energy up, pointing down "
            "on validation).",
        ]
    return "\n".join(lines)


def _review_band(scores: np.ndarray, labels: np.ndarray) -> str:
    conf, correct = scores.max(1), scores.argmax(1) == labels
    rows = [
        "Review band: `ILCS_LOW_CONFIDENCE_THRESHOLD` flags answers below it as `low_confidence` for a person to "
        "check. On the test split (calibrated):",
        "",
        "| threshold | answers flagged | errors among flagged | errors among the rest |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for thr in (0.5, 0.7, 0.9, 0.95):
        low = conf < thr
        rows.append(
            f"| {thr} | {int(low.sum())} ({_pct(low.mean())}) | {int((~correct & low).sum())} | "
            f"{int((~correct & ~low).sum())} |"
        )
    rows += [
        "",
        "Recommended: `ILCS_LOW_CONFIDENCE_THRESHOLD=0.9` as the start of the review band; raise it where a missed "
        "defect costs more than a person's look.",
    ]
    return "\n".join(rows)


def _reproduce(cfg: dict) -> list[str]:
    lines = []
    for arm, kw in (("miam", "'{}'"), ("nomiam", "'{\"attn_layer\": null}'")):
        lines.append(
            f"for s in 0 1 2; do ilcs train --seed $s --threads 1 --model-kwargs {kw} "
            f"--out runs/ablation/{arm}_s$s; done"
        )
    lines += [
        "ilcs localise --checkpoint runs/ablation/miam_s0/best --subset val --method all",
        "ilcs report --runs reports/runs/ablation",
    ]
    return lines


def report_cli(args) -> None:
    out = Path(args.out)
    checkpoint = args.checkpoint or SHIPPED_CHECKPOINT
    res = make_figures(checkpoint, args.data, args.split_manifest, out.parent / "figures")
    runs = full_runs(args.runs) if args.runs and Path(args.runs).is_dir() else []
    write_report(res, runs, out, f"ilcs report --runs {args.runs}", args.split_manifest)
    print(f"wrote {out}")
