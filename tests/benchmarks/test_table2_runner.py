"""scripts/run_table2.sh: the plan of ``benchmarks.table2 run``, one run per call, in the plan's order."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_runner_trains_the_plan_one_run_at_a_time(tmp_path):
    args = [
        "--epochs",
        "1",
        "--runs-dir",
        str(tmp_path),
        "--models",
        "ilcs",
        "effnet",
        "--seeds",
        "0",
        "1",
        "--dry-run",
    ]
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(["bash", "scripts/run_table2.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plans = [line for line in out.stdout.splitlines() if " runs, " in line]
    assert plans == [
        "table2: 1 runs, 1 epochs each: [('ilcs', 0)]",
        "table2: 1 runs, 1 epochs each: [('effnet', 0)]",
        "table2: 1 runs, 1 epochs each: [('ilcs', 1)]",
        "table2: 1 runs, 1 epochs each: [('effnet', 1)]",
    ]
