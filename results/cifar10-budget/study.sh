#!/usr/bin/env bash
# The CIFAR-10 (JPEG copy) budget study: the paper's WRN-16-k (family 'paper')
# with the paper recipe (SGD + Nesterov, lr 0.1, wd 5e-4, batch 128, pad-crop
# and flip, per-channel standardisation), each budget a run of its own whose
# step schedule (lr x0.2 at 30, 60 and 80 % of its steps) is scaled to its
# length. 391 steps of 128 images are one epoch of the 50,000 training images.
# Resumable: rerun it and finished members are skipped, partial ones resume.
#
#   DATA=/tmp/cifar10-jpeg ROOT=/work/runs/cifar10-budget bash results/cifar10-budget/study.sh
#
# Members run in the order that gives a usable table soonest: seed 0 of the
# narrow widths first, the widest last.
set -euo pipefail
DATA=${DATA:-/tmp/cifar10-jpeg}
ROOT=${ROOT:-/work/runs/cifar10-budget}
WIDTHS=${WIDTHS:-"1 2 4"}
SEEDS=${SEEDS:-"0 1"}
BUDGETS=${BUDGETS:-"98 196 391 782"}   # 0.25, 0.5, 1 and 2 epochs
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
for seed in $SEEDS; do
  for k in $WIDTHS; do
    for steps in $BUDGETS; do
      wrn-trax sweep --family paper --depths 16 --widen-factors "$k" --seeds "$seed" \
        --dataset cifar10 --data-dir "$DATA" --recipe paper --steps "$steps" \
        --set eval_every=98 --set checkpoint_every=98 --root "$ROOT"
    done
  done
done
