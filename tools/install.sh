#!/usr/bin/env bash
# Install voiced as a system service on Raspberry Pi OS (Bookworm) / Debian 12.
#
#   sudo bash tools/install.sh                      # install, prompt for the API key, start
#   sudo bash tools/install.sh --key-file key.txt   # take the key from a file instead
#   sudo bash tools/install.sh --uninstall          # stop, disable, remove the program
#   sudo bash tools/install.sh --uninstall --purge  # ... and config, key, state, user
#
# What goes where (and why):
#   /opt/voiced            a Python venv with this package installed (`pip install .`): the
#                          unit's ExecStart=/opt/voiced/bin/voiced run. A venv keeps our
#                          pinned libraries away from apt's Python packages, and one fixed
#                          path lets the unit be shipped as is.
#   /etc/systemd/system/voiced.service   the unit (systemd/voiced.service)
#   /usr/lib/sysusers.d/voiced.conf      the system user voiced, in groups audio and gpio
#   /usr/lib/tmpfiles.d/voiced.conf      /etc/voiced owned root:voiced 0750
#   /etc/udev/rules.d/60-voiced-gpio.rules  /dev/gpiochip* and /dev/gpiomem* to group gpio
#                          (systemd/voiced-gpio.rules), only when no installed rule already
#                          does it (Raspberry Pi OS's 99-com.rules does; Debian has none)
#   /etc/voiced/api-key    the Gemini API key, root:root 0600. Only PID 1 reads it; the
#                          service gets a copy in $CREDENTIALS_DIRECTORY (LoadCredential=),
#                          never in its environment or argv. The key is read from a file or
#                          typed at a hidden prompt — never taken as an argument (argv is
#                          visible to every user in `ps`). (systemd-creds encryption would
#                          add little on a Pi: no TPM, so the host key sits on the same SD card.)
#   /etc/voiced/voiced.toml  the configuration (copied from systemd/voiced.toml.example if
#                          that exists and no config is present yet)
#   /var/lib/voiced, /run/voiced   created by systemd (StateDirectory=, RuntimeDirectory=)
#
# Options:
#   --key-file FILE   read the API key from FILE ("-" = stdin) instead of prompting
#   --no-key          do not ask for a key (the device then uses the local offline server)
#   --no-apt          do not install Debian packages
#   --no-venv         do not (re)build /opt/voiced (it is already installed)
#   --no-start        install and enable, but do not start now
#   --root DIR        install into DIR as an offline image (no apt, no venv, no start);
#                     used by the tests and for preparing SD-card images
#   --uninstall [--purge]
#
# Afterwards: `systemctl status voiced`, `journalctl -u voiced -f`.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT=""
KEY_FILE=""
ASK_KEY=1
DO_APT=1
DO_VENV=1
DO_START=1
UNINSTALL=0
PURGE=0

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --key-file) [ $# -ge 2 ] || die "--key-file needs a file"; KEY_FILE="$2"; shift 2;;
    --no-key) ASK_KEY=0; shift;;
    --no-apt) DO_APT=0; shift;;
    --no-venv) DO_VENV=0; shift;;
    --no-start) DO_START=0; shift;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT="$(cd "$2" && pwd)"; shift 2;;
    --uninstall) UNINSTALL=1; shift;;
    --purge) PURGE=1; shift;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) die "unknown option $1 (try --help)";;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo bash tools/install.sh)"
# --- 64-bit only (block owned by the audio/demo side; why: tools/supported-arch.sh) ---
if [ -z "$ROOT" ] && [ "$UNINSTALL" -eq 0 ]; then
  . "$SRC/tools/supported-arch.sh"
  voiced_check_arch install.sh || exit 1
fi
# --- end of 64-bit only ---
if [ -n "$ROOT" ]; then
  DO_APT=0; DO_VENV=0; DO_START=0
  SYSTEMCTL=(systemctl "--root=$ROOT")
else
  [ -d /run/systemd/system ] || die "systemd is not running here; use --root DIR to prepare an image"
  SYSTEMCTL=(systemctl)
fi
ROOT_ARG=(); [ -n "$ROOT" ] && ROOT_ARG=("--root=$ROOT")

OPT="$ROOT/opt/voiced"
ETC="$ROOT/etc/voiced"
UNIT="$ROOT/etc/systemd/system/voiced.service"
SYSUSERS="$ROOT/usr/lib/sysusers.d/voiced.conf"
TMPFILES="$ROOT/usr/lib/tmpfiles.d/voiced.conf"
UDEV_RULE="$ROOT/etc/udev/rules.d/60-voiced-gpio.rules"

if [ "$UNINSTALL" -eq 1 ]; then
  if [ -n "$ROOT" ]; then
    "${SYSTEMCTL[@]}" disable voiced.service >/dev/null 2>&1 || true
  else
    systemctl disable --now voiced.service >/dev/null 2>&1 || true
  fi
  rm -f "$UNIT" "$SYSUSERS" "$TMPFILES" "$UDEV_RULE"
  [ -z "$ROOT" ] && systemctl daemon-reload
  rm -rf "$OPT"
  if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ETC" "$ROOT/var/lib/voiced" "$ROOT/var/lib/private/voiced"
    if [ -n "$ROOT" ]; then
      # userdel cannot work on an image: drop the user's lines and its group memberships.
      for f in passwd shadow group gshadow; do
        [ -f "$ROOT/etc/$f" ] || continue
        awk -F: -v OFS=: '$1 != "voiced" {
            if (NF >= 4) { n = split($4, m, ","); s = "";
              for (i = 1; i <= n; i++) if (m[i] != "voiced") s = s (s == "" ? "" : ",") m[i];
              $4 = s }
            print }' "$ROOT/etc/$f" > "$ROOT/etc/$f.voiced-tmp"
        # passwd/shadow lines have more than 4 fields: only group files carry member lists.
        case "$f" in passwd|shadow) grep -v '^voiced:' "$ROOT/etc/$f" > "$ROOT/etc/$f.voiced-tmp" || true;; esac
        cat "$ROOT/etc/$f.voiced-tmp" > "$ROOT/etc/$f"; rm -f "$ROOT/etc/$f.voiced-tmp"
      done
    elif id voiced >/dev/null 2>&1; then
      userdel voiced || say "could not remove user voiced"
    fi
    say "removed voiced, its configuration, key and state"
  else
    say "removed voiced; kept $ETC (config, key) and /var/lib/voiced (state); --purge removes them"
  fi
  exit 0
fi

for f in voiced.service voiced.sysusers voiced.tmpfiles voiced-gpio.rules; do
  [ -f "$SRC/systemd/$f" ] || die "missing $SRC/systemd/$f"
done

# 1. Debian packages the venv build needs (PyAudio -> PortAudio, systemd-python -> libsystemd).
if [ "$DO_APT" -eq 1 ]; then
  # espeak-ng: the device's own voice for announcements and timers while offline.
  pkgs=(python3 python3-venv python3-dev gcc pkg-config portaudio19-dev libsystemd-dev espeak-ng)
  missing=(); for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# 2. The program: a venv at /opt/voiced with this package in it.
if [ "$DO_VENV" -eq 1 ]; then
  say "building $OPT"
  [ -x "$OPT/bin/python" ] || python3 -m venv "$OPT"
  "$OPT/bin/python" -m pip install -q --upgrade pip
  "$OPT/bin/python" -m pip install -q "$SRC"
  install -m 0644 "$SRC/README.md" "$OPT/README.md"
fi

# 3. The user and groups, then the config directory (needs the voiced group).
install -D -m 0644 "$SRC/systemd/voiced.sysusers" "$SYSUSERS"
systemd-sysusers "${ROOT_ARG[@]}" "$SYSUSERS"
install -D -m 0644 "$SRC/systemd/voiced.tmpfiles" "$TMPFILES"
systemd-tmpfiles "${ROOT_ARG[@]}" --create "$TMPFILES"

# 3b. GPIO access for group gpio, unless a rule of the OS (or an earlier install) covers it.
gpio_rule_present() {
  local f
  for f in "$ROOT"/etc/udev/rules.d/*.rules "$ROOT"/lib/udev/rules.d/*.rules \
           "$ROOT"/usr/lib/udev/rules.d/*.rules; do
    [ -f "$f" ] && [ "$f" != "$UDEV_RULE" ] || continue
    grep -v '^[[:space:]]*#' "$f" | grep 'gpiochip' | grep -q 'GROUP="gpio"' && return 0
  done
  return 1
}
if gpio_rule_present; then
  rm -f "$UDEV_RULE"
  say "an installed udev rule already gives /dev/gpiochip* to group gpio"
else
  install -D -m 0644 "$SRC/systemd/voiced-gpio.rules" "$UDEV_RULE"
  if [ -z "$ROOT" ] && command -v udevadm >/dev/null 2>&1; then
    udevadm control --reload >/dev/null 2>&1 || true
    udevadm trigger --subsystem-match=gpio --subsystem-match=bcm2835-gpiomem >/dev/null 2>&1 || true
  fi
  say "installed /etc/udev/rules.d/60-voiced-gpio.rules (/dev/gpiochip* to group gpio)"
fi

# 4. The key: root-only file, handed to the service by PID 1 (LoadCredential=).
write_key() {  # stdin -> $ETC/api-key, first non-empty line, never echoed
  local key="" line
  while IFS= read -r line || [ -n "$line" ]; do
    line="$(printf '%s' "$line" | tr -d '[:space:]')"
    if [ -n "$line" ]; then key="$line"; break; fi
  done
  [ -n "$key" ] || die "no API key given"
  (umask 077; printf '%s\n' "$key" > "$ETC/api-key.new")
  chown root:root "$ETC/api-key.new"; chmod 0600 "$ETC/api-key.new"
  mv -f "$ETC/api-key.new" "$ETC/api-key"
  say "API key stored in /etc/voiced/api-key (root only)"
}
if [ -n "$KEY_FILE" ]; then
  if [ "$KEY_FILE" = - ]; then write_key; else
    [ -r "$KEY_FILE" ] || die "cannot read $KEY_FILE"; write_key < "$KEY_FILE"; fi
elif [ -f "$ETC/api-key" ]; then
  say "keeping the existing /etc/voiced/api-key"
elif [ "$ASK_KEY" -eq 1 ] && [ -t 0 ]; then
  printf 'Gemini API key (input hidden; empty = use the local offline server): ' >&2
  IFS= read -rs typed || true; echo >&2
  if [ -n "$typed" ]; then printf '%s\n' "$typed" | write_key; fi
  unset typed
fi
if [ ! -f "$ETC/api-key" ]; then
  # LoadCredential= fails the start if the file is missing: leave an empty one; the daemon
  # treats an empty credential as "no key" and says so.
  (umask 077; : > "$ETC/api-key"); chmod 0600 "$ETC/api-key"
  say "no API key: put it in /etc/voiced/api-key (root, mode 0600) and run systemctl restart voiced"
fi

# 5. The configuration, if we ship an example and none is there yet.
if [ ! -f "$ETC/voiced.toml" ] && [ -f "$SRC/systemd/voiced.toml.example" ]; then
  install -m 0640 -o root -g voiced "$SRC/systemd/voiced.toml.example" "$ETC/voiced.toml" 2>/dev/null ||
    install -m 0640 "$SRC/systemd/voiced.toml.example" "$ETC/voiced.toml"
fi

# 6. The unit, enabled at boot.
install -D -m 0644 "$SRC/systemd/voiced.service" "$UNIT"
[ -z "$ROOT" ] && systemctl daemon-reload
"${SYSTEMCTL[@]}" enable voiced.service >/dev/null 2>&1 || die "systemctl enable voiced failed"
if [ "$DO_START" -eq 1 ]; then
  systemctl restart voiced.service || true
  systemctl --no-pager status voiced.service || true
fi
say "installed. See: systemctl status voiced; journalctl -u voiced -f"
