#!/usr/bin/env bash
# Run the petseg-ops3d CUDA check on a GPU machine (CUDA 13 driver, no Rust needed).
#
# Build here, on a machine without CUDA or a GPU (lays out a CUDA 13 compiler from PyPI wheels):
#   tools/cuda-check.sh          # -> target-cuda/release/examples/cuda_check
# Copy target-cuda/release/examples/cuda_check and this script to the GPU machine, then:
#   ./gpu-check.sh ./cuda_check
# Exit status: 0 = every op matches the CPU; 1 = mismatch or run-time error; 2 = missing libraries.
set -uo pipefail
bin=${1:-./cuda_check}
[ -x "$bin" ] || { echo "no executable at $bin (pass its path as the first argument)"; exit 2; }

# Where the CUDA 13 libraries usually are: the toolkit, the driver's dir, and pip's nvidia wheels
# (torch installs libcublas/libcurand/libnvrtc/libcudart there).
dirs=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64
      /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64)
for py in python3 python; do
  command -v "$py" >/dev/null 2>&1 || continue
  for s in $("$py" -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
    for d in "$s"/nvidia/*/lib "$s"/nvidia/cu13/lib; do [ -d "$d" ] && dirs+=("$d"); done
  done
  break
done
ld=""
for d in "${dirs[@]}"; do [ -d "$d" ] && case ":$ld:" in *":$d:"*) ;; *) ld="$ld:$d" ;; esac; done
export LD_LIBRARY_PATH="${ld#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
ldd --version | head -1

echo "--- ldd $bin"
ldd "$bin"
if ldd "$bin" | grep -q "not found"; then
  echo "missing shared libraries (above): add their directory to LD_LIBRARY_PATH and rerun"
  exit 2
fi
echo "--- run"
"$bin"
status=$?
echo "--- cuda_check exit status $status"
exit $status
