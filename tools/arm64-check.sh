#!/usr/bin/env bash
# The README's demo command in a 64-bit ARM Debian bookworm userland, on an x86_64 machine.
#
#   sudo bash tools/arm64-check.sh                 # run it, print the result (markdown)
#   sudo bash tools/arm64-check.sh --update-docs   # ... and put it into docs/proving.md
#
# How (see ../shared/REAL_SYSTEMS.md "A 64-bit ARM userland"): qemu-user-static runs aarch64
# binaries through binfmt_misc; the handler is registered with flags OCPF (C: credentials come
# from the binary, as on real hardware, so `sudo` works inside). debootstrap --arch=arm64 builds a
# bookworm rootfs once and caches it (default /var/cache/voiced-arm64/rootfs). Inside it, a user
# `pi` with passwordless sudo (as Raspberry Pi OS has) runs `bash tools/bootstrap.sh demo` from a
# fresh copy of this working tree, with an empty pip cache, exactly as the README says. The check
# records which Python packages came as wheels and which pip had to build (from pip's log), how
# long each step took, and whether `voiced demo` passed WITH ITS DEFAULTS.
#
# Emulation makes the CPU ~10-30x slower than the host: a pessimistic stand-in for a slow Pi,
# which is the point (the demo must pick a time scale such a machine can keep). Only relative
# timings mean anything. It takes ~15-25 min; it is NOT run in CI.
#
# Options:
#   --root DIR        the rootfs cache (default /var/cache/voiced-arm64/rootfs)
#   --rebuild         delete the cached rootfs first
#   --update-docs     replace the section between <!-- arm64:start --> and <!-- arm64:end -->
#                     in docs/proving.md with the result
#   --report-only     do not run anything: report on the last run (its files are kept)
#   --demo-args "..." extra arguments for `voiced demo` (default: none — the defaults are the check)
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT=/var/cache/voiced-arm64/rootfs
REBUILD=0
REPORT_ONLY=0
UPDATE_DOCS=0
DEMO_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; shift 2;;
    --rebuild) REBUILD=1; shift;;
    --update-docs) UPDATE_DOCS=1; shift;;
    --report-only) REPORT_ONLY=1; shift;;
    --demo-args) DEMO_ARGS="$2"; shift 2;;
    *) echo "arm64-check: unknown option $1" >&2; exit 2;;
  esac
done
say() { echo "arm64-check: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (it needs binfmt_misc, debootstrap and chroot)"
[ "$(uname -m)" = x86_64 ] || say "host is $(uname -m), not x86_64: going on anyway"

# 1. qemu-user-static + binfmt_misc, flags OCPF.
need=()
for p in qemu-user-static binfmt-support debootstrap; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
BINFMT=/proc/sys/fs/binfmt_misc
[ -e "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT"
[ -e "$BINFMT/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64 \
  || die "could not register qemu-aarch64 with binfmt_misc"
flags="$(sed -n 's/^flags: *//p' "$BINFMT/qemu-aarch64")"
if [[ "$flags" != *C* ]]; then
  # Debian registers with PF; without C, setuid binaries (sudo) run with the caller's uid.
  interp="$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")"
  magic="$(sed -n 's/^magic //p' "$BINFMT/qemu-aarch64")"
  mask="$(sed -n 's/^mask //p' "$BINFMT/qemu-aarch64")"
  hex() { sed 's/../\\x&/g' <<<"$1"; }
  echo -1 > "$BINFMT/qemu-aarch64"
  printf ':qemu-aarch64:M::%s:%s:%s:OCPF' "$(hex "$magic")" "$(hex "$mask")" "$interp" \
    > "$BINFMT/register"
  say "re-registered qemu-aarch64 with flags OCPF (was: $flags)"
fi

# 2. The rootfs, built once.
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
[ -n "$mirror" ] || mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
security="${mirror%/debian}/debian-security"
[ "$REBUILD" -eq 0 ] || { say "removing $ROOT"; rm -rf --one-file-system "$ROOT"; }
t0=$(date +%s)
if [ ! -e "$ROOT/.voiced-rootfs-ok" ]; then
  say "debootstrap arm64 bookworm into $ROOT from $mirror (~5 min)"
  rm -rf --one-file-system "$ROOT"; mkdir -p "$ROOT"
  debootstrap --arch=arm64 --variant=minbase \
    --include=systemd,systemd-sysv,dbus,ca-certificates,procps,sudo \
    bookworm "$ROOT" "$mirror" >"$ROOT.debootstrap.log" 2>&1 \
    || { tail -n 30 "$ROOT.debootstrap.log" >&2; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
  cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
  chroot "$ROOT" useradd -m -s /bin/bash -G sudo pi
  echo 'pi ALL=(ALL) NOPASSWD:ALL' > "$ROOT/etc/sudoers.d/010_pi-nopasswd"
  chmod 0440 "$ROOT/etc/sudoers.d/010_pi-nopasswd"
  touch "$ROOT/.voiced-rootfs-ok"
fi
rootfs_s=$(( $(date +%s) - t0 ))

# 3. Host CA certificates (a TLS-intercepting proxy may stand between us and PyPI), DNS.
cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/hosts "$ROOT/etc/hosts"

mounted=()
cleanup() {
  local i
  for (( i=${#mounted[@]}-1; i>=0; i-- )); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for m in proc sys dev dev/pts; do
  mountpoint -q "$ROOT/$m" || { mount --bind "/$m" "$ROOT/$m"; mounted+=("$ROOT/$m"); }
done
[ "$REPORT_ONLY" -eq 1 ] || chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || true

# 4. A fresh copy of the working tree (tracked and untracked files, nothing ignored), as pi.
HOME_PI="$ROOT/home/pi"
if [ "$REPORT_ONLY" -eq 0 ]; then
  rm -rf --one-file-system "$HOME_PI/voiced" "$HOME_PI/.cache/pip"
  mkdir -p "$HOME_PI/voiced"
  (cd "$SRC" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - --ignore-failed-read) \
    | tar -xf - -C "$HOME_PI/voiced"
  chroot "$ROOT" chown -R pi:pi /home/pi
fi

# 5. The README's demo command, as the user pi.
arch_in="$(chroot "$ROOT" uname -m)"
out="$ROOT.demo.out"
if [ "$REPORT_ONLY" -eq 0 ]; then
  say "running 'bash tools/bootstrap.sh demo' as pi in the $arch_in userland"
  t1=$(date +%s)
  set +e
  chroot "$ROOT" /usr/bin/sudo -u pi -H env -i HOME=/home/pi USER=pi \
    PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    bash -c "cd ~/voiced && bash tools/bootstrap.sh demo --json $DEMO_ARGS" >"$out" 2>&1
  rc=$?
  set -e
  total_s=$(( $(date +%s) - t1 ))
  printf 'rc=%s\ntotal_s=%s\nrootfs_s=%s\nrun_at=%q\ncommit=%q\n' "$rc" "$total_s" "$rootfs_s" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(cd "$SRC" && git rev-parse --short HEAD)$(cd "$SRC" && git diff --quiet HEAD 2>/dev/null \
       || echo ' with local changes')" > "$ROOT.result"
fi
[ -f "$ROOT.result" ] || die "no earlier run to report on ($ROOT.result)"
. "$ROOT.result"

# 6. What came as a wheel, what was built. pip prints "Downloading NAME-VER-TAGS.whl" for
# a wheel from the index and "Building wheel for NAME" for a source build.
venv="$HOME_PI/voiced/.venv"
piplog="$venv/pip.log"
pip_s="$(sed -n 's/^pip install seconds: //p' "$venv/bootstrap-times" 2>/dev/null | paste -sd+ | bc 2>/dev/null || true)"
wheels="$(grep -oE 'Downloading [^ ]+\.whl' "$piplog" 2>/dev/null | sed -E 's/^Downloading //; s#.*/##' \
  | sed -E 's/^([A-Za-z0-9_.]+)-([^-]+)-.*-([^-]+)\.whl$/\1 \2 (\3)/' | sort -u | paste -sd, | sed 's/,/, /g')"
built="$(grep -oE 'Building wheel for [^ ]+' "$piplog" 2>/dev/null | sed 's/Building wheel for //' \
  | sort -u | paste -sd, | sed 's/,/, /g')"
result_line="$(grep -E '^result: ' "$out" | tail -n1)"
verdict=FAIL; [ "$rc" -eq 0 ] && [ "$result_line" = "result: PASS" ] && verdict=PASS
[ -n "$wheels" ] || wheels="none found in the pip log"
[ -n "$built" ] || built="none"
if [ "$rootfs_s" -gt 5 ]; then rootfs_note="built by debootstrap in ${rootfs_s} s"; else rootfs_note="cached"; fi

report_text() {
  echo "## arm64 install check (\`sudo bash tools/arm64-check.sh\`, not run in CI)"
  echo
  echo "Run on $run_at from commit $commit: Debian bookworm arm64 (\`$arch_in\`) under"
  echo "qemu-user-static on $(uname -m) ($(nproc) cores, shared with other work), user \`pi\` with"
  echo "passwordless sudo, empty pip cache, the README's command \`bash tools/bootstrap.sh demo\`"
  echo "(\`--json\` added to read the totals), so \`voiced demo\` with its defaults. Emulation is"
  echo "many times slower than the host: only relative timings mean anything."
  echo
  echo "| what | result |"
  echo "|---|---|"
  echo "| rootfs (\`/var/cache/voiced-arm64\`) | $rootfs_note |"
  echo "| \`bash tools/bootstrap.sh demo\` in all (apt, venv, pip, demo) | ${total_s} s, exit code $rc |"
  echo "| pip installs (emulated) | ${pip_s:-?} s |"
  echo "| came as wheels from PyPI | $wheels |"
  echo "| built from source here | $built |"
  echo "| \`voiced demo\` | **$verdict** |"
  echo
  echo '```'
  grep -E '^(voiced demo —|  scale:|turns [0-9]|frames captured|reply audio:|slow:|error:|result:)' "$out"
  echo '```'
}
report="$(report_text)"
echo "$report"
if [ "$UPDATE_DOCS" -eq 1 ]; then
  doc="$SRC/docs/proving.md"
  REPORT="$report" python3 - "$doc" <<'PYEOF'
import os, sys, pathlib
path = pathlib.Path(sys.argv[1])
text = path.read_text() if path.exists() else ""
start, end = "<!-- arm64:start -->", "<!-- arm64:end -->"
section = start + "\n" + os.environ["REPORT"] + "\n" + end
if start in text and end in text:
    head, rest = text.split(start, 1)
    text = head + section + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
path.write_text(text)
PYEOF
  say "wrote the section into $doc"
fi
[ "$verdict" = PASS ]
