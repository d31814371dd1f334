#!/usr/bin/env bash
# Rehearses the GPU check HERE, on CPU, in the GPU machine's stack: Python
# 3.12, jax/jaxlib 0.11.2 (CPU wheels), numpy, pandas, matplotlib, pillow,
# tqdm, tensorboard, pytest, scikit-learn (and absl-py, scipy, psutil, six,
# cloudpickle, which that image has too); NO TensorFlow, TFDS, TF Text, trax,
# gin or gym. Builds .whl/ (bench/device/prepare.sh), installs it the same way, runs
#   bash bench/device/run.sh OUTDIR --quick --allow-cpu
# then checks that the record is complete and the hard items passed.
#   bash bench/device/rehearse.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${1:?usage: rehearse.sh OUTDIR}
PY312=${PY312:-/root/.pyenv/versions/3.12.1/bin/python}
VENV=${REHEARSE_VENV:-${TMPDIR:-/tmp}/wrn_trax-rehearse-venv}
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import jax" 2>/dev/null; then
  rm -rf "$VENV"
  "$PY312" -m venv "$VENV"
  "$VENV/bin/pip" install -q jax==0.11.2 jaxlib==0.11.2 numpy pandas matplotlib \
    pillow tqdm tensorboard pytest scikit-learn absl-py scipy psutil six cloudpickle
fi
if "$VENV/bin/python" -c "import tensorflow" 2>/dev/null; then
  echo "rehearse: $VENV has TensorFlow; the GPU machine has none"; exit 1
fi
echo "rehearse: venv ready in $(( $(date +%s) - start )) s"
bash bench/device/prepare.sh "$VENV/bin/python"   # the wheels of this checkout
rc=0
PYTHON="$VENV/bin/python" WRN_CHECK_SITE=${TMPDIR:-/tmp}/wrn_rehearse_site \
  WRN_CHECK_SECONDS=${WRN_CHECK_SECONDS:-900} \
  bash bench/device/run.sh "$OUTDIR" --quick --allow-cpu || rc=$?
"$VENV/bin/python" - "$OUTDIR" <<'PY'
import json, sys
rec = json.load(open(sys.argv[1] + '/gpu_check.json'))
items = rec['items']
missing = [n for n in ('device', 'import_safety', 'placement', 'real_data',
                       'throughput', 'members', 'tf_gpu', 'seed_vs_ours')
           if n not in items]
assert not missing, f'items not run: {missing}'
assert rec['tensorflow'] == 'stand-in', rec['tensorflow']
for n, r in items.items():
  print(f'rehearse: {n}: {r["status"]}: {str(r.get("summary"))[:200]}')
bad = [n for n in ('device', 'placement') if items[n]['status'] != 'ok']
assert not bad, f'hard items failed: {bad}'
PY
echo "rehearse: run.sh exit $rc; total $(( $(date +%s) - start )) s"
[ "$rc" -le 1 ]
