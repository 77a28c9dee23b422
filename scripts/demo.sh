#!/usr/bin/env bash
# The main job on a fresh machine: local Kafka, topics and tables, synthetic MangaAssist
# traffic with a regression on one region, every metric per slice and window, and the
# alerts the default rules would raise.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="$(scripts/bootstrap.sh)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
dw() { "$venv/bin/python" -m distillwatch "$@"; }
out="${DISTILLWATCH_DATA_DIR:-.distillwatch}/demo"
mkdir -p "$out"

dw kafka start --reuse-existing
dw init
dw simulate --scenario regression --minutes 10 --rate 50 --seed 7 --out "$out/replay.jsonl"
dw evaluate "$out/replay.jsonl" --format json > "$out/metrics.jsonl"
echo
echo "== student accuracy per region, 60 s windows (regression injected on region=br at minute 5) =="
dw evaluate "$out/replay.jsonl" --format table --slice 'region=*' --metric accuracy --alerts
echo
echo "metrics: $out/metrics.jsonl ($(wc -l < "$out/metrics.jsonl") rows); replay log: $out/replay.jsonl"
echo "Kafka keeps running; stop it with: scripts/dw kafka stop"
