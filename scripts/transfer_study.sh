#!/usr/bin/env bash
# What transfer learning and augmentation buy: one table, same fold file for every row.
#
#   bash scripts/transfer_study.sh [CONFIG] [WORKDIR]
#
# Trains each variant on all folds with `python -m src.train`, then `python -m src.compare`
# writes the table (mean ± sd, per-fold scores, paired corrected t-tests against `cnn`).
# Budgets are fixed per family so that rows within a family are comparable at equal epochs.
# Runs that finished already are skipped (same --run-id resumes, changed settings are refused).
set -euo pipefail
CONFIG=${1:-configs/gtzan_audio_study.toml}
WORKDIR=${2:-.}
PY=${PYTHON:-python}
CNN_EPOCHS=${CNN_EPOCHS:-15}
TIMM_EPOCHS=${TIMM_EPOCHS:-4}
AUG="--freq-mask 16 --time-mask 24 --n-masks 2 --mixup-alpha 0.2"
LITE="--model tf_efficientnet_lite0 --param in_chans=3 --epochs $TIMM_EPOCHS --lr 2e-3 --scheduler onecycle"
T="$PY -m src.train --config $CONFIG --workdir $WORKDIR --no-plots"

# the fold file every row shares (src.train refuses a stale one)
FOLDS=$($PY -c "import sys; from src.config import load_config; from src.folds import fold_path; print(fold_path(load_config(sys.argv[1]), sys.argv[2]))" "$CONFIG" "$WORKDIR")
[ -f "$FOLDS" ] || $PY -m src.folds --config "$CONFIG" --workdir "$WORKDIR"
$T --run-id ts-cnn_seed      --model cnn_seed --epochs "$CNN_EPOCHS" --patience 5 --lr 1e-3
$T --run-id ts-cnn           --model cnn      --epochs "$CNN_EPOCHS" --patience 5
$T --run-id ts-cnn-aug       --model cnn      --epochs "$CNN_EPOCHS" --patience 5 $AUG
$T --run-id ts-lite0-frozen  $LITE --param pretrained=package --freeze-epochs -1
$T --run-id ts-lite0-discr   $LITE --param pretrained=package --layer-decay 0.7
$T --run-id ts-lite0-scratch $LITE --param pretrained=none
$T --run-id ts-lite0-discr-aug $LITE --param pretrained=package --layer-decay 0.7 $AUG

$PY -m src.compare --workdir "$WORKDIR" --baseline ts-cnn --no-report \
  ts-cnn_seed ts-cnn ts-cnn-aug ts-lite0-scratch ts-lite0-frozen ts-lite0-discr ts-lite0-discr-aug
