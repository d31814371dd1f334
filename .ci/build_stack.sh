#!/usr/bin/env bash
# Builds one user stack as a Colab/Kaggle user meets it, outside the repo:
#   .ci/build_stack.sh NAME PYTHON VENV_DIR PIN...
# 1. a fresh venv with the stack's preinstalled packages (PIN..., e.g.
#    jax==0.7.2 jaxlib==0.7.2 tensorflow==2.20.0 ...; keras as TF pulls it);
# 2. `pip install -e ".[dev]"` WITHOUT constraints, as the README says there;
# 3. fails if that install changed jax, jaxlib, tensorflow, tensorflow-text,
#    numpy or keras; runs `pip check`;
# 4. with WRITE_CONSTRAINTS=1, writes constraints/NAME.txt from pip freeze.
# With no PIN, nothing is preinstalled: the stack is what a plain
# `pip install -e ".[dev]"` resolves that day in a fresh venv (as a new user
# gets it); steps 1 and 3's check are skipped. PIP_CONSTRAINT=FILE (pip's own
# variable) rebuilds a recorded set instead.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; py=$2; venv=$3; shift 3
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
if (( $# )); then
  "$venv/bin/python" -m pip install -q "$@"
  "$venv/bin/python" .ci/check_stack_unchanged.py save "$venv/stack_before.json"
fi
"$venv/bin/python" -m pip install -q -e ".[dev]"
if (( $# )); then
  "$venv/bin/python" .ci/check_stack_unchanged.py check "$venv/stack_before.json"
else
  "$venv/bin/python" -c 'import importlib.metadata as m; print("stack resolved:", *(f"{p}=={m.version(p)}" for p in ("jax", "jaxlib", "tensorflow", "numpy", "protobuf")))'
fi
"$venv/bin/python" -m pip check
if [[ "${WRITE_CONSTRAINTS:-0}" == 1 ]]; then
  {
    echo "# Stack '$name': $("$venv/bin/python" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])'), CPU, $(date -u +%Y-%m-%d)."
    if (( $# )); then
      echo "# Preinstalled first (as on the image): $*"
      echo "# then: pip install -e \".[dev]\"  (no constraints; it changed none of the above)."
    else
      echo "# Nothing preinstalled: pip install -e \".[dev]\" without constraints in a fresh venv."
    fi
    echo "# Rebuild: WRITE_CONSTRAINTS=1 .ci/build_stack.sh $name $py $venv $*"
    "$venv/bin/python" -m pip freeze --exclude-editable | grep -v '^pip=='
  } > "constraints/$name.txt"
  echo "wrote constraints/$name.txt"
fi
