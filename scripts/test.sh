#!/usr/bin/env bash
# The whole test suite, from a fresh machine: virtualenv, Debian packages (Alertmanager,
# Chromium), Kafka jars, then pytest.
# The tests start (and stop) the local Kafka broker and the embedded ClickHouse themselves.
#   scripts/test.sh [PYTEST ARGS]     default: the core set (not marked slow)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="$(scripts/bootstrap.sh)"
scripts/system-deps.sh
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
"$venv/bin/python" -m distillwatch kafka fetch
echo "mypy (schemas, evaluators):"
"$venv/bin/python" -m mypy
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
exec "$venv/bin/python" -m pytest "$@"
