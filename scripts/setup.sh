#!/usr/bin/env bash
# One-command developer setup for ros_pgpt, no system ROS needed.
#
#   bash scripts/setup.sh
#
# Creates .venv/ at the repository root (from nothing, or updates it) with:
#   1. venv      python -m venv (Python 3.10-3.13)
#   2. torch     torch==2.13.0, pinned, FIRST (held by a constraints file after)
#   3. ros       ROS 2 Kilted wheels (requirements-ros.txt)
#   4. python    ML + test stack (requirements.txt, requirements-nodeps.txt),
#                scikit-image among them: its wheel's photographs are backgrounds
#   5. cmakefix  rewrite the ROS wheels' hard-coded include dirs (idempotent)
#   6. vision_msgs build interfaces/vision_msgs (the vision_msgs messages, no
#                  wheel exists) with CMake into .venv
#   7. interfaces  build msg/ + srv/ with CMake (ament_cmake, prefix = .venv)
#                  and put the generated ros_pgpt.msg / ros_pgpt.srv next to
#                  the hand-written modules in ros_pgpt/ (gitignored)
#   8. package   editable install of ros_pgpt (+ the `ros-pgpt` command)
#   9. verify    import check from outside the repo; the photographs load
#  10. export    the shipped checkpoint to ONNX (the node's fastest CPU backend)
#
# Each step records a hash of its inputs under .venv/.ros_pgpt/; a re-run skips
# steps whose inputs did not change (a no-op re-run takes about a second). The
# file .venv/.ros_pgpt/complete is removed before any work and written LAST,
# so an interrupted or failed setup never looks complete.
#
# Environment:
#   PYTHON                 interpreter to create the venv with (default python3)
#   ROS_PGPT_VENV          venv location (default <repo>/.venv)
#   ROS_PGPT_TORCH_INDEX   extra pip index for torch, e.g. the CPU builds on a
#                          machine where plain PyPI would give a CUDA build:
#                          ROS_PGPT_TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   ROS_PGPT_TORCH_VERSION torch version to pin (default 2.13.0)
#   ROS_PGPT_FORCE=1       redo every step
#
# Options:
#   --check   only report: exit 0 if the venv is complete and up to date,
#             1 otherwise; changes nothing
set -Eeuo pipefail

CHECK_ONLY=0
case "${1:-}" in
  --check) CHECK_ONLY=1 ;;
  -h|--help) sed -n '2,/^set -E/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
  "") ;;
  *) echo "setup.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROS_PGPT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${ROS_PGPT_TORCH_VERSION:-2.13.0}"
TORCH_INDEX="${ROS_PGPT_TORCH_INDEX:-}"
STATE="$VENV/.ros_pgpt"
BUILD="$STATE/build"
PY="$VENV/bin/python"

STEP="start"
T0=$(date +%s)
on_error() {
  local rc=$?
  echo "" >&2
  echo "setup.sh: FAILED in step '$STEP' (exit code $rc)." >&2
  echo "setup.sh: the environment in $VENV is NOT complete; fix the error above and re-run." >&2
  exit "$rc"
}
trap on_error ERR

log() { echo "[setup] $*"; }
die() { echo "setup.sh: step '$STEP': $*" >&2; exit 1; }

hash_of() {  # hash_of <string...>: sha256 of the given strings and files' contents
  local item
  for item in "$@"; do
    if [[ -f "$item" ]]; then
      printf 'file %s\n' "${item#"$ROOT"/}"; cat "$item"
    else
      printf 'str %s\n' "$item"
    fi
  done | sha256sum | cut -d' ' -f1
}
step_done() { [[ "${ROS_PGPT_FORCE:-0}" != 1 && -f "$STATE/$1.stamp" && "$(cat "$STATE/$1.stamp")" == "$2" ]]; }
mark_done() { echo "$2" > "$STATE/$1.stamp"; }

# Only one setup at a time per venv (several developers share a tree).
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
if ! flock -n 9; then
  log "another setup is running on $VENV; waiting for it"
  flock 9
fi

# ---------------------------------------------------------------- preflight
STEP="preflight"
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found; install Python >= 3.10 or set PYTHON=/path/to/python3"
"$PYTHON" - <<'EOF' || die "need CPython 3.10-3.13 (ROS 2 wheels exist for cp310..cp313); set PYTHON=..."
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)
EOF
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# Every input of every step, hashed once (cheap).
H_VENV=$(hash_of "python $PYVER" "$("$PYTHON" -c 'import sys; print(sys.base_prefix)')")
H_TORCH=$(hash_of "$H_VENV" "torch==$TORCH_VERSION" "index=$TORCH_INDEX")
H_ROS=$(hash_of "$H_TORCH" "$ROOT/requirements-ros.txt")
H_PYDEPS=$(hash_of "$H_ROS" "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt")
H_VISION=$(hash_of "$H_PYDEPS" "$ROOT/scripts/fix_ros_cmake.py" "$ROOT"/interfaces/vision_msgs/CMakeLists.txt \
  "$ROOT"/interfaces/vision_msgs/package.xml "$ROOT"/interfaces/vision_msgs/msg/*.msg)
H_IFACE=$(hash_of "$H_VISION" "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/scripts/fix_ros_cmake.py" \
  "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv)
# pyproject.toml is tool config only (pytest etc.), not an input of the install.
H_PKG=$(hash_of "$H_IFACE" "$ROOT/setup.py" "$ROOT/ros_pgpt/__init__.py")
# The shipped checkpoint's ONNX export: its weights and the export code.
CHECKPOINT="$ROOT/ros_pgpt/checkpoints/default"
H_EXPORT=$(hash_of "$H_PKG" "$CHECKPOINT"/model.safetensors "$CHECKPOINT"/config.yaml "$ROOT"/export/*.py)

generated_present() {
  [[ -f "$ROOT/ros_pgpt/msg/__init__.py" && -f "$ROOT/ros_pgpt/srv/__init__.py" ]] &&
    compgen -G "$ROOT/ros_pgpt/ros_pgpt_s__rosidl_typesupport_c*.so" >/dev/null
}

# Fast path: everything done with these exact inputs.
if [[ -x "$PY" && -f "$STATE/complete" && "$(cat "$STATE/complete")" == "$H_EXPORT" && "${ROS_PGPT_FORCE:-0}" != 1 ]] \
   && generated_present && [[ -f "$CHECKPOINT/export/manifest.json" || -n "${ROS_PGPT_EXPORT_DIR:-}" ]]; then
  log "up to date: $VENV (ROS_PGPT_FORCE=1 to redo)"
  exit 0
fi
if [[ "$CHECK_ONLY" == 1 ]]; then
  log "NOT up to date: $VENV (run: bash scripts/setup.sh)"
  exit 1
fi

if [[ -z "${ROS_PGPT_SKIP_TOOLCHECK:-}" ]]; then
  for tool in cc c++ make; do
    command -v "$tool" >/dev/null || die "'$tool' not found: install a C/C++ toolchain and CMake (Debian/Ubuntu: apt-get install build-essential cmake)"
  done
  "$PYTHON" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
    || die "Python.h not found: install the Python headers (Debian/Ubuntu: apt-get install python$PYVER-dev)"
fi

# ---------------------------------------------------------------- 1. venv
STEP="venv"
if [[ -x "$PY" ]] && ! "$PY" -c 'pass' 2>/dev/null; then
  die "$VENV exists but its python is broken; remove it (rm -rf $VENV) and re-run"
fi
if ! step_done venv "$H_VENV" || [[ ! -x "$PY" ]]; then
  if [[ -x "$PY" ]]; then
    have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ "$have" == "$PYVER" ]] || die "$VENV uses Python $have but $PYTHON is $PYVER; remove $VENV or set PYTHON"
  else
    log "creating venv $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV" || die "python -m venv failed (Debian/Ubuntu: apt-get install python$PYVER-venv)"
  fi
  mkdir -p "$STATE"
  rm -f "$STATE/complete"
  mark_done venv "$H_VENV"
fi
mkdir -p "$STATE"
rm -f "$STATE/complete"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)

# ---------------------------------------------------------------- 2. torch
STEP="torch"
if ! step_done torch "$H_TORCH"; then
  log "installing torch==$TORCH_VERSION${TORCH_INDEX:+ (extra index $TORCH_INDEX)}"
  extra=()
  [[ -n "$TORCH_INDEX" ]] && extra=(--extra-index-url "$TORCH_INDEX")
  "${PIP[@]}" "${extra[@]}" "torch==$TORCH_VERSION"
  mark_done torch "$H_TORCH"
fi
# Hold torch (and its exact build) for every later install.
"$PY" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' > "$STATE/constraints.txt"

# ---------------------------------------------------------------- 3. ros
STEP="ros"
if ! step_done ros "$H_ROS"; then
  log "installing ROS 2 wheels (requirements-ros.txt)"
  "${PIP[@]}" -c "$STATE/constraints.txt" -r "$ROOT/requirements-ros.txt"
  mark_done ros "$H_ROS"
fi

# ---------------------------------------------------------------- 4. python deps
STEP="python-deps"
if ! step_done pydeps "$H_PYDEPS"; then
  log "installing Python dependencies (requirements.txt)"
  "${PIP[@]}" -c "$STATE/constraints.txt" -r "$ROOT/requirements.txt"
  "${PIP[@]}" --no-deps -r "$ROOT/requirements-nodeps.txt"
  "$PY" -m pip check >/dev/null || { "$PY" -m pip check || true; log "warning: pip check reports conflicts (see above)"; }
  mark_done pydeps "$H_PYDEPS"
fi

# ---------------------------------------------------------------- 5-7. interfaces
STEP="cmakefix"
"$PY" "$ROOT/scripts/fix_ros_cmake.py" "$VENV" >/dev/null

# CMake >= 3.20 (rosidl needs it); take it from PyPI when the system has none.
find_cmake() {
  CMAKE=cmake
  if ! command -v cmake >/dev/null || ! cmake --version | head -n1 | awk '{split($3, v, "."); exit !(v[1] > 3 || (v[1] == 3 && v[2] >= 20))}'; then
    [[ -x "$VENV/bin/cmake" ]] || { log "no CMake >= 3.20 on PATH: installing it from PyPI into the venv"; "${PIP[@]}" "cmake>=3.22,<4"; }
    CMAKE="$VENV/bin/cmake"
  fi
}

# cmake_install <source dir> <build dir> <Python install dir, relative to the venv>:
# configure, build and install one ament_cmake package into the venv (logs in the build dir).
cmake_install() {
  local src="$1" build="$2" pydir="$3" generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  if [[ -f "$build/CMakeCache.txt" ]] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}\$" "$build/CMakeCache.txt"; then
    rm -rf "$build"
  fi
  mkdir -p "$build"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  "$CMAKE" -S "$src" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DPYTHON_INSTALL_DIR="$pydir" \
    -DBUILD_TESTING=OFF > "$build/cmake-configure.log" 2>&1 \
    || { tail -n 40 "$build/cmake-configure.log" >&2; die "cmake configure failed (full log: $build/cmake-configure.log)"; }
  "$CMAKE" --build "$build" -j "$(nproc)" > "$build/cmake-build.log" 2>&1 \
    || { tail -n 40 "$build/cmake-build.log" >&2; die "cmake build failed (full log: $build/cmake-build.log)"; }
  "$CMAKE" --install "$build" > "$build/cmake-install.log" 2>&1 \
    || { tail -n 40 "$build/cmake-install.log" >&2; die "cmake install failed (full log: $build/cmake-install.log)"; }
}

STEP="vision_msgs"
if ! step_done vision_msgs "$H_VISION" || ! (cd / && "$PY" -c 'import vision_msgs.msg' 2>/dev/null); then
  log "building interfaces/vision_msgs with CMake into $VENV"
  find_cmake
  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  cmake_install "$ROOT/interfaces/vision_msgs" "$STATE/build-vision_msgs" "${SITE#"$VENV"/}"
  mark_done vision_msgs "$H_VISION"
fi

STEP="interfaces"
if ! step_done interfaces "$H_IFACE" || ! generated_present; then
  log "building interfaces (msg/, srv/) with CMake into $VENV"
  GEN="$STATE/python"   # where CMake installs the Python side (not on sys.path)
  rm -rf "$GEN"
  find_cmake
  cmake_install "$ROOT" "$BUILD" ".ros_pgpt/python"
  # The generated Python (msg/, srv/ and the C extension modules) goes next to
  # the hand-written modules in the source tree (gitignored), which the
  # editable install below puts on sys.path: ONE importable package.
  # The C extensions load lib*.so from $VENV/lib (found through the
  # ros-wheels-bootstrapper's LD_LIBRARY_PATH).
  [[ -f "$GEN/ros_pgpt/msg/__init__.py" && -f "$GEN/ros_pgpt/srv/__init__.py" ]] \
    || die "CMake install did not produce $GEN/ros_pgpt/{msg,srv}"
  rm -rf "$ROOT/ros_pgpt/msg" "$ROOT/ros_pgpt/srv"
  rm -f "$ROOT"/ros_pgpt/ros_pgpt_s__*.so
  cp -r "$GEN/ros_pgpt/msg" "$GEN/ros_pgpt/srv" "$ROOT/ros_pgpt/"
  cp "$GEN"/ros_pgpt/ros_pgpt_s__*.so "$ROOT/ros_pgpt/"
  # The hand-written copy CMake also installed there is not used in the venv.
  rm -rf "$GEN"
  mark_done interfaces "$H_IFACE"
fi

# ---------------------------------------------------------------- 8. package
STEP="package"
if ! step_done package "$H_PKG"; then
  log "installing ros_pgpt (editable) and the ros-pgpt command"
  "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"
  mark_done package "$H_PKG"
fi

# ---------------------------------------------------------------- 9. verify
STEP="verify"
(cd / && "$PY" - <<'EOF') || die "the installed environment does not import (see above)"
import rclpy  # noqa: F401
import torch  # noqa: F401
from rclpy.serialization import serialize_message, deserialize_message
from ros_pgpt.msg import GroundedObject, GroundedObjectArray  # noqa: F401
from vision_msgs.msg import Detection2DArray, Detection3DArray  # noqa: F401
from visualization_msgs.msg import MarkerArray  # noqa: F401
from ros_pgpt.srv import Query
import ros_pgpt.cli  # noqa: F401
req = Query.Request(prompt='check', masks=True)
assert deserialize_message(serialize_message(req), Query.Request).prompt == 'check'
# The photographs behind training and evaluation scenes ship in scikit-image's wheel.
from ros_pgpt.data.camera import HELD_OUT_PHOTOS, TRAIN_PHOTOS, photo
for name in TRAIN_PHOTOS + HELD_OUT_PHOTOS:
    assert photo(name).ndim == 3, name
EOF
[[ -x "$VENV/bin/ros-pgpt" ]] || die "$VENV/bin/ros-pgpt was not installed"

# ---------------------------------------------------------------- 10. export
# The node, the demo and the Python API pick the fastest backend ("auto"); on a
# CPU that is ONNX Runtime int8, which needs this export (they would otherwise
# make it on first start).
STEP="export"
if ! step_done export "$H_EXPORT" || [[ ! -f "$CHECKPOINT/export/manifest.json" && -z "${ROS_PGPT_EXPORT_DIR:-}" ]]; then
  log "exporting the shipped checkpoint for ONNX Runtime (about a minute)"
  (cd / && "$PY" - "$CHECKPOINT" <<'EOF') || die "exporting $CHECKPOINT failed (see above)"
import logging, sys
from pathlib import Path
from ros_pgpt.inference.backends import ensure_export
from ros_pgpt.export.artifacts import default_export_dir
logging.basicConfig(level=logging.INFO, format="[setup] %(message)s")
ensure_export(Path(sys.argv[1]), default_export_dir(Path(sys.argv[1])))
EOF
  mark_done export "$H_EXPORT"
fi

echo "$H_EXPORT" > "$STATE/complete"
log "done in $(( $(date +%s) - T0 )) s: $VENV  (try: $VENV/bin/ros-pgpt info)"
