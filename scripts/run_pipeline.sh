#!/usr/bin/env bash
# Quick-start command (a): set up, then run the main job end to end on the embedded SmolLM2-135M-Instruct:
# collect the three stages' data -> SFT 1 -> SFT 2 -> DPO -> evaluate, with a results table per stage.
# Extra arguments go to `thce pipeline` (e.g. --force, --set evaluation.limit=50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/thce pipeline --config configs/demo.yaml "$@"
