#!/usr/bin/env bash
# Runs on the lent GPU machine (see trainer/gpu_kit.py and the kit's PLAN.md): stage each call's parts, then
# assemble them, install the carried wheels ahead of the image's packages, train SFT + GRPO (one LoRA adapter,
# bf16) within a time budget, and put the result under $OUT in parts small enough to come back.
#   bash trainer/gpu_kit_run.sh stage .gpu/call-1     # copy this call's parts to $QRW_KIT (default /tmp/qrw-kit)
#   bash trainer/gpu_kit_run.sh train 7               # then: 7 minutes of training in all (70 % SFT, 30 % GRPO)
# A CPU dry run of the same steps (what tests/trainer/test_gpu_kit.py does with the tiny model):
#   QRW_KIT_SKIP_INSTALL=1 QRW_KIT_DEVICE=cpu QRW_KIT_MODEL=DIR QRW_KIT_STEPS=2 bash trainer/gpu_kit_run.sh train 1
set -euo pipefail
kit=${QRW_KIT:-/tmp/qrw-kit}
case "${1:-}" in
  stage)
    mkdir -p "$kit"
    cp "$2"/* "$kit"/
    ls -l "$kit"
    exit 0 ;;
  train) ;;
  *) echo "usage: $0 stage DIR | train MINUTES" >&2; exit 2 ;;
esac
minutes=${2:-7}
out=${OUT:-$kit/out}
work=$kit/work
py=${PYTHON:-python3}
started=$(date +%s)
say() { echo "== $1 ($(( $(date +%s) - started )) s)"; }
rm -rf "$work" && mkdir -p "$work" "$out"

say assemble
for name in $(ls "$kit" | sed -n 's/\.part-[0-9]*$//p' | sort -u); do
  cat "$kit/$name".part-* > "$work/$name"  # the parts sort in order: NAME.part-000, -001, ...
done
tar xf "$work/data.tar.xz" -C "$work"     # -> work/data
tar xf "$work/icecat.tar.xz" -C "$work"   # -> work/icecat
if [ -z "${QRW_KIT_SKIP_INSTALL:-}" ]; then
  say install
  tar xf "$work/wheels.tar" -C "$work"    # -> work/wheels
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" "$work"/wheels/*.whl
  "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$work/site" .
  export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
  "$py" -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
fi
export QRW_BASE_GGUF="$work/base.gguf" QRW_CACHE_DIR="$work/cache" QRW_DATA_DIR="$work/icecat"
# the device tool returns only the last 12,000 characters of output: no progress bars
export HF_DATASETS_DISABLE_PROGRESS_BARS=1 TQDM_DISABLE=1 TRANSFORMERS_VERBOSITY=warning
# the data card names the catalog and judgments where they were on the machine that built the data
"$py" - "$work" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
card_path = work / "data" / "data_card.json"
card = json.loads(card_path.read_text())
if card["sources"].get("judgments"):
    card["sources"]["judgments"] = str(work / "icecat" / "judgments" / "judgments.csv")
if card["config"].get("data_dir"):
    card["config"]["data_dir"] = str(work / "icecat")
card_path.write_text(json.dumps(card, indent=2))
PY

device=${QRW_KIT_DEVICE:-cuda}
precision=(); [ "$device" = cpu ] && precision=(--no-bf16)
steps=(); [ -n "${QRW_KIT_STEPS:-}" ] && steps=(--max-steps "$QRW_KIT_STEPS")
sft_minutes=$("$py" -c "print(round($minutes * 0.7, 2))")
grpo_minutes=$("$py" -c "print(round($minutes * 0.3, 2))")
model=${QRW_KIT_MODEL:-smollm2}
configs=$(pwd)/trainer/configs
cd "$work"  # not the checkout: there `python -m` would find the source tree's qrw/ before the installed package
say "sft ($sft_minutes min)"
"$py" -m qrw.cli train sft --config "$configs/v2_sft_gpu_kit.yaml" --model "$model" --data-dir "$work/data" \
  --output-dir "$work/sft" --max-minutes "$sft_minutes" --device "$device" "${precision[@]}" "${steps[@]}" --no-progress
say "grpo ($grpo_minutes min)"
"$py" -m qrw.cli train grpo --config "$configs/v2_grpo_gpu_kit.yaml" --model "$work/sft/adapter" --data-dir "$work/data" \
  --output-dir "$work/grpo" --max-minutes "$grpo_minutes" --device "$device" "${precision[@]}" "${steps[@]}" --no-progress

say "pack"
# the adapter names its base by a path on this machine: name the packaged base instead
"$py" - "$work/grpo/adapter/adapter_config.json" "$model" <<'PY'
import json, pathlib, sys
path, model = pathlib.Path(sys.argv[1]), sys.argv[2]
config = json.loads(path.read_text())
config["base_model_name_or_path"] = model  # 'smollm2' (resolved from the package here) or the folder given
path.write_text(json.dumps(config, indent=2))
PY
mkdir -p "$work/result/sft" "$work/result/grpo"
cp -r "$work/grpo/adapter" "$work/result/adapter"
cp "$work"/sft/training_card.* "$work"/sft/*.png "$work/result/sft/" 2>/dev/null || true
cp "$work"/grpo/training_card.* "$work"/grpo/*.png "$work/result/grpo/" 2>/dev/null || true
tar czf - -C "$work" result | split -b 15m -d - "$out/result.tgz.part-"
ls -l "$out"
say done
