"""The paper's Table 3 beside ours: parameters and FLOPs of the seven models (``ilcs profile``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.markdown import render, table
from benchmarks.paper import PAPER_TABLE3
from model_zoo.profile import count_flops, count_params
from model_zoo.registry import PAPER_MODELS, create_model

__all__ = ["main", "table3_rows", "write_table3"]

#: The hypothesis on the paper's FLOPs: multiply-adds of its training mini-batch (16) at the usual 224x224.
HYPOTHESIS_SIZE, HYPOTHESIS_BATCH = 224, 16


def table3_rows(sizes: tuple[int, ...] = (300, 200)) -> list[dict]:
    """One row per (model, input size), one image each; ILCS also with the paper's flatten head."""
    variants = [(name, name, {}) for name in PAPER_MODELS] + [("ilcs (paper head)", "ilcs", {"head": "paper"})]
    rows = []
    for label, name, kwargs in variants:
        for size in sizes:
            model = create_model(name, input_size=size, **kwargs)
            linear = max((m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)), default=0)
            params = count_params(model)
            rows.append(
                {
                    "model": label,
                    "name": name,
                    "size": size,
                    "params": params,
                    "largest_linear": linear / params,
                    "flops": count_flops(model, size),
                    "paper": PAPER_TABLE3.get(name),
                }
            )
    return rows


def hypothesis_rows() -> list[tuple[str, float, float]]:
    """(model, paper's FLOPs (G), our GMACs of one mini-batch at the hypothesis's input) per paper row."""
    out = []
    for name in PAPER_MODELS:
        model = create_model(name, input_size=HYPOTHESIS_SIZE)
        macs = count_flops(model, HYPOTHESIS_SIZE, batch=HYPOTHESIS_BATCH) / 2e9
        out.append((name, PAPER_TABLE3[name][1], macs))
    return out


def render_table3(rows: list[dict], hypothesis: list[tuple[str, float, float]]) -> str:
    """Markdown of Table 3 side by side, the differences explained, and the hypothesis on the paper's FLOPs."""
    big = max(r["size"] for r in rows)
    at = {r["model"]: r for r in rows if r["size"] == big}
    figures = table(
        ["model", "input", "params (M)", "GFLOPs", "GMACs", "paper params (M)", "paper FLOPs (G)"],
        [
            (
                r["model"],
                r["size"],
                f"{r['params'] / 1e6:.3f}",
                f"{r['flops'] / 1e9:.3f}",
                f"{r['flops'] / 2e9:.3f}",
                *((f"{r['paper'][0]:.2f}", f"{r['paper'][1]:.2f}") if r["size"] == big and r["paper"] else ("", "")),
            )
            for r in rows
        ],
        left=2,
    )
    ratios = ", ".join(
        f"{m} {r['paper'][1] / (r['flops'] / 1e9):.2f}x"
        for m, r in at.items()
        if r["paper"] and "+miam" not in m and "paper head" not in m
    )
    guess = table(
        ["model", "paper FLOPs (G)", f"ours: GMACs of {HYPOTHESIS_BATCH} images at {HYPOTHESIS_SIZE}", "ours / paper"],
        [(m, f"{paper:.2f}", f"{macs:.2f}", f"{macs / paper:.2f}") for m, paper, macs in hypothesis],
    )

    off = max(abs(macs / paper - 1) for m, paper, macs in hypothesis if m in ("resnet50", "mobilenet_v2", "ilcs"))

    def miam(base: str) -> str:
        return f"+{(at[base + '+miam']['params'] - at[base]['params']) / 1e6:.3f}M"

    return render(
        "table3.md",
        torch=torch.__version__,
        size=big,
        figures=figures,
        resnet50=f"{at['resnet50']['params'] / 1e6:.2f}M",
        miam_resnet50=miam("resnet50"),
        miam_mobilenet_v2=miam("mobilenet_v2"),
        miam_effnet=miam("effnet"),
        ilcs=f"{at['ilcs']['params'] / 1e6:.2f}M",
        ilcs_paper=f"{at['ilcs (paper head)']['params'] / 1e6:.2f}M",
        linear_share=f"{at['ilcs (paper head)']['largest_linear']:.0%}",
        ratios=ratios,
        hypothesis=guess,
        hypothesis_off=f"{off:.0%}",
        hypothesis_size=HYPOTHESIS_SIZE,
        hypothesis_batch=HYPOTHESIS_BATCH,
    )


def write_table3(out: str | Path = "reports/table3.md", sizes: tuple[int, ...] = (300, 200)) -> str:
    """Count, render, write the report to ``out`` and return its text."""
    text = render_table3(table3_rows(sizes), hypothesis_rows())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    return text


def main(args: argparse.Namespace) -> None:
    """``ilcs profile``: ``args.out`` (the report) and ``args.sizes`` (inputs, the paper's first)."""
    print(write_table3(args.out, sizes=tuple(args.sizes)))
