"""``reports/speed.md`` from the runs of ``benchmarks.models`` kept in ``reports/speed.json``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from string import Template

from benchmarks.markdown import TEMPLATES, render, table

__all__ = ["render_speed", "summary"]

PATHS = ("eager", "cl", "jit", "compile", "frozen", "onnxruntime", "openvino")
RUNTIMES = ("frozen", "onnxruntime", "openvino")  # the service's backends (ILCS_BACKEND)
A, B = "ilcs", "mobilenet_v2"  # the question: is the lightest model by FLOPs also the fastest?


def label(result: dict) -> str:
    """``ilcs``, or ``ilcs pool_at=early`` for a variant."""
    return " ".join([result["model"], *(f"{k}={v}" for k, v in sorted(result["kwargs"].items()))])


def _points(results: Sequence[dict]) -> dict[tuple, dict]:
    """Every point by (model label, path, size, batch)."""
    return {(label(r), r["path"], p["size"], p["batch"]): p for r in results for p in r["points"]}


def _grid(results: Sequence[dict]) -> tuple[list[int], list[int], list[str]]:
    sizes = sorted({p["size"] for r in results for p in r["points"]})
    batches = sorted({p["batch"] for r in results for p in r["points"]})
    return sizes, batches, [p for p in PATHS if any(r["path"] == p for r in results)]


def _fastest(
    pts: dict[tuple, dict], model: str, paths: Sequence[str], size: int, batch: int
) -> tuple[str, dict] | None:
    found = [(p, pts[(model, p, size, batch)]) for p in paths if (model, p, size, batch) in pts]
    return max(found, key=lambda pp: pp[1]["img_per_s"], default=None)


def ratios(results: Sequence[dict], a: str = A, b: str = B) -> dict[tuple[int, int], dict]:
    """Per (size, batch): ``a``'s throughput over ``b``'s, per path and each on its fastest path."""
    pts = _points(results)
    sizes, batches, paths = _grid(results)
    out = {}
    for s in sizes:
        for n in batches:
            fa, fb = _fastest(pts, a, paths, s, n), _fastest(pts, b, paths, s, n)
            if fa and fb:
                per = {p: pts[(a, p, s, n)]["img_per_s"] / pts[(b, p, s, n)]["img_per_s"]
                       for p in paths if (a, p, s, n) in pts and (b, p, s, n) in pts}  # fmt: skip
                out[(s, n)] = {"paths": per, "best": fa[1]["img_per_s"] / fb[1]["img_per_s"], "via": (fa[0], fb[0])}
    return out


# One sentence per finding of *What this shows*, filled from the runs' figures.
SENTENCES = dict(
    re.findall(r"^\[(\w+)\]\n(.*?)\n(?=\[|\Z)", (TEMPLATES / "speed-findings.md").read_text(), re.M | re.S)
)


def _say(kind: str, **values: object) -> str:
    return Template(SENTENCES[kind]).substitute(values)


def summary(runs: Sequence[dict]) -> list[str]:
    """The bullets of *What this shows*, each from the runs' figures."""
    lines = []
    for run in runs:
        r = ratios(run["results"])
        if not r or any(res["kwargs"] for res in run["results"]):
            continue
        best, eager = (
            [v["best"] for v in r.values()],
            [v["paths"]["eager"] for v in r.values() if "eager" in v["paths"]],
        )
        eager_text = f" (eager alone: {min(eager):.2f}x to {max(eager):.2f}x)" if eager else ""
        lo, hi, faster = f"{min(best):.2f}x", f"{max(best):.2f}x", sum(v > 1 for v in best)
        lines.append(_say("ratio", label=run["label"], lo=lo, hi=hi, eager=eager_text, faster=faster, points=len(best)))
    for run in runs:
        pts, res = _points(run["results"]), {label(x): x for x in run["results"] if x["path"] == "eager"}
        key = max(((s, n) for (m, p, s, n) in pts if m == A and p == "eager" and (B, p, s, n) in pts), default=None)
        if key and A in res and B in res:
            ga, gb = (f"{res[m]['gflops'][str(key[0])]:.2f}" for m in (A, B))
            pa, pb = (f"{res[m]['params'] / 1e6:.2f}M" for m in (A, B))
            ra, rb = (f"{pts[(m, 'eager', *key)]['gflop_per_s']:.0f}" for m in (A, B))
            lines.append(_say("work", size=key[0], batch=key[1], ga=ga, gb=gb, pa=pa, pb=pb, ra=ra, rb=rb,
                              label=run["label"]))  # fmt: skip
            break
    for run in runs:
        kinds = run.get("profiles", {}).get(A, {}).get("kinds")
        if kinds:
            total = sum(kinds.values())
            attn = sum(ms for k, ms in kinds.items() if "attention" in k or k == "MIAM") / total
            lines.append(_say("why", attn=f"{attn:.0%}", pool=f"{kinds.get('max pool', 0) / total:.0%}"))
            break
    for run in runs:
        pts = _points(run["results"])
        keys = [(s, n) for (m, p, s, n) in pts if m == A and p == "compile" and (A, "eager", s, n) in pts]
        key = max((k for k in keys if (B, "compile", *k) in pts and (B, "eager", *k) in pts), default=None)
        if key:
            ga, gb = (
                f"{pts[(m, 'compile', *key)]['img_per_s'] / pts[(m, 'eager', *key)]['img_per_s']:.2f}x" for m in (A, B)
            )
            lines.append(_say("compile", size=key[0], batch=key[1], ga=ga, gb=gb, label=run["label"]))
            break
    for run in runs:
        variants = sorted({label(x) for x in run["results"] if x["model"] == A})
        if len(variants) > 1 and A in variants:
            best = {v: min(x["best"] for x in ratios(run["results"], a=v).values()) for v in variants}
            top = max(best, key=best.get)
            lines.append(
                _say("variants", top=top, best=f"{best[top]:.2f}x", shipped=f"{best[A]:.2f}x", label=run["label"])
            )
    return lines + _runtimes(runs) + _repeatability(runs)


def _runtimes(runs: Sequence[dict]) -> list[str]:
    """Per run: ILCS and MobileNetV2 on each of the service's runtimes, at the smallest input measured."""
    lines = []
    for run in runs:
        pts = _points(run["results"])
        have = [p for p in RUNTIMES if any(k[1] == p and k[0] == A for k in pts)]
        if not have:
            continue
        size = min(k[2] for k in pts if k[1] in have)
        batches = sorted({k[3] for k in pts if k[1] in have and k[2] == size})
        cells, faster, points = [], 0, 0
        for path in have:
            a = [pts.get((A, path, size, n)) for n in batches]
            b = [pts.get((B, path, size, n)) for n in batches]
            fmt = lambda ps: " / ".join(f"{p['img_per_s']:.0f}" if p else "–" for p in ps)  # noqa: E731
            cells.append(f"`{path}` {fmt(a)} against {fmt(b)}")
            pairs = [(x, y) for x, y in zip(a, b, strict=True) if x and y]
            faster += sum(x["img_per_s"] > y["img_per_s"] for x, y in pairs)
            points += len(pairs)
        lines.append(_say("runtimes", label=run["label"], size=size, batches="/".join(map(str, batches)),
                          cells="; ".join(cells), faster=faster, points=points))  # fmt: skip
    return lines


def _repeatability(runs: Sequence[dict]) -> list[str]:
    """The largest difference between two runs' measurements of the same point (same threads)."""
    seen: dict[tuple, list[float]] = {}
    for run in runs:
        for r in run["results"]:
            for p in r["points"]:
                seen.setdefault((label(r), r["path"], p["size"], p["batch"], r["threads"]), []).append(p["img_per_s"])
    spread = {k: v for k, v in seen.items() if len(v) > 1}
    if not spread:
        return []
    (model, path, size, batch, _), v = max(spread.items(), key=lambda kv: max(kv[1]) / min(kv[1]))
    values = ", ".join(f"{x:.1f}" for x in v)
    spread_text = f"{max(v) / min(v) - 1:.0%}"
    return [_say("noise", spread=spread_text, model=model, path=path, batch=batch, size=size, values=values)]


def _best(ratio: dict) -> str:
    return f"{ratio['best']:.2f}x (`{ratio['via'][0]}` / `{ratio['via'][1]}`)"


def _cell(p: dict | None) -> list[str]:
    if p is None:
        return ["–", "–"]
    return [
        f"{p['img_per_s']:.1f} ({p['batch'] / p['q3_s']:.0f}–{p['batch'] / p['q1_s']:.0f})",
        f"{p['ms_per_img']:.1f}",
    ]


def _run_section(run: dict) -> str:
    results, m = run["results"], run["machine"]
    pts = _points(results)
    sizes, batches, paths = _grid(results)
    models = list(dict.fromkeys(label(r) for r in results))
    out = [
        f"## {run['label']}",
        "",
        f"Measured {run['date']} on {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['threads']} thread(s), "
        f"ISA {m['isa']}, oneDNN {'on' if m['mkldnn'] else 'off'}, torch {m['torch']}"
        + "".join(f", {k} {m[k]}" for k in ("onnxruntime", "openvino") if k in m)
        + ", by",
        f"`{run['command']}`.",
    ]
    if run.get("rounds", 1) > 1:
        out[-1] += f" {run['rounds']} rounds, interleaved; each point is its median round."
    if run.get("load"):
        out[-1] += f" Load average (1/5/15 min) when the run began: {' / '.join(run['load'])}."
        if float(run["load"][0]) > m["logical_cpus"]:
            out[-1] += (" The machine was loaded (other work shared its CPUs), so every figure is lower than on a"
                        " quiet machine: compare paths within this run, not with other runs.")  # fmt: skip
    compared = [v for v in models if v.split(" ")[0] == A]
    if B in models and compared:
        out += ["", "ILCS over MobileNetV2, throughput at equal input and batch (best: each one's fastest path):", ""]
        rows = [
            (v, s, n, *(f"{x['paths'][p]:.2f}x" if p in x["paths"] else "–" for p in paths), _best(x))
            for v in compared
            for (s, n), x in ratios(results, a=v).items()
        ]
        out.append(table(["model", "input", "batch", *(f"`{p}`" for p in paths), "best vs best"], rows))
    for s in sizes:
        out += ["", f"Images/s (IQR) and ms per image at {s}x{s}:", ""]
        rows = [
            (v, n, *(c for p in paths for c in _cell(pts.get((v, p, s, n)))))
            for v in models
            for n in batches
            if any((v, p, s, n) in pts for p in paths)
        ]
        out.append(table(["model", "batch", *(f"`{p}` {u}" for p in paths for u in ("img/s", "ms/img"))], rows))
    out += ["", f"Size, work and memory (achieved GFLOP/s at batch {max(batches)}, input {max(sizes)}):", ""]
    rows = []
    for r in results:
        big = pts.get((label(r), r["path"], max(sizes), max(batches)))
        gflops = [f"{r['gflops'][str(s)]:.2f}" if str(s) in r["gflops"] else "–" for s in sizes]
        achieved = f"{big['gflop_per_s']:.0f}" if big else "–"
        rows.append((label(r), r["path"], f"{r['params'] / 1e6:.2f}", *gflops, achieved, f"{r['peak_rss_mb']:.0f}"))
    header = ["model", "path", "params (M)", *(f"GFLOPs @{s}" for s in sizes), "GFLOP/s", "peak RSS (MB)"]
    out.append(table(header, rows, left=2))
    for name, prof in run.get("profiles", {}).items():
        total, kinds = sum(prof["kinds"].values()), prof["kinds"].items()
        modules = [(f"`{n}`", k, f"{ms:.1f}") for n, k, ms in prof["modules"]]
        out += [
            "",
            f"### Where the time goes: {name}, batch {prof['batch']} at {prof['size']}x{prof['size']}, "
            f"channels-last eager, {prof['threads']} thread(s): {prof['total_ms']:.0f} ms per batch",
            "",
            table(["kind", "ms per batch", "share"], [(k, f"{ms:.1f}", f"{ms / total:.0%}") for k, ms in kinds]),
            "",
            table(["module (ten costliest)", "kind", "ms per batch"], modules, left=2),
        ]
        if prof.get("operators"):
            out += ["", "<details><summary>torch.profiler, operators by self CPU time</summary>", "", "```",
                    prof["operators"].strip(), "```", "", "</details>"]  # fmt: skip
    return "\n".join(out)


def render_speed(runs: Sequence[dict], json_name: str = "speed.json") -> str:
    """The report: what the runs show, how they were measured, each run's tables, and how to reproduce them."""
    return render(
        "speed.md",
        summary="\n".join(summary(runs)),
        runs="\n\n".join(_run_section(r) for r in runs),
        commands="\n".join(r["command"] for r in runs),
        json_name=json_name,
    )
