#!/usr/bin/env bash
# Everything that needs a GPU, in one go (about 3-5 minutes): the CUDA tests, then the speed
# benchmark on CUDA against the plain loop on the same GPU. Run from the repository root on a
# machine with CUDA:  bash benchmarks/gpu_check.sh [DATA_HOME]
# MNIST is read from (or downloaded into) DATA_HOME/mnist/; without DATA_HOME, the data home is
# $SKAE_DATA, else scikit-learn's (~/scikit_learn_data).
# Judge the GPU's epoch time by the skae_fit row: the skae row trains one partial_fit per epoch,
# and each call copies the data to the device and captures the CUDA graph anew.
set -uo pipefail
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider || status=1
# ${1:+...} passes --data-home only when DATA_HOME is given, so the library's default applies.
python benchmarks/bench_speed.py --device cuda ${1:+--data-home "$1"} --epochs 5 --repeats 2 \
    --no-skorch || status=1
exit $status
