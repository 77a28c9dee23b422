#!/usr/bin/env bash
# The whole test suite, from a fresh machine: virtualenv, Debian packages (Alertmanager,
# Chromium), Kafka jars, then pytest.
# The tests start (and stop) the local Kafka broker and the embedded ClickHouse themselves.
#   scripts/test.sh [PYTEST ARGS]     default: the core set (not marked slow)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
# The suite writes a few GB (broker segments, embedded stores, pytest's temp dirs); a full
# disk shows up as dozens of unrelated setup errors, so say so first.
free_gb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR==2 {print int($4 / 1048576)}')
if [ "${free_gb:-0}" -lt 8 ]; then
    echo "warning: only ${free_gb} GB free under ${TMPDIR:-/tmp}; the tests need about 8 GB" >&2
fi
venv="$(scripts/bootstrap.sh)"
scripts/system-deps.sh
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
"$venv/bin/python" -m distillwatch kafka fetch
echo "mypy (schemas, evaluators):"
"$venv/bin/python" -m mypy
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
exec "$venv/bin/python" -m pytest "$@"
