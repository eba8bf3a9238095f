#!/usr/bin/env bash
# Create .venv and install everything det_forget needs, offline-friendly and idempotent.
#
# A stamp file records a hash of this script and pyproject.toml; when neither changed
# since the last successful run, the script exits at once (a second run is fast).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
cd "$ROOT"

fingerprint="$(cat scripts/setup_env.sh pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)"
stamp="$VENV/.det_forget-setup-$fingerprint"
if [ -f "$stamp" ]; then
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup_env: $PYTHON not found; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

echo "[setup] torch + torchvision"
"${PIP[@]}" install "torch==2.14.1" "torchvision==0.29.1"

echo "[setup] detectron2 pure-Python dependencies"
"${PIP[@]}" install "setuptools<81" fvcore iopath yacs "omegaconf>=2.1,<2.4" "hydra-core>=1.1" \
  pycocotools termcolor tabulate cloudpickle tqdm matplotlib tensorboard "Pillow>=7.1" \
  black packaging

if "$PY" -c "import detectron2" >/dev/null 2>&1; then
  echo "[setup] detectron2 already importable: $("$PY" -c 'import detectron2, os; print(os.path.dirname(detectron2.__file__))')"
else
  # Upstream detectron2 is not on PyPI. sal-detectron2 ships its Python sources plus a
  # Python-3.10 _C extension that never loads on 3.11; det_forget never needs _C.
  echo "[setup] detectron2 (sal-detectron2==0.7.2 Python sources)"
  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "${PIP[@]}" install --no-deps --python-version 3.10 --only-binary=:all: --upgrade \
    --target "$SITE" "sal-detectron2==0.7.2"
fi

# Fashion-MNIST (classification benchmarks and tests) comes from Debian's package; with
# internet, torchvision can download it instead (see README).
FMNIST=/usr/share/datasets/fashion-mnist
if [ -z "${DET_FORGET_FASHION_MNIST:-}" ] && [ ! -f "$FMNIST/t10k-labels-idx1-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] Fashion-MNIST (Debian package dataset-fashion-mnist)"
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null
    }
  else
    echo "[setup] WARNING: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist'" \
      "or set DET_FORGET_FASHION_MNIST to a folder with its IDX .gz files" >&2
  fi
fi

echo "[setup] det_forget and its tools"
"${PIP[@]}" install -e ".[dev,gui]"

"$PY" -c "import torch, torchvision, detectron2, timm, pycocotools, safetensors, skimage; print('[setup] ok: torch', torch.__version__, '| detectron2', detectron2.__version__, '| timm', timm.__version__)"
rm -f "$VENV"/.det_forget-setup-*
touch "$stamp"
