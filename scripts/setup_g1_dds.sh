#!/usr/bin/env bash
# Idempotent set-up of the Unitree G1 DDS path in the repo venv (.venv):
#   Debian's CycloneDDS 0.10.2 C library (apt: cyclonedds-dev)
#   -> a CYCLONEDDS_HOME folder whose lib/include/bin link into the Debian layout
#   -> the Python binding cyclonedds==0.10.2 built from source against it
#   -> the Unitree SDK (unitree-sdk2py-dimos, without its cyclonedds>=11 dependency).
#
# Why 0.10.x: the G1 runs CycloneDDS 0.10.x, and a 0.11+ participant does not exchange samples
# with it (see docs/g1.md). Called by scripts/setup.sh; safe to run again (steps already done are
# skipped). Needs root (or sudo) only when cyclonedds-dev is not installed yet.
#
# Environment: VENV (default <repo>/.venv), CYCLONEDDS_HOME (default $VENV/cyclonedds-0.10.2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
CYCLONE_VERSION=0.10.2
SDK_SPEC="unitree-sdk2py-dimos==1.0.3"
HOME_DIR="${CYCLONEDDS_HOME:-$VENV/cyclonedds-$CYCLONE_VERSION}"

log() { printf '[setup_g1_dds] %s\n' "$*"; }
die() {
  printf '[setup_g1_dds] ERROR: %s\n' "$*" >&2
  exit 1
}

PY="$VENV/bin/python"
[ -x "$PY" ] || die "no Python venv at $VENV (run scripts/setup.sh first, or set VENV=...)"

binding_version() {
  # Prints the installed binding's version when it imports and loads the C library, else nothing.
  "$PY" - <<'EOF' 2>/dev/null || true
import importlib.metadata as md
import cyclonedds.core  # loads libddsc: fails when the C library is missing
print(md.version("cyclonedds"))
EOF
}

sdk_ok() {
  "$PY" -c 'import unitree_sdk2py.core.channel, unitree_sdk2py.idl.unitree_hg.msg.dds_' \
    >/dev/null 2>&1
}

if [ "$(binding_version)" = "$CYCLONE_VERSION" ] && sdk_ok; then
  log "cyclonedds $CYCLONE_VERSION and the Unitree SDK already installed in $VENV"
  exit 0
fi

# 1. The C library, headers and idlc from Debian (bookworm ships 0.10.2).
if ! dpkg-query -W -f='${Status}' cyclonedds-dev 2>/dev/null | grep -q 'install ok installed'; then
  command -v apt-get >/dev/null || die "apt-get not found: install CycloneDDS $CYCLONE_VERSION \
(C library + headers) and set CYCLONEDDS_HOME to its install prefix"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "cyclonedds-dev is missing and this is not root: run \
'apt-get install cyclonedds-dev' as root, then this script again"
    SUDO="sudo"
  fi
  log "installing cyclonedds-dev (apt)"
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cyclonedds-dev >/dev/null \
    || die "apt-get install cyclonedds-dev failed"
fi
C_VERSION="$(dpkg-query -W -f='${Version}' cyclonedds-dev)"
case "$C_VERSION" in
  0.10.*) ;;
  *) die "cyclonedds-dev is $C_VERSION; the G1 needs the 0.10.x C library (Debian bookworm)" ;;
esac
MULTIARCH="$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)"
LIBDIR="/usr/lib/$MULTIARCH"
[ -e "$LIBDIR/libddsc.so" ] || die "$LIBDIR/libddsc.so missing although cyclonedds-dev is installed"
command -v gcc >/dev/null || die "gcc not found: the binding is compiled from source (apt-get install gcc)"

# 2. A CYCLONEDDS_HOME the binding's build recognises (lib/, include/, bin/).
log "CYCLONEDDS_HOME layout at $HOME_DIR"
mkdir -p "$HOME_DIR/lib" "$HOME_DIR/bin"
ln -sfn /usr/include "$HOME_DIR/include"
for lib in "$LIBDIR"/libddsc.so* "$LIBDIR"/libcycloneddsidl.so*; do
  ln -sf "$lib" "$HOME_DIR/lib/"
done
ln -sfn "$LIBDIR/cmake" "$HOME_DIR/lib/cmake"
if command -v idlc >/dev/null; then ln -sf "$(command -v idlc)" "$HOME_DIR/bin/idlc"; fi

# 3. The binding from source, against that library (a wheel from PyPI would bring its own).
if [ "$(binding_version)" != "$CYCLONE_VERSION" ]; then
  log "building cyclonedds==$CYCLONE_VERSION from source against the Debian library"
  CYCLONEDDS_HOME="$HOME_DIR" CFLAGS="-I/usr/include/$MULTIARCH ${CFLAGS:-}" \
    "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
    --no-binary cyclonedds "cyclonedds==$CYCLONE_VERSION" \
    || die "building cyclonedds==$CYCLONE_VERSION failed (see pip's output above)"
fi

# 4. The SDK without its dependency pins (they would pull cyclonedds 11), plus what it imports.
if ! sdk_ok; then
  log "installing $SDK_SPEC (--no-deps)"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps "$SDK_SPEC" \
    || die "pip install $SDK_SPEC failed"
fi

# 5. Verify.
GOT="$(binding_version)"
[ "$GOT" = "$CYCLONE_VERSION" ] || die "cyclonedds does not import from $VENV (got '${GOT}'); \
try: CYCLONEDDS_HOME=$HOME_DIR $PY -c 'import cyclonedds.core'"
sdk_ok || die "unitree_sdk2py does not import: $("$PY" -c 'import unitree_sdk2py.core.channel' 2>&1 | tail -1)"
log "ok: cyclonedds $GOT (C library $C_VERSION), $SDK_SPEC"
