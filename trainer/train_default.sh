#!/usr/bin/env bash
# Train the default rewriter v2 end to end with one command:
#   trainer/train_default.sh cpu        # the 2-core CPU fallback, 22 minutes measured (20,000 pseudo-queries, one SFT phase)
#   trainer/train_default.sh cpu-long   # the recipe of the committed default (70,000 pseudo-queries, two SFT phases; hours on CPU)
#   trainer/train_default.sh gpu        # a CUDA GPU: bf16 full fine-tune (multi-GPU: see trainer/accelerate/)
# Stages: measured-gain data (in-process BM25 mirror of the baseline; an OpenSearch at $QRW_URL, if up,
# is used only for the agreement check) -> multi-task SFT -> GRPO (measured-gain reward) -> CPU export
# -> gate and trigger calibration of the export on held-out pseudo-queries (writes serving.yaml). Each
# stage's time is printed; outputs go under runs/v2-cpu/ (cpu) or runs/v2/ (cpu-long, gpu), git-ignored.
# Set QRW=path/to/qrw to use another CLI. Set QRW_ENCODER=DIR (a local sentence-transformers checkpoint) to add the
# encoder's nearest catalog title phrases to the measured candidates (qrw train data --encoder; off by default:
# at the 45-minute CPU budget it did not help, docs/eval/headroom.md section 7c).
set -euo pipefail
target=${1:-cpu}
case "$target" in
  cpu)      out=runs/v2-cpu; data_flags=(--pseudo-queries 20000); sft=(v2_sft_cpu_quick); grpo=v2_grpo_cpu_quick ;;
  cpu-long) out=runs/v2;     data_flags=();                       sft=(v2_sft_cpu v2_sft2_cpu); grpo=v2_grpo_cpu ;;
  gpu)      out=runs/v2;     data_flags=();                       sft=(v2_sft_gpu); grpo=v2_grpo_gpu ;;
  *) echo "usage: $0 cpu|cpu-long|gpu" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
QRW=${QRW:-.venv/bin/qrw}
EXPORT=${QRW_EXPORT:-.venv/bin/qrw-export}
URL=${QRW_URL:-http://127.0.0.1:9200}
mkdir -p "$out"
started=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - started )) s so far)"; }
if curl -fsS "$URL" >/dev/null 2>&1; then url_flag=(--url "$URL"); else url_flag=(--url ""); fi
if [ -n "${QRW_ENCODER:-}" ]; then data_flags+=(--encoder "$QRW_ENCODER"); fi
stage data;      "$QRW" train data --output-dir "$out/data" "${url_flag[@]}" "${data_flags[@]}"
for config in "${sft[@]}"; do
  stage "sft ($config)"; "$QRW" train sft --config "trainer/configs/$config.yaml"
done
stage grpo;      "$QRW" train grpo --config "trainer/configs/$grpo.yaml"
model=$out/grpo; [ -d "$out/grpo/adapter" ] && model=$out/grpo/adapter   # LoRA: export the adapter
stage export;    "$EXPORT" --model "$model" --out "$out/export" --target cpu --quiet
stage calibrate; "$QRW" train calibrate --model "$out/export" --data-dir "$out/data"
cp "$out/export/serving.yaml" "$out/export/calibration.json" "$model"/   # travels with later exports
stage done
echo "total $(( $(date +%s) - started )) s on $target; model: $model (export: $out/export)"
