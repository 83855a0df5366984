#!/usr/bin/env bash
# Quick-start command (b): set up and run the whole test suite, slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled
exec .venv/bin/python -m pytest "$@"
