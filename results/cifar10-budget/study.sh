#!/usr/bin/env bash
# The CIFAR-10 (JPEG copy) budget study: the paper's WRN-16-k (family 'paper')
# with the paper recipe (SGD + Nesterov, lr 0.1, wd 5e-4, batch 128, pad-crop
# and flip, per-channel standardisation), each budget a run of its own whose
# step schedule (lr x0.2 at 30, 60 and 80 % of its steps) is scaled to its
# length. 391 steps of 128 images are one epoch of the 50,000 training images.
# Resumable: rerun it and finished members are skipped, partial ones resume.
#
#   DATA=/tmp/cifar10-jpeg bash results/cifar10-budget/study.sh
#
# Members run in the order that gives a usable table soonest: every budget
# and seed of the narrow widths (NARROW) first, then the wide ones (WIDE)
# budget by budget, shortest first.
set -euo pipefail
DATA=${DATA:-/tmp/cifar10-jpeg}
ROOT=${ROOT:-results/cifar10-budget/runs}  # records committed here; checkpoints ignored
NARROW=${NARROW:-"1 2"}
WIDE=${WIDE:-"4"}
SEEDS=${SEEDS:-"0 1"}
BUDGETS=${BUDGETS:-"98 196 391 782"}   # 0.25, 0.5, 1 and 2 epochs
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}

member() {  # member K SEED STEPS
  wrn-trax sweep --family paper --depths 16 --widen-factors "$1" --seeds "$2" \
    --dataset cifar10 --data-dir "$DATA" --recipe paper --steps "$3" \
    --set eval_every=98 --set checkpoint_every=98 --root "$ROOT"
}

for seed in $SEEDS; do
  for k in $NARROW; do
    for steps in $BUDGETS; do member "$k" "$seed" "$steps"; done
  done
done
for steps in $BUDGETS; do
  for k in $WIDE; do
    for seed in $SEEDS; do member "$k" "$seed" "$steps"; done
  done
done
