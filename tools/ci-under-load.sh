#!/usr/bin/env bash
# The whole test suite with every core busy: CI's proof that no time-scaled test races the CPU.
#   bash tools/ci-under-load.sh [pytest args...]
# Starts `stress-ng --cpu N` (N = VOICED_LOAD_CPUS, default: every core) beside
# `bash tools/bootstrap.sh test`, stops it by its PID when pytest ends, and exits with
# pytest's code. stress-ng is installed with apt (sudo when not root) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cpus="${VOICED_LOAD_CPUS:-$(nproc)}"
if ! command -v stress-ng >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq stress-ng >/dev/null
fi
stress-ng --cpu "$cpus" --quiet &
load=$!
trap 'kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true' EXIT
echo "ci-under-load: stress-ng --cpu $cpus (pid $load) beside the suite" >&2
set +e
bash tools/bootstrap.sh test "$@"
rc=$?
set -e
exit $rc
