#!/usr/bin/env bash
# Train the Table 2 runs one at a time and commit each run's small logs and the report as it ends.
#   usage: scripts/run_table2.sh [--seeds 0 1 2] [--resnet50-seeds 0] [--threads T] [--epochs N]
# `python -m benchmarks.table2 run` does the training (sequential, resumable); this adds only the commits.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
plan=$($PY -m benchmarks.table2 run --dry-run "$@" | sed -n 's/.* --out \([^ ]*\) .*/\1/p')
for out in $plan; do
  name=$(basename "$out")
  $PY -m benchmarks.table2 run "$@" --only "$name" </dev/null
  if [ -f "$out/best.json" ]; then
    files=("$out"/log.json "$out"/log.csv "$out"/best.json reports/table2.md reports/figures/table2-*.png)
    git add -- "${files[@]}"
    git commit -q -m "table2: $name" -- "${files[@]}" || true
  fi
done
