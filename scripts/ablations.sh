#!/usr/bin/env bash
# Train the ablation rows of benchmarks/RESULTS.md (Bach chorales), then evaluate them all.
# Each run is capped at a few thousand steps so the whole set fits a 2-core machine in about an
# hour; the shipped models (scripts/retrain.py) are trained the same way with their own configs.
#   bash scripts/ablations.sh [RUN...]     # default: every run below
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A RUNS=(
  [online-lstm]="--arch lstm --online --steps 3000 --patience 6"
  [online-lstm-chord-voice]="--arch lstm --online --chord-context --voice-state --steps 3000 --patience 6"
  [online-transformer]="--arch transformer --online --steps 900 --eval-every 150 --patience 4"
  [offline-bilstm-entry-hints]="--arch lstm --no-online --entry-hints --steps 3000 --patience 6"
  [offline-transformer]="--arch transformer --no-online --steps 900 --eval-every 150 --patience 4"
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(online-lstm online-lstm-chord-voice online-transformer offline-bilstm-entry-hints offline-transformer)
for name in "${names[@]}"; do
  out="runs/ablation-bach-$name"
  [ -f "$out/best.pt" ] && [ -z "${RETRAIN:-}" ] && { echo "ablations: $out exists, skipping"; continue; }
  python -m models.arranger.train --data bach --eval-every 250 --out "$out" ${RUNS[$name]}
done
