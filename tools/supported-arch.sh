# Sourced by tools/bootstrap.sh and tools/install.sh: refuse a 32-bit userland with one clear
# message. Decision (README "Parts"): voiced supports 64-bit Raspberry Pi OS / Debian 12 only
# (arm64, and amd64 for laptops and CI). On 32-bit Raspberry Pi OS (armhf, `armv7l`) PyPI has
# no numpy wheel: pip would build numpy from source, which needs g++ and takes hours on a
# Zero 2 W, and apt's python3-numpy through a --system-site-packages venv is a path we do not
# test. Every Pi voiced supports (3, 4, 5, Zero 2 W) runs the 64-bit image.
# The userland is what matters, not the kernel: 32-bit Pi OS boots a 64-bit kernel on a Pi 4/5,
# where `uname -m` says aarch64, so ask dpkg (then the C long size) instead.
voiced_check_arch() {
  local arch
  arch="$(dpkg --print-architecture 2>/dev/null || true)"
  if [ -z "$arch" ]; then
    case "$(getconf LONG_BIT 2>/dev/null || echo 64)" in 32) arch=32-bit;; *) arch=64-bit;; esac
  fi
  case "$arch" in
    arm64|amd64|64-bit|ppc64el|riscv64|s390x) return 0;;
  esac
  echo "$1: this is a 32-bit system ($arch): voiced needs a 64-bit OS." >&2
  echo "$1: PyPI has no numpy for 32-bit ARM (building it takes hours and needs g++)." >&2
  echo "$1: Flash \"Raspberry Pi OS (64-bit)\" Bookworm — every supported Pi (3, 4, 5, Zero 2 W) runs it." >&2
  return 1
}
