#!/usr/bin/env bash
# The measurements that need a GPU, as two long commands for a lent device machine:
#
#   bash validation/gpu_session.sh profile OUT   kernel profile of the catalog's shapes
#   bash validation/gpu_session.sh runs OUT      reference runs of the bundled traces
#
# Run from the repository root. The machine has torch but no network: the project's
# other dependencies it lacks (simpy, pydantic and pydantic's own) travel as wheels in
# .whl/ (see the device notes: pip download --only-binary=:all: --python-version 3.12
# --platform manylinux2014_x86_64 ...), installed here into /tmp/site.
# Afterwards, on this side: `clustersim profile check OUT/profile`, copy the profile to
# profiles/data/<gpu>/, and for each run `clustersim reference compare` and
# `clustersim reference record RUN --id ...`; commit them as data.
set -euo pipefail
what=${1:?profile or runs}
out=${2:?output folder}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
clustersim() { python3 -c 'import sys; from cli import main; sys.argv[0] = "clustersim"; main()' "$@"; }
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi") | tee "$out/device.txt"
case "$what" in
  profile)
    # Llama-3-8B/70B, Llama-2-7B/13B/70B, Mistral-7B, Qwen2.5-72B, Mixtral-8x7B, GPT-3.
    clustersim profile --gpu h100 --out "$out/profile" --tp 1,2,4,8 \
      --models llama-3-8b,llama-3-70b,llama-2-7b,llama-2-13b,llama-2-70b,mistral-7b,qwen2.5-72b,mixtral-8x7b,gpt-3-175b \
      2>&1 | tee "$out/profile.log"
    ;;
  runs)
    for trace in chat summarization; do
      clustersim reference run --workload "workloads/examples/$trace.json" \
        --model llama-3-8b --gpu h100 --scheduler sarathi --max-num-batched-tokens 2048 \
        --max-num-seqs 128 --out "$out/llama3-8b-$trace" 2>&1 | tee "$out/$trace.log"
    done
    ;;
  *) echo "unknown: $what (profile or runs)" >&2; exit 2 ;;
esac
