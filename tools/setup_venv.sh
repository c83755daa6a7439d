#!/usr/bin/env bash
# Creates .venv with the pinned dependencies, picking the mlx build that fits this machine:
# Metal on macOS arm64, CUDA where nvidia-smi answers, CPU otherwise. Called by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

"$PYTHON" - <<'PY' || { echo "error: Python 3.11 or newer is needed (found $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11 and run make setup again." >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

mlx_requirements() {
  if [ "$(uname -s)" = "Darwin" ]; then
    [ "$(uname -m)" = "arm64" ] || { echo "error: mlx needs an Apple Silicon Mac (arm64); this Mac is $(uname -m)." >&2; exit 1; }
    echo requirements/mlx-metal.txt
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo requirements/mlx-cuda.txt
  else
    echo requirements/mlx-cpu.txt
  fi
}
MLX_REQS=${MLX_REQUIREMENTS:-$(mlx_requirements)}
echo "setup: mlx build from $MLX_REQS"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip warns once per package about local index folders that lack it (a machine's pip.conf): noise.
quiet_pip() { "${PIP[@]}" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet_pip install -q -r "$MLX_REQS" -r requirements.txt
quiet_pip install -q --no-deps -r requirements/mflux.txt
quiet_pip install -q --no-deps -e .
"$VENV/bin/python" -c "import mlx.core as mx, mflux, charlora; print('setup: mlx', mx.__version__, 'on', mx.default_device())"
echo "$MLX_REQS" > "$VENV/.mlx-build"
