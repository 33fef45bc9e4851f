#!/usr/bin/env bash
# CUDA check of the tch kernels and of the torch-op path (UCAG_KERNELS=portable) on a GPU
# machine that has torch 2.11 but no Rust: install the
# wheel built elsewhere (dist/, `./dev wheel`, which adds the tch module) into a
# scratch folder, run the CUDA tests plus the kernel and explainer tests, and the CUDA benchmark.
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
nvidia-smi -L
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
# a wheel is a zip archive: unpacking it is all the install an import needs
# (the tch wheel: the one in dist/ whose tag is not manylinux2014 and which holds ucag/_tch)
python3 -c "import glob, zipfile; zipfile.ZipFile([w for w in glob.glob('dist/ucag-*x86_64.whl') if 'manylinux2014' not in w][0]).extractall('/tmp/ucag_site')" || exit 1
# pure-Python packages the image lacks (grad-cam, ttach, the sample model), carried in .whl/
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/ucag_site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/ucag_site PYTHONUNBUFFERED=1
python3 -c "import torch, ucag; ucag.show_config()" 2>&1 | tee "$out/config.log"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_kernel_paths.py tests/test_kernels.py tests/test_errors.py tests/test_grid.py tests/test_explainer.py tests/test_truncation.py tests/test_metrics.py 2>&1 | tee "$out/pytest.log"
# the path another torch gets on CUDA (torch operations), forced
UCAG_KERNELS=portable python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_kernel_paths.py tests/test_kernels.py 2>&1 | tee "$out/pytest_portable.log"
python3 benchmarks/kernels.py --device cuda 2>&1 | tee "$out/bench_cuda.log"
python3 benchmarks/metrics.py --device cuda --batch-size 128 2>&1 | tee "$out/bench_metrics_cuda.log"
# mixed precision on the GPU (issue 29): images/s of UCAG(Grad-CAM) and of the whole evaluate at
# fp32, bf16 and fp16-capable batch sizes, with and without channels-last, and the projected
# time for 50,000 ImageNet images; bounded to 8 minutes, its JSON beside the logs
timeout 480 python3 benchmarks/throughput.py --device cuda --images 8 --repeats 2 --batch-sizes 64,144 \
    --json "$out/throughput_cuda.json" 2>&1 | tee "$out/throughput_cuda.log"
