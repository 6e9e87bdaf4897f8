#!/usr/bin/env bash
# GPU check of the sgnlake collector (< 5 minutes on one GPU):
#   1. CUDA SGN (loop and vmap engines) against the CPU loop engine, float32 tolerance;
#   2. collect() on the GPU against collect() on the CPU (stored SGN);
#   3. LeNet and FCN snapshot throughput at full-MNIST size (60,000 images, b=50, M=1200)
#      against bare gradient compute; table printed and written to bench/results/gpu_check.md;
#   4. (not with --smoke) the background writer fed that LeNet snapshot (178 MB of SGN) at full speed
#      on 1, 2 and all of this machine's cores vs the codec + file-write limit: bench/results/writer.md.
# Exit status: 0 all checks pass, 1 a correctness check failed, 2 no CUDA / missing packages.
#
#   bash bench/gpu_check.sh                        # on a CUDA machine
#   bash bench/gpu_check.sh --device cpu --smoke   # tiny sizes on the CPU (what CI runs)
#   PYTHON=/path/to/python bash bench/gpu_check.sh # another interpreter
#
# Needs torch (a CUDA build), numpy, zarr>=3.1, numcodecs, tqdm. sgnlake need not be installed:
# the repository is put on the path. On a machine where zarr is missing and nothing can be
# fetched, bring wheels (zarr, numcodecs, donfig, google-crc32c) and put them on PYTHONPATH, e.g.
#   pip download --no-deps --only-binary=:all: -d .whl zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cd "$repo"

py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
fi

missing="$("$py" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("torch", "numpy", "zarr", "numcodecs", "tqdm") if importlib.util.find_spec(m) is None))
EOF
)"
if [[ -n "$missing" ]]; then
    echo "error: $py lacks the Python packages: $missing; install them (see the top of bench/gpu_check.sh) or set PYTHON" >&2
    exit 2
fi

# Make `import sgnlake.*` work from this checkout when sgnlake is not installed: the package is a
# namespace whose stages live in top-level folders (schema/ -> sgnlake.schema, ...).
if ! "$py" -c "import sgnlake.collect.snapshot" >/dev/null 2>&1; then
    shim="$(mktemp -d)"
    trap 'rm -rf "$shim"' EXIT
    mkdir -p "$shim/sgnlake"
    for stage in schema collect analyze cli data; do ln -s "$repo/$stage" "$shim/sgnlake/$stage"; done
    export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONUNBUFFERED=1
# The whole check stays under 5 minutes; a stuck GPU job is stopped rather than left running.
status=0
timeout --signal=INT --kill-after=15 240 "$py" bench/gpu_check.py "$@" || status=$?
if [[ " $* " != *" --smoke "* && $status -ne 2 ]]; then
    device=cuda
    for a in "$@"; do [[ "$a" == cpu ]] && device=cpu; done
    timeout --signal=INT --kill-after=10 55 "$py" bench/writer.py --m 1200 --repeat 1 --snapshots 2 \
        --device "$device" || echo "warning: the writer study (bench/writer.py) failed or ran out of time" >&2
fi
exit $status
