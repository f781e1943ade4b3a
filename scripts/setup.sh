#!/usr/bin/env bash
# Everything Deep Musician needs on a fresh Debian 12/13 or Ubuntu 24.04 machine, in a virtual
# environment (the system Python refuses pip installs: PEP 668).
#   bash scripts/setup.sh                 # .venv in this checkout: the package and the renderer
#   bash scripts/setup.sh --dev           # plus the test tools and what the plugin builds with
#   bash scripts/setup.sh --venv DIR      # the virtual environment in DIR instead
# then `. .venv/bin/activate` (or call .venv/bin/deep-musician directly).
# The environment is made with $PYTHON, else the first python3 on PATH (the system one on a stock
# machine, a pyenv one where that comes first); an existing one is reused.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
cd "$(dirname "$0")/.."

dev=0
venv=".venv"
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=1 ;;
    --venv) venv="${2:?--venv needs a folder}"; shift ;;
    *) echo "setup: unknown option $1; use --dev and/or --venv DIR" >&2; exit 2 ;;
  esac
  shift
done
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: no $python on PATH; install Python 3.10 or newer (apt-get install python3)" >&2
  exit 2
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_install() {  # Debian packages, skipped when present
  local missing=()
  for d in "$@"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no apt-get; install ${missing[*]} yourself" >&2
    return 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The virtual environment. Debian's python3 lacks venv's ensurepip until python3-venv is installed.
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -c "import ensurepip, venv" >/dev/null 2>&1; then
    apt_install python3-venv || { echo "setup: $python cannot make a virtual environment" >&2; exit 2; }
  fi
  echo "setup: making the virtual environment $venv with $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)

# Debian packages: FluidSynth and a General MIDI soundfont (for --render); with --dev also what the
# plugin stub builds with (DPF, libzmq + cppzmq, msgpack-c++, a C++ toolchain).
debs=(fluidsynth fluid-soundfont-gm)
# the performance sets' other performers: two more General MIDI fonts (6 MB and 40 MB)
[ $dev -eq 1 ] && debs+=(timgm6mb-soundfont musescore-general-soundfont-small)
# MuseScore 3: the test that renders an arranged score to a page (issue 17, faithful scores)
[ $dev -eq 1 ] && debs+=(musescore3)
[ $dev -eq 1 ] && debs+=(dpf-source libzmq3-dev cppzmq-dev libmsgpack-cxx-dev pkg-config g++ make jackd2 jalv libjack-jackd2-dev)
apt_install "${debs[@]}" || echo "setup: audio rendering (--render) needs ${debs[*]}" >&2

# torch first, pinned, so no other requirement pulls a different (multi-GB) build. pip's own
# configuration decides where it comes from (a local wheel folder, a mirror); $TORCH_INDEX_URL adds an
# index, e.g. https://download.pytorch.org/whl/cpu for the CPU-only build on a machine without a GPU.
"${pip[@]}" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "torch==2.13.0"
extras=""
[ $dev -eq 1 ] && extras="[dev]"
"${pip[@]}" -e ".${extras}"
# basic-pitch (the transcriber models/performer/listen.py uses): its wheel asks for TensorFlow on
# Linux, which only its TF backend needs; the ONNX model it ships runs on onnxruntime (a dev extra)
[ $dev -eq 1 ] && "${pip[@]}" --no-deps "basic-pitch==0.4.0"
echo "setup: done in $venv ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)')); run" \
     "\`. $venv/bin/activate\` to put deep-musician on PATH"
