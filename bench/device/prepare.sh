#!/usr/bin/env bash
# Run HERE (with PyPI): writes .whl/ (git-ignored) with every wheel the GPU
# check needs that the bare CUDA jax machine lacks, the CIFAR-10 JPEG copy and
# the commit, then prints the `carry` list for the device `run` tool.
#   bash bench/device/prepare.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-${PYTHON:-python3}}
DATA=${CIFAR_TGZ:-../shared/data/cifar10-jpeg.tar.gz}
[ -f "$DATA" ] || DATA=/work/shared/data/cifar10-jpeg.tar.gz
LIMIT_MB=60
rm -rf .whl && mkdir -p .whl
pip_dl() { "$PY" -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform any -d .whl "$@"; }
# trax imports gin and (through our _quiet) gym at import; TF, TFDS and TF
# Text are stood in for by wrn_trax/_tf_standin.py.
pip_dl trax==1.4.1 gin-config==0.5.0 gym-notices==0.1.0
# gym 0.26.2 is published as a source archive only: build its (pure) wheel.
"$PY" -m pip wheel -q --no-deps gym==0.26.2 -w .whl
"$PY" -m pip wheel -q --no-deps --no-build-isolation . -w .whl
rm -rf build wrn_trax.egg-info
cp "$DATA" .whl/cifar10-jpeg.tar.gz
git rev-parse HEAD > .whl/COMMIT
git status --porcelain | grep -q . && echo "+uncommitted changes" >> .whl/COMMIT || true
size=$(du -sm .whl | cut -f1)
ls -la .whl
echo "prepare: .whl is ${size} MiB (limit ${LIMIT_MB})"
[ "$size" -le "$LIMIT_MB" ] || { echo "prepare: .whl over ${LIMIT_MB} MiB"; exit 1; }
echo 'carry: [".whl"]'
