#!/usr/bin/env bash
# The README's first command, `pip install -e . && python train.py`, as on a fresh machine: a new
# virtual environment with the runtime install only (no extras), small MNIST files generated with
# numpy (.ci/make_digits.py), one short epoch (the overrides only shrink the run for these files);
# the run must end by printing `test/acc:`, with its TensorBoard figures drawn. About 1-2 minutes:
# pip takes torch from this machine's disk (~60 s); a torch or CUDA wheel downloaded is reported.
# With a virtual environment's folder as its argument (.ci/run's), it installs into that one.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/neolenet-first.XXXXXX")
trap 'rm -rf "$work"' EXIT

venv=${1:-$work/venv}
[ -x "$venv/bin/python" ] || python -m venv "$venv"
export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
unset PYTHONPATH PYTHONHOME
if ! python -m pip install --disable-pip-version-check --progress-bar off -e . > "$work/pip.log" 2>&1; then
    tail -40 "$work/pip.log"
    echo "first command: pip install -e . failed in a new virtual environment" >&2
    exit 1
fi
if grep -E "^\s*Downloading (torch|torchvision|nvidia|triton)[-_]" "$work/pip.log"; then
    echo "first command: note: the wheels above were downloaded, not taken from this machine's disk"
fi
echo "first command: pip install -e . in a new virtual environment: $((SECONDS - start)) s"

python .ci/make_digits.py "$work/data"
t=$SECONDS
status=0
DATA_DIR="$work/data" LOG_DIR="$work/logs" NEOLENET_CACHE_DIR="$work/cache" \
    python train.py trainer.max_epochs=1 data.val_size=100 > "$work/train.log" 2>&1 || status=$?
if [ "$status" -ne 0 ] || ! grep -q '^test/acc:' "$work/train.log"; then
    tail -60 "$work/train.log"
    echo "first command: python train.py did not end with test/acc: (exit status $status)" >&2
    exit 1
fi
if grep -q "matplotlib is not installed" "$work/train.log"; then
    echo "first command: the runtime install lacks matplotlib (the TensorBoard figures)" >&2
    exit 1
fi
grep -E '^(test/acc:|time:)' "$work/train.log"
echo "first command: python train.py: $((SECONDS - t)) s; whole step $((SECONDS - start)) s"
