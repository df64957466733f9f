#!/usr/bin/env bash
# The main job on the embedded default: train the swiss-roll model, then draw samples
# and write a picture of them. bash scripts/demo.sh [OUT_DIR]
source "$(dirname "$0")/setup_env.sh" onnx
out="${1:-runs/demo}"
fdrl-train --config swissroll --out "$out" --overwrite
echo "samples: $out/samples/ (one picture per checkpoint)"
