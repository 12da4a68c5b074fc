#!/bin/bash
# Builds the folder one device call needs to check an accelerator machine (one without
# TensorFlow): `cd KIT && bash gpu/run.sh` then installs the small wheels, prints the machine,
# and runs benchmarks/accelerator_check.py (fed %, the tests that need no TensorFlow).
#
#   bash benchmarks/gpu_kit.sh [KIT]        # KIT defaults to gpu_kit/ (git-ignored)
#
#   KIT/proj/  the project at HEAD (git archive: committed work only)
#   KIT/whl/   wheels the accelerator machine lacks, for its Python (3.12; PY_VERSION=3.x
#              to change): ml_collections, tensorboardX, dm_pix (pip download, no deps)
#   KIT/gpu/   run.sh (below); CHECK_ARGS="--budget 420" passes flags to the check
# WHEELS=0 skips the download (the kit then relies on what the machine has).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
KIT=${1:-$REPO/gpu_kit}
PY_VERSION=${PY_VERSION:-3.12}
rm -rf "$KIT"
mkdir -p "$KIT/proj" "$KIT/whl" "$KIT/gpu"
git -C "$REPO" archive HEAD | tar -x -C "$KIT/proj"
if [ "${WHEELS:-1}" != 0 ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$KIT/whl" \
    ml_collections==1.1.0 tensorboardX==2.6.5 dm_pix==0.4.5
fi
cat > "$KIT/gpu/run.sh" <<'EOF'
#!/bin/bash
# Run from the kit folder: `bash gpu/run.sh`. OUT (where log.txt goes) defaults to the kit.
set -u
OUT=${OUT:-$PWD}
exec > >(tee "$OUT/log.txt") 2>&1
echo "=== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader \
  2>/dev/null || echo "no nvidia-smi"
if ls whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site whl/*.whl || echo "wheel install failed"
fi
cd proj
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
echo "=== benchmarks/accelerator_check.py ${CHECK_ARGS:-}"
# shellcheck disable=SC2086
python3 benchmarks/accelerator_check.py ${CHECK_ARGS:-}
echo "=== exit code $?"
EOF
cp "$REPO/benchmarks/gpu_kit.sh" "$KIT/gpu/"  # How the kit was made, for the record.
echo "kit: $KIT ($(du -sh "$KIT" | cut -f1)); on the accelerator machine: cd KIT && bash gpu/run.sh"
