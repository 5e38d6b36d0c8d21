#!/usr/bin/env bash
# The full rewriter training on SmolLM2-135M (offline). Needs a running OpenSearch with the catalog
# indexed (`qrw opensearch start && qrw index`). Every stage resumes with --resume-from-checkpoint last.
set -euo pipefail
URL=${QRW_URL:-http://127.0.0.1:9200}
qrw train data --url "$URL" --output-dir runs/data
qrw train sft --config trainer/configs/sft_smollm2.yaml
qrw train evaluate --url "$URL" --model sft=runs/sft --output-dir runs/eval-sft
qrw train grpo --config trainer/configs/grpo_smollm2.yaml --url "$URL"
qrw train evaluate --url "$URL" --model sft=runs/sft --model grpo=runs/grpo --output-dir runs/eval
