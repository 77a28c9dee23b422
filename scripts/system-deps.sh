#!/usr/bin/env bash
# Debian packages the tests (and, when present, the demo) use: Prometheus Alertmanager and
# headless Chromium. Installed once when missing; a no-op afterwards.
#   scripts/system-deps.sh            install what is missing (needs root or sudo)
set -euo pipefail
#   scripts/system-deps.sh PKG ...    only these (e.g. prometheus-alertmanager for the demo)
wanted=("$@")
[ "${#wanted[@]}" -eq 0 ] && wanted=(prometheus-alertmanager chromium)
missing=()
for pkg in "${wanted[@]}"; do
  command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "distillwatch: missing Debian packages: ${missing[*]}; install them as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "distillwatch: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
# The Debian package would start its own Alertmanager service; tests start theirs.
$sudo env RUNLEVEL=1 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
