"""The model speed benchmark: its paths compute what eager computes, its statistics and findings add up."""

import argparse
import json
from importlib.util import find_spec

import pytest
import torch

from benchmarks.models import bench_point, build_path, main, module_breakdown, save_run
from benchmarks.speed_report import render_speed, summary
from model_zoo import create_model


@pytest.mark.parametrize("path", ["eager", "cl", "jit"])
def test_every_path_computes_the_eager_logits(path):
    torch.manual_seed(0)
    model = create_model("ilcs", input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        forward, xp = build_path(model, path, x)
        assert torch.allclose(forward(xp), expected, atol=1e-4)


@pytest.mark.parametrize("path", ["frozen", *[p for p in ("onnxruntime", "openvino") if find_spec(p)]])
def test_the_service_runtimes_compute_the_eager_logits(path, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the exported graph goes there
    torch.manual_seed(0)
    model = create_model("ilcs", input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        forward, xp = build_path(model, path, x)
        logits, _ = forward(xp)
    assert torch.allclose(logits, expected, atol=1e-4)


def test_rounds_interleave_paths_and_thread_counts_and_keep_each_points_median(tmp_path, monkeypatch):
    calls, speeds = [], iter([10.0, 30.0, 11.0, 31.0, 12.0, 29.0] * 2)
    monkeypatch.setattr(
        "benchmarks.models.run_in_subprocess",
        lambda spec: calls.append((spec["threads"], spec["path"])) or fake("ilcs", spec["path"], next(speeds)),
    )
    out = tmp_path / "speed.md"
    argv = ["--models", "ilcs", "--paths", "eager", "jit", "--threads", "1", "2", "--rounds", "3", "--compile-models"]
    main([*argv, "--profile-models", "--out", str(out)])
    assert calls == [(1, "eager"), (1, "jit"), (2, "eager"), (2, "jit")] * 3
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert [r["label"] for r in runs] == ["1 thread: ilcs", "2 threads: ilcs"]
    eager = next(r for r in runs[0]["results"] if r["path"] == "eager")
    assert eager["points"][0]["rounds_img_per_s"] == [10.0, 12.0, 11.0]  # rounds 1-3 of (1 thread, eager)
    assert eager["points"][0]["img_per_s"] == 11.0
    assert "3 rounds, interleaved; each point is its median round" in out.read_text()


def test_bench_point_reports_median_spread_and_throughput():
    model = torch.nn.Conv2d(3, 4, 3)
    point = bench_point(model, torch.randn(4, 3, 16, 16), "eager", warmup=1, reps=5, min_time=0.0)
    assert point["reps"] == 5 and point["batch"] == 4 and point["size"] == 16
    assert point["min_s"] <= point["q1_s"] <= point["median_s"] <= point["q3_s"] <= point["max_s"]
    assert point["img_per_s"] == pytest.approx(4 / point["median_s"])
    assert point["ms_per_img"] == pytest.approx(1e3 * point["median_s"] / 4)


def test_the_breakdown_times_outermost_modules_once_and_accounts_for_the_rest():
    model = create_model("ilcs", input_size=32).eval()
    rows = module_breakdown(model, torch.randn(1, 3, 32, 32), iters=2)
    names = [n for n, _, _ in rows if not n.startswith("(")]
    assert not any(a != b and b.startswith(a + ".") for a in names for b in names)  # nothing timed twice
    kinds = {k for _, k, _ in rows}
    assert {"conv+bn+act", "spatial attention", "channel attention", "other"} <= kinds
    assert all(ms >= 0 for _, k, ms in rows if k != "other")


def fake(model, path, img_per_s, gflops=1.0, kwargs=None, threads=2):
    points = [
        {
            "batch": b,
            "size": 200,
            "reps": 5,
            "median_s": b / img_per_s,
            "q1_s": b / img_per_s,
            "q3_s": b / img_per_s,
            "min_s": 0,
            "max_s": 1,
            "img_per_s": img_per_s,
            "ms_per_img": 1e3 / img_per_s,
            "gflop_per_s": gflops * img_per_s,
        }
        for b in (1, 16)
    ]
    return {
        "model": model,
        "kwargs": kwargs or {},
        "path": path,
        "threads": threads,
        "params": 1e6,
        "gflops": {"200": gflops},
        "rss_start_mb": 500,
        "peak_rss_mb": 900,
        "points": points,
    }


MACHINE = {
    "cpu": "Test CPU",
    "logical_cpus": 2,
    "threads": 2,
    "interop_threads": 1,
    "torch": "t",
    "torchvision": "v",
    "python": "3.11",
    "mkldnn": True,
    "isa": "AVX512",
}


KINDS = {"conv+bn+act": 60.0, "spatial attention": 20.0, "channel attention": 10.0, "max pool": 10.0}
PROFILE = {"batch": 16, "size": 200, "threads": 2, "total_ms": 100.0, "kinds": KINDS,
           "modules": [["lcs.0.conv1", "conv+bn+act", 30.0]], "operators": "ops"}  # fmt: skip


def run(results, label="2 threads: ilcs, mobilenet_v2", command="the command", profiles=None):
    return {"label": label, "command": command, "date": "today", "machine": MACHINE, "results": results,
            "profiles": profiles or {}}  # fmt: skip


def test_findings_compare_each_models_fastest_path():
    results = [
        fake("ilcs", "eager", 50),
        fake("ilcs", "compile", 120),
        fake("mobilenet_v2", "eager", 60),
        fake("mobilenet_v2", "jit", 100),
        fake("mobilenet_v2", "compile", 80),
    ]
    text = "\n".join(summary([run(results)]))
    assert (
        "ILCS's throughput is 1.20x to 1.20x MobileNetV2's, each on its fastest path (eager alone: 0.83x to 0.83x)"
        in text
    )
    assert "ILCS is faster at 2 of 2 (input, batch) points" in text
    assert "`torch.compile` fuses" in text and "it speeds ILCS up 2.40x over eager and MobileNetV2 1.33x" in text
    assert "| ilcs | 200 | 16 | 0.83x | – | 1.50x | 1.20x (`compile` / `jit`) |" in render_speed([run(results)])
    results[1] = fake("ilcs", "compile", 30)
    assert "ILCS is faster at 0 of 2 (input, batch) points" in "\n".join(summary([run(results)]))


def test_findings_name_the_closest_variant_and_the_spread_between_runs():
    variants = [
        fake("ilcs", "eager", 10),
        fake("ilcs", "eager", 15, kwargs={"pool_at": "early"}),
        fake("mobilenet_v2", "eager", 30),
    ]
    again = [fake("ilcs", "eager", 12), fake("mobilenet_v2", "eager", 30)]
    text = "\n".join(summary([run(variants, label="variants"), run(again, label="again")]))
    assert "`ilcs pool_at=early` comes closest: 0.50x MobileNetV2's throughput" in text
    assert "against 0.33x for the shipped layout (variants)" in text
    assert "differ by up to 20% for the same point (ilcs `eager`, batch 1" in text


def test_report_names_the_machine_threads_command_and_how_to_reproduce():
    results = [fake("ilcs", "eager", 50), fake("mobilenet_v2", "eager", 60)]
    text = render_speed([run(results, profiles={"ilcs": PROFILE})])
    assert "on Test CPU, 2 logical CPUs, 2 thread(s)" in text and "by\n`the command`." in text
    assert "| ilcs | 16 | 50.0 (50–50) | 20.0 |" in text
    assert "ILCS's attention modules take 30% of its forward time and its max pools 10%" in text
    assert "| `lcs.0.conv1` | conv+bn+act | 30.0 |" in text
    assert text.split("## How to reproduce")[1].count("the command") == 1


def test_ilcs_bench_namespace_only_sets_the_output(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "benchmarks.models.run_in_subprocess",
        lambda spec: calls.append((spec["name"], spec["path"])) or fake(spec["name"], spec["path"], 10),
    )
    monkeypatch.setattr("benchmarks.models.profile", lambda *a: PROFILE)
    out = tmp_path / "speed.md"
    main(argparse.Namespace(models=True, out=str(out), clients=16, requests=800))
    assert out.exists() and out.with_suffix(".json").exists()
    assert ("resnet50", "eager") in calls and ("ilcs", "compile") in calls and ("resnet50", "compile") not in calls
    assert "by\n`ilcs bench --models --out" in out.read_text()


def test_a_run_replaces_the_earlier_run_of_its_label_and_keeps_the_others(tmp_path, monkeypatch):
    speed = {"ilcs": 10.0}
    monkeypatch.setattr(
        "benchmarks.models.run_in_subprocess",
        lambda spec: fake(spec["name"], spec["path"], speed.get(spec["name"], 20.0)),
    )
    monkeypatch.setattr("benchmarks.models.profile", lambda *a: PROFILE)
    out = tmp_path / "speed.md"
    common = ["--paths", "eager", "--compile-models", "--out", str(out)]
    main(["--models", "ilcs", "mobilenet_v2", "--threads", "2", *common])
    main(["--models", "ilcs", "mobilenet_v2", "--threads", "1", *common])
    speed["ilcs"] = 40.0
    main(["--models", "ilcs", "mobilenet_v2", "--threads", "2", *common])
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert [r["label"] for r in runs] == ["1 thread: ilcs, mobilenet_v2", "2 threads: ilcs, mobilenet_v2"]
    text = out.read_text()
    assert "| ilcs | 16 | 40.0 (40–40) |" in text  # re-measured
    assert "| ilcs | 16 | 10.0 (10–10) |" in text  # the 1-thread run, kept
    assert "| mobilenet_v2 | 16 | 20.0 (20–20) | 50.0 |" in text


def test_save_run_starts_a_file_and_replaces_by_label(tmp_path):
    path = tmp_path / "speed.json"
    save_run(path, {"label": "a", "n": 1})
    save_run(path, {"label": "b", "n": 2})
    assert save_run(path, {"label": "a", "n": 3}) == [{"label": "b", "n": 2}, {"label": "a", "n": 3}]
