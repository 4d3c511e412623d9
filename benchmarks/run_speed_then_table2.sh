#!/usr/bin/env bash
# One sequential background job for issue 6 on the 2-core CPU: the speed benchmark first, on a quiet
# machine (nothing else of ours running), then the Table 2 trainings, each committed as it ends.
#   usage: bash benchmarks/run_speed_then_table2.sh --epochs N | --deadline HH:MM  [more table2 run args...]
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/venv/bin/python}

commit() {  # commit only the given paths; retry while another engineer's git holds the index lock
  local msg=$1; shift
  for _ in $(seq 10); do
    git add -- "$@" && git commit -q -m "$msg" -- "$@" && return 0
    sleep 3
  done
}

echo "speed: $(date +%T) start"
$PY -m benchmarks.models --reps 7 --min-time 0.5 \
  --note "Ran before the Table 2 trainings, with no training of ours running; other engineers' short jobs may have overlapped."
$PY -m benchmarks.models --variants --sizes 160 200 --batches 1 16 --compile-batches 16 --reps 7 --min-time 0.5 \
  --out reports/speed-variants.md
commit "speed: reports/speed.md and speed-variants.md (benchmarks.models)" \
  reports/speed.md reports/speed.json reports/speed-variants.md reports/speed-variants.json
echo "speed: $(date +%T) end"

$PY -m benchmarks.table2 run --commit "$@"
echo "table2: $(date +%T) all done"
