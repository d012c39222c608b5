#!/usr/bin/env bash
# Short, equal-budget comparisons for the shipped model (see MODEL_CARD.md): RTMDet-nano
# backbone vs RTMPose-t from scratch, strong vs light augmentation, input size. Each run holds
# back the same 25 % of train_coco_extra's images for model selection; coco_val_subset (the
# evaluation set) is never trained on and is only evaluated after each run.
#   usage: training/recipes/compare.sh RUNS_DIR [EPOCHS]
set -euo pipefail
runs=${1:?runs dir}; epochs=${2:-5}
shared=${RTMSERVE_SHARED:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
data="$shared/data/train_coco_extra $shared/data/train_lspet $shared/data/train_fashion_photos $shared/data/coco_train_partial"
rtmdet="$shared/models/rtmdet-nano_person_320x320_ort-end2end/end2end.onnx"
common=(--epochs "$epochs" --batch-size 64 --holdout 0.25 --eval-every "$epochs" --workers 2)

run() {  # name, extra args...
  local name=$1; shift
  [ -f "$runs/$name/last.pth" ] && return 0
  python -m training.train $data --out "$runs/$name" "${common[@]}" "$@"
  python -m training.export --run "$runs/$name/last.pth" --output "$runs/$name/model.onnx" >/dev/null
  python -m training.evaluate "$shared/data/coco_val_subset" --onnx "$runs/$name/model.onnx" \
    --input-size $(python -c "import json;print(*json.load(open('$runs/$name/config.json'))['input_size'])") \
    --out "$runs/$name/coco_val_subset.json" >/dev/null
}

run n-rtmdet-strong --variant n --init "onnx:$rtmdet"
run n-rtmdet-light --variant n --init "onnx:$rtmdet" --augment light
run n-rtmdet-strong-128x96 --variant n --init "onnx:$rtmdet" --input-size 96 128
run t-scratch-strong --variant t
