# Source this to use the workspace:  source env.sh
# Order matters: AMENT_PREFIX_PATH must point at the venv before the workspace overlay is sourced.
RAMP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
export RAMP_ROOT
export VIRTUAL_ENV="$RAMP_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
if [ -f "$RAMP_ROOT/install/setup.bash" ]; then
  # colcon's scripts read unset variables: relax `set -u` while sourcing them
  case $- in *u*) _ramp_nounset=1; set +u ;; *) _ramp_nounset= ;; esac
  # shellcheck disable=SC1091
  source "$RAMP_ROOT/install/setup.bash"
  [ -n "$_ramp_nounset" ] && set -u
  unset _ramp_nounset
fi
# console scripts of ament_python packages live in lib/<pkg>; put the two CLIs on PATH
export PATH="$RAMP_ROOT/install/ramp_bringup/lib/ramp_bringup:$RAMP_ROOT/install/ramp_training/lib/ramp_training:$RAMP_ROOT/install/ramp_hilr_teleop/lib/ramp_hilr_teleop:$PATH"
export RAMP_MODEL_DIR="${RAMP_MODEL_DIR:-$RAMP_ROOT/models}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# The development defaults of `ramp up` and the launch files (domain 42, discovery on this computer
# only), so `ros2 topic list`, `ros2 param get ...` from this shell see the stack; already-set
# values win (a robot install chooses its own).
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
if [ -z "${ROS_AUTOMATIC_DISCOVERY_RANGE:-}" ] && [ -z "${ROS_LOCALHOST_ONLY:-}" ]; then
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
fi
