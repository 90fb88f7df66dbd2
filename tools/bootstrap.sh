#!/usr/bin/env bash
# One entry point for a fresh Debian 12 / Raspberry Pi OS Bookworm machine:
#   bash tools/bootstrap.sh demo   -> installs what the demo needs, then runs `voiced demo`
#   bash tools/bootstrap.sh test   -> installs what the tests need, then runs the whole suite
# It installs Debian packages with apt (sudo when not root) and Python packages
# into ./.venv with pip. Nothing else is needed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-}"; shift || true
case "$job" in demo|test) ;; *) echo "usage: bash tools/bootstrap.sh demo|test [args...]" >&2; exit 2;; esac

# 64-bit only (why: tools/supported-arch.sh).
. tools/supported-arch.sh
voiced_check_arch bootstrap.sh || exit 1

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Build deps for pyaudio (portaudio19-dev) and systemd-python (libsystemd-dev, pkg-config);
# espeak-ng gives the local server real speech; the test suite adds a private PulseAudio
# (virtual mic and speaker), sox and systemd-analyze.
apt_pkgs=(python3 python3-venv python3-dev gcc pkg-config portaudio19-dev libsystemd-dev espeak-ng)
if [ "$job" = test ]; then
  apt_pkgs+=(pulseaudio pulseaudio-utils libasound2-plugins sox systemd)
  # The unit under a real systemd (tools/systemd-check.sh, tests/runtime/test_systemd_check.py).
  apt_pkgs+=(systemd-container debootstrap)
fi
if [ "$job" = test ]; then
  # mosquitto: the real MQTT broker the Home Assistant tests start on a loopback port.
  apt_pkgs+=(mosquitto)
fi
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's chatter goes to a log (all of it: which packages came as wheels and which were built
# is read from it by tools/arm64-check.sh); it is shown only when the install fails.
pip_install() {
  local t0=$SECONDS
  if ! .venv/bin/python -m pip install --progress-bar off "$@" >>.venv/pip.log 2>&1; then
    tail -n 40 .venv/pip.log >&2; echo "pip install $* failed (full log: .venv/pip.log)" >&2; exit 1
  fi
  echo "pip install seconds: $((SECONDS - t0))" >>.venv/bootstrap-times
}
# The package is installed editable, so what pip would do depends only on the packaging
# files and the job: when they are unchanged since the last successful install into this
# .venv, pip (~20 s even when everything is there: it asks PyPI about pip and every
# requirement) is skipped. A fresh clone has no stamp and installs everything.
stamp=".venv/bootstrap-installed"
want="$job $(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -f "$stamp"; : >.venv/pip.log; : >.venv/bootstrap-times
  pip_install --upgrade pip
  if [ "$job" = test ]; then pip_install -e '.[test]'; else pip_install -e .; fi
  echo "$want" >"$stamp"
fi
if [ "$job" = test ]; then
  # The habits before the behaviour (README "Development"): lint, format, types; each stops
  # the run with its own findings. Config: pyproject.toml [tool.ruff], setup.cfg [mypy].
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  .venv/bin/mypy
  exec .venv/bin/python -m pytest "$@"
else
  exec .venv/bin/voiced demo "$@"
fi
