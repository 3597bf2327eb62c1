#!/usr/bin/env bash
# Set up everything pbkit and its examples need on a fresh machine: system packages,
# the virtual environment at .venv, and the offline checkpoints under checkpoints/.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv

if ! command -v espeak-ng >/dev/null 2>&1; then
  echo "== installing espeak-ng (speech for the Whisper tests and demo)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

stamp="$VENV/.pbkit-requirements"
want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== installing Python requirements"
  python -m pip install -q --upgrade pip
  python -m pip install -q -r requirements-dev.txt
  # The CLIP tokenizer vocabulary ships in open-clip-torch; its dependencies are not needed.
  python -m pip install -q --no-deps open-clip-torch==3.3.0
  echo "$want" > "$stamp"
fi
python -m pip install -q --no-deps -e . 2>/dev/null

if python -c "import torchaudio" >/dev/null 2>&1; then
  echo "warning: torchaudio is installed; its PyPI wheel breaks 'import transformers' with this torch" >&2
fi

echo "== preparing offline checkpoints"
python scripts/prepare_checkpoints.py
echo "== setup done: . $VENV/bin/activate"
