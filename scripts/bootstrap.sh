#!/usr/bin/env bash
# Create (once) and print the path of the project's virtualenv.
#
# The virtualenv lives outside the clone, keyed by a hash of the dependency lists in
# pyproject.toml, so every clone and every CI run with the same dependencies reuses it.
# The project itself is not installed into it: callers put the clone on PYTHONPATH.
#
#   scripts/bootstrap.sh [EXTRA ...]     default: the extras in $DISTILLWATCH_EXTRAS, else "training"
#
# The training extra (torch, transformers) is part of the default environment: the demo
# retrains a student on CPU and the tests exercise the training job.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${DISTILLWATCH_PYTHON:-python3.11}"
command -v "$python" >/dev/null || { echo "distillwatch: $python not found; install Python 3.11" >&2; exit 1; }
root="${DISTILLWATCH_VENV_ROOT:-$HOME/.cache/distillwatch/venvs}"
mkdir -p "$root"
if [ "$#" -eq 0 ]; then set -- ${DISTILLWATCH_EXTRAS-training}; fi

# One requirement per line: core + dev group + requested extras.
reqs="$("$python" - "$here/pyproject.toml" "$@" <<'PY'
import sys, tomllib
meta = tomllib.load(open(sys.argv[1], "rb"))
deps = list(meta["project"]["dependencies"]) + list(meta["dependency-groups"]["dev"])
for extra in sys.argv[2:]:
    deps += meta["project"]["optional-dependencies"][extra]
print("\n".join(sorted(deps)))
PY
)"
key="$(printf '%s\n%s\n' "$("$python" -c 'import sys; print(sys.version.split()[0])')" "$reqs" | sha256sum | cut -c1-16)"
venv="$root/$key"

if [ ! -f "$venv/.ready" ]; then
  exec 9>"$root/.lock-$key"
  flock 9
  if [ ! -f "$venv/.ready" ]; then
    echo "distillwatch: creating virtualenv $venv (first run; later runs reuse it)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    printf '%s\n' "$reqs" > "$venv/requirements.txt"
    "$venv/bin/python" -m pip install -q -r "$venv/requirements.txt" >&2
    touch "$venv/.ready"
  fi
fi
echo "$venv"
