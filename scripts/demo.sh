#!/usr/bin/env bash
# The main job on a fresh machine: `distillwatch demo`, the whole loop on simulated
# MangaAssist traffic (local Kafka, the monitor, simulated teacher and student workers,
# Alertmanager and an on-call receiver, a failure scenario, a CPU retrain, report.html).
#   scripts/demo.sh [DEMO OPTIONS]      e.g. --no-live, --scenario canary_slice
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="$(scripts/bootstrap.sh)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
scripts/system-deps.sh prometheus-alertmanager || echo "(continuing: the demo pages its receiver directly)" >&2
"$venv/bin/python" -m distillwatch kafka fetch >/dev/null
exec "$venv/bin/python" -m distillwatch demo "$@"
