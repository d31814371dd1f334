#!/usr/bin/env bash
# Run ON THE GPU MACHINE, from the repository root, after prepare.sh here:
#   bash bench/device/run.sh OUTDIR [--quick] [--allow-cpu]
# Installs .whl/ into a folder of its own (nothing in the machine's Python is
# replaced), unpacks the CIFAR-10 copy in the background and runs the check
# (bench/device/check.py) inside WRN_CHECK_SECONDS (default 400 s, so that
# the run tool's timeout_s=420 leaves device time for a second try); writes OUTDIR/gpu_check.json and
# OUTDIR/gpu_check.md (after every item, so a killed run keeps its results).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${1:?usage: run.sh OUTDIR [--quick] [--allow-cpu]}; shift
PY=${PYTHON:-python3}
SITE=${WRN_CHECK_SITE:-/tmp/wrn_check_site}
DATA=${WRN_CHECK_DATA:-/tmp/wrn_check_cifar10}
start=$(date +%s)
mkdir -p "$OUTDIR"
[ -d .whl ] || { echo "run.sh: no .whl/ here: run bench/device/prepare.sh first and carry .whl"; exit 1; }
if [ ! -f "$DATA/.unpacked" ] && [ -f .whl/cifar10-jpeg.tar.gz ]; then
  rm -rf "$DATA" && mkdir -p "$DATA" && touch "$DATA/.unpacking"
  ( tar -xzf .whl/cifar10-jpeg.tar.gz -C "$DATA" && rm "$DATA/.unpacking" \
      && touch "$DATA/.unpacked" ) &
fi
rm -rf "$SITE"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --target "$SITE" .whl/*.whl || { echo "run.sh: pip install failed"; exit 1; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "run.sh: installed .whl in $(( $(date +%s) - start )) s"
folder=$DATA; [ -d "$DATA/cifar10-jpeg" ] && folder=$DATA/cifar10-jpeg
left=$(( ${WRN_CHECK_SECONDS:-400} - ($(date +%s) - start) ))
timeout $(( left + 5 )) "$PY" bench/device/check.py "$OUTDIR" --data "$folder" \
  --max-seconds "$left" "$@"
rc=$?
echo "run.sh: exit $rc after $(( $(date +%s) - start )) s; results in $OUTDIR"
exit $rc
