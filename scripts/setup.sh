#!/usr/bin/env bash
# Everything Deep Musician needs on a fresh Debian/Ubuntu machine with Python 3.10+.
#   bash scripts/setup.sh         # the package and the FluidSynth renderer
#   bash scripts/setup.sh --dev   # plus the test tools
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

# Debian packages: FluidSynth and a General MIDI soundfont (for --render); with --dev also what the
# plugin stub builds with (DPF, libzmq + cppzmq, msgpack-c++, a C++ toolchain). Skipped when present.
debs=(fluidsynth fluid-soundfont-gm)
[ "${1:-}" = "--dev" ] && debs+=(dpf-source libzmq3-dev cppzmq-dev libmsgpack-cxx-dev pkg-config g++ make jackd2 jalv libjack-jackd2-dev)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: no apt-get; install ${missing[*]} yourself for audio rendering (--render)" >&2
  fi
fi

# torch first, pinned, so no other requirement pulls a different (multi-GB) build.
python -m pip install -q --disable-pip-version-check "torch==2.13.0"
python -m pip install -q --disable-pip-version-check -e ".${extras}"
echo "setup: done ($(python -c 'import torch; print("torch", torch.__version__)'))"
