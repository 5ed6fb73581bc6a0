#!/usr/bin/env bash
# One-time (idempotent) set-up of the RAMP workspace on a Debian machine with Python 3.11:
#   venv with the ros-jazzy-* wheels and every pinned dependency -> colcon build -> demo models.
# Re-running is cheap: each step is skipped when its inputs did not change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

log() { printf '[setup] %s\n' "$*"; }

# System libraries: EGL for MuJoCo's offscreen rendering, GL for OpenCV's video I/O.
if ! ldconfig -p | grep -q 'libEGL.so.1' || ! ldconfig -p | grep -q 'libOpenGL.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing EGL/OpenGL runtime libraries (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libopengl0 libgl1 libgles2 libglx-mesa0 libegl-mesa0 >/dev/null
  else
    log "WARNING: libEGL/libOpenGL missing; install libegl1 libopengl0 libgl1 (needed by the simulator)"
  fi
fi

# Browser for the operator console's tests (selenium drives Debian's chromium headless).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium + chromium-driver (apt; browser tests of the operator console)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    log "WARNING: chromium/chromedriver missing; the operator console's browser tests will skip"
  fi
fi

# 1. virtual environment with pinned dependencies
STAMP=.venv/.ramp-requirements.sha256
WANT="$(cat requirements.txt requirements-train.txt constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  log "creating .venv with $("$PYTHON" --version)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt -r requirements-train.txt
  echo "$WANT" > "$STAMP"
else
  log ".venv up to date"
fi

# 1b. Unitree G1 DDS stack: CycloneDDS 0.10.2 (the robot's version) binding built against Debian's
#     C library, and the SDK on top of it; never from plain pip (that brings cyclonedds 11).
log "G1 DDS stack"
bash "$ROOT/scripts/setup_g1_dds.sh"

# 1c. The ROS 2 launch system (ros2 launch, ros2 topic/node/param, launch_testing): the production
#     layout is one process per node under ros2 launch, and the tests run it. Not on PyPI; where
#     ../shared/ros2-launch is present (development machines, CI) it is installed from there, with
#     our pins. Without it everything else works (ramp up needs no launch system) and the launch
#     tests skip, saying how to get it. Robot computers have it from their ROS 2 install.
LAUNCH_DIR="$ROOT/../shared/ros2-launch"
if [ -f "$LAUNCH_DIR/install.sh" ]; then
  log "ROS 2 launch system"
  PIP_CONSTRAINT="$ROOT/constraints.txt" bash "$LAUNCH_DIR/install.sh" "$ROOT/.venv"
else
  log "no ../shared/ros2-launch here: 'ros2 launch' is not installed (ramp up works without it)"
fi

# 2. colcon build (symlink install: edits to Python sources take effect without a rebuild)
export VIRTUAL_ENV="$ROOT/.venv" PATH="$ROOT/.venv/bin:$PATH"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
SRC_HASH="$(find src colcon.meta -type f \( -name 'setup.py' -o -name 'setup.cfg' -o -name 'package.xml' -o -name 'colcon.meta' -o -path '*/config/*' -o -path '*/dds/*' -o -path '*/mjcf/*' \) | sort | xargs cat | sha256sum | cut -d' ' -f1)"
if [ ! -f install/setup.bash ] || [ "$(cat build/.ramp-src.sha256 2>/dev/null)" != "$SRC_HASH" ]; then
  log "colcon build"
  colcon --log-base log build --symlink-install --base-paths src --event-handlers console_direct- >/dev/null
  mkdir -p build && echo "$SRC_HASH" > build/.ramp-src.sha256
else
  log "workspace build up to date"
fi

# 3. demo models (trained and exported by our own script; no download)
# shellcheck disable=SC1091
source "$ROOT/env.sh"
if ! ramp-train verify "$RAMP_MODEL_DIR/demo" >/dev/null 2>&1; then
  log "exporting demo models to $RAMP_MODEL_DIR/demo"
  ramp-train export-demo --out "$RAMP_MODEL_DIR/demo"
else
  log "demo models present and valid"
fi
if ! ramp-train verify "$RAMP_MODEL_DIR/g1" >/dev/null 2>&1; then
  log "exporting an untrained G1 pair (holds position) to $RAMP_MODEL_DIR/g1"
  ramp-train export-untrained --robot-config "$ROOT/src/ramp_bringup/config/g1.yaml" \
    --out "$RAMP_MODEL_DIR/g1"
fi
log "done. Use the workspace with: source env.sh"
