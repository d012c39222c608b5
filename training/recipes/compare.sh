#!/usr/bin/env bash
# Equal-budget comparisons behind the shipped model (models/*/MODEL_CARD.md): learning rate,
# RTMDet-nano backbone vs RTMPose-t from scratch, light vs strong augmentation. 10 epochs at
# 128x96 on the four training sets; each run holds back the same 25 % of train_coco_extra's
# images for model selection. coco_val_subset (the evaluation set) is never trained on: it is
# only evaluated once a run has finished.
#   usage: training/recipes/compare.sh RUNS_DIR
set -euo pipefail
runs=${1:?runs dir}
shared=${RTMSERVE_SHARED:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}
d=$shared/data
data="$d/train_coco_extra $d/train_lspet $d/train_fashion_photos $d/coco_train_partial"
rtmdet="$shared/models/rtmdet-nano_person_320x320_ort-end2end/end2end.onnx"
common=(--epochs 10 --batch-size 64 --holdout 0.25 --eval-every 2 --input-size 96 128
        --workers 1 --threads 1)

run() {  # name, extra args...
  local name=$1; shift
  if [ ! -f "$runs/$name/model.onnx" ]; then
    local resume=(); [ -f "$runs/$name/last.pth" ] && resume=(--resume)  # finishes a cut-off run
    python -m training.train $data --out "$runs/$name" "${common[@]}" "$@" "${resume[@]}"
    python -m training.export --run "$runs/$name/last.pth" --output "$runs/$name/model.onnx" >/dev/null
  fi
  [ -f "$runs/$name/coco_val_subset.json" ] || python -m training.evaluate "$d/coco_val_subset" \
    --onnx "$runs/$name/model.onnx" --input-size 96 128 --out "$runs/$name/coco_val_subset.json" >/dev/null
}

run n-rtmdet-light-lr1e-3 --variant n --init "onnx:$rtmdet" --augment light --lr 1e-3
run n-rtmdet-light-lr2e-3 --variant n --init "onnx:$rtmdet" --augment light --lr 2e-3 --clip-grad 35
run n-rtmdet-light-lr4e-3 --variant n --init "onnx:$rtmdet" --augment light --lr 4e-3 --clip-grad 35
run t-scratch-light-lr2e-3 --variant t --augment light --lr 2e-3 --clip-grad 35
run n-rtmdet-strong-lr2e-3 --variant n --init "onnx:$rtmdet" --augment strong --lr 2e-3 --clip-grad 35
