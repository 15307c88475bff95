#!/usr/bin/env bash
# Compile-checks the `cuda` feature on a machine without CUDA or a GPU.
#
# Lays out a CUDA 13.0 compiler from PyPI wheels (tools/cuda-toolchain.sh),
# then builds, in a separate target dir so that the CPU build cache is left
# alone: petseg-ops3d's `cuda` examples (cuda_check, the kernel check) and the
# GPU-capable `petseg` binary (petseg-cli --features cuda, which forwards to
# petseg-train, petseg-models, petseg-ops3d, candle-core and candle-nn). The
# binaries need a GPU machine's CUDA 13 libraries to start; run them there with
# crates/petseg-ops3d/scripts/gpu-check.sh and
# crates/petseg-train/scripts/gpu-train-check.sh.
#
# usage: tools/cuda-check.sh [TOOLKIT_DIR] (default: target-cuda/toolkit)
# (CARGO_TARGET_DIR defaults to target-cuda; the binaries end up in
#  $CARGO_TARGET_DIR/release/petseg and $CARGO_TARGET_DIR/release/examples/cuda_check)
set -euo pipefail
cd "$(dirname "$0")/.."
tk_dir=${1:-target-cuda/toolkit}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
cargo fetch --quiet
if [ ! -x "$tk_dir/nvidia/cu13/bin/nvcc" ]; then
    bash tools/cuda-toolchain.sh "$tk_dir"
fi
tk=$(cd "$tk_dir/nvidia/cu13" && pwd)
export CUDA_HOME=$tk PATH=$tk/bin:$PATH CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} CUDARC_CUDA_VERSION=13000
# One build for both, so that features unify and candle's CUDA kernels (minutes of nvcc)
# are compiled once.
cargo build --release -p petseg-ops3d -p petseg-cli \
    --features petseg-ops3d/cuda,petseg-cli/cuda --bins --examples
echo "cuda feature compiles: $CARGO_TARGET_DIR/release/petseg, $CARGO_TARGET_DIR/release/examples/cuda_check"
