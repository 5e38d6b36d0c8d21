#!/usr/bin/env bash
# Train the default rewriter v2 end to end with one command:
#   trainer/train_default.sh cpu    # 2-core CPU fallback (see README for the measured time)
#   trainer/train_default.sh gpu    # a CUDA GPU: bf16 full fine-tune (multi-GPU: see trainer/accelerate/)
# Stages: measured-gain data (in-process BM25 mirror of the baseline; an OpenSearch at $QRW_URL, if up,
# is used only for the agreement check) -> multi-task SFT -> GRPO (measured-gain reward) -> CPU export
# -> gate calibration of the export on held-out pseudo-queries (writes serving.yaml). Each stage's time is printed;
# outputs go under runs/v2/ (git-ignored). Set QRW=path/to/qrw to use another CLI.
set -euo pipefail
target=${1:-cpu}
case "$target" in cpu|gpu) ;; *) echo "usage: $0 cpu|gpu" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
QRW=${QRW:-.venv/bin/qrw}
EXPORT=${QRW_EXPORT:-.venv/bin/qrw-export}
URL=${QRW_URL:-http://127.0.0.1:9200}
mkdir -p runs/v2
started=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - started )) s so far)"; }
if curl -fsS "$URL" >/dev/null 2>&1; then url_flag=(--url "$URL"); else url_flag=(--url ""); fi
stage data;      "$QRW" train data --output-dir runs/v2/data "${url_flag[@]}"
stage sft;       "$QRW" train sft --config "trainer/configs/v2_sft_$target.yaml"
if [ -f "trainer/configs/v2_sft2_$target.yaml" ]; then   # CPU: a second phase continues the adapter
  stage sft2;    "$QRW" train sft --config "trainer/configs/v2_sft2_$target.yaml"
fi
stage grpo;      "$QRW" train grpo --config "trainer/configs/v2_grpo_$target.yaml"
model=runs/v2/grpo; [ -d runs/v2/grpo/adapter ] && model=runs/v2/grpo/adapter   # LoRA: export the adapter
stage export;    "$EXPORT" --model "$model" --out runs/v2/export --target cpu --quiet
stage calibrate; "$QRW" train calibrate --model runs/v2/export --data-dir runs/v2/data
cp runs/v2/export/serving.yaml runs/v2/export/calibration.json "$model"/   # travels with later exports
stage done
echo "total $(( $(date +%s) - started )) s on $target; model: $model (export: runs/v2/export)"
