#!/usr/bin/env bash
# The README's service claims under a real systemd: boots Debian 12 with systemd as PID 1 in
# a systemd-nspawn container, installs voiced from this tree with tools/install.sh, and checks
# every claim (one PASS/FAIL line each, exit 1 if any fails). Run as root on Debian 12:
#
#   sudo bash tools/systemd-check.sh [--proving docs/proving.md] [--keep] [--json FILE]
#
# Needs systemd-container and debootstrap (installed here when missing). The rootfs is
# cached in /var/cache/voiced-systemd-check (about 4 minutes the first time).
# Details: tools/systemd_check.py.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "systemd-check: run as root (sudo bash $0)" >&2; exit 2; }
missing=()
for p in systemd-container debootstrap; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec python3 "$(dirname "$0")/systemd_check.py" "$@"
