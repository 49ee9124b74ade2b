#!/usr/bin/env bash
# The GPU checks of issues 7 and 8 in one run on an NVIDIA machine (burn wgpu over Vulkan),
# next to the Keras 3 + JAX peer on the same GPU:
#   1. training step (seed U-Net, batch 8 of 128x128) and the trainer's wait share, in two
#      processes: the second starts with the kernel cache the first filled;
#   2. inference on 512x512 slices by batch size, and on the real CT series with the CPU's
#      labels beside the GPU's (voxels differing);
#   3. the real-data training graph (graphs/train_ct_sm.ron) on the GPU, then its test-slice
#      evaluation on the GPU twice (determinism) and on the CPU (GPU/CPU agreement).
#
# bench/gpu_prepare.sh builds and packs all of the following on a machine without a GPU.
# Expects, relative to the repository root:
#   $BIN (default .gpubin/)  voxflow, train_step, unet_infer built with the GPU feature,
#   wgpu-tuned (what training uses; plain wgpu for the untuned kernels):
#       cargo build --release --features voxflow-cli/wgpu-tuned,voxflow-bench/wgpu-tuned \
#           -p voxflow-cli -p voxflow-bench --bin voxflow --bin train_step --bin unet_infer
#   (or those three compressed as NAME.xz, for machines that take a size-limited tree);
#   .gl/    the Vulkan loader .debs when the machine has none (libvulkan1 ...)
#   .whl/   keras, namex, optree wheels when its Python lacks keras
#   $DATA (default .gpudata/data) ct_sm*.nii.gz;  $VOXFLOW_PEERS (default .gpudata/peers)
# Writes its reports to $OUT (default gpu_out/).
set -u
BIN=${BIN:-.gpubin}
DATA=${DATA:-.gpudata/data}
OUT=${OUT:-gpu_out}
# GPU=cpu runs the same steps on the CPU (a dry run of this script on a machine without one).
GPU=${GPU:-gpu}
mkdir -p "$OUT"
export VOXFLOW_PEERS=${VOXFLOW_PEERS:-$PWD/.gpudata/peers}

for f in "$BIN"/*.xz; do
    [ -e "$f" ] || continue
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$f" "${f%.xz}" && chmod +x "${f%.xz}"
done
if ! ldconfig -p | grep -q libvulkan && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
if ! python3 -c "import keras" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export VOXFLOW_PYTHON=${VOXFLOW_PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/machine.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$OUT/machine.txt"

# STEPS="1 2 3" (default) picks the sections to run.
STEPS=${STEPS:-1 2 3}
if [[ $STEPS == *1* ]]; then
echo "== 1. training step, twice: a cold kernel cache, then the one the first run filled"
# The second process should skip tuning: its warm-up steps and wall time show what the
# persistent cache (unet/src/gpu_cache.rs) saves.
export VOXFLOW_GPU_CACHE=${VOXFLOW_GPU_CACHE:-/tmp/voxflow-gpu-cache}
rm -rf "$VOXFLOW_GPU_CACHE"
for pass in cold warm; do
    echo "-- $pass kernel cache ($VOXFLOW_GPU_CACHE)" | tee -a "$OUT/train_step.txt"
    t0=$(date +%s.%N)
    VOXFLOW_BENCH_DEVICE=$GPU timeout 200 "$BIN/train_step" 30 2>&1 | tee -a "$OUT/train_step.txt"
    echo "process wall: $(awk "BEGIN{print $(date +%s.%N) - $t0}") s" | tee -a "$OUT/train_step.txt"
done
{ du -sh "$VOXFLOW_GPU_CACHE" 2>/dev/null || echo "no kernel cache written (CPU run)"; } |
    tee -a "$OUT/train_step.txt"

fi
if [[ $STEPS == *2* ]]; then
echo "== 2. inference"
VOXFLOW_BENCH_DEVICE=$GPU timeout 200 "$BIN/unet_infer" 64 3 2>&1 | tee "$OUT/unet_infer.txt"

fi
[[ $STEPS == *3* ]] || exit 0
echo "== 3. real data on the GPU"
runs=/tmp/ct_sm
t0=$(date +%s.%N)
timeout 240 "$BIN/voxflow" run graphs/train_ct_sm.ron --set "data=$DATA" --set "device=$GPU" \
    --out "$runs" 2>&1 | tail -5
t1=$(date +%s.%N)
echo "training graph wall: $(awk "BEGIN{print $t1 - $t0}") s" | tee "$OUT/ct_sm.txt"
tail -3 "$runs/training/metrics.jsonl" >> "$OUT/ct_sm.txt"
for run in "gpu1:$GPU" "gpu2:$GPU" cpu:cpu; do
    name=${run%%:*}
    timeout 120 "$BIN/voxflow" run graphs/evaluate_ct_sm.ron --set "data=$DATA" \
        --set "model=$runs/training/best.vxmodel" --set "device=${run##*:}" \
        --out "/tmp/eval_$name" 2>&1 | tail -2
    echo "-- test slices, $name" >> "$OUT/ct_sm.txt"
    cat "/tmp/eval_$name/test_slices_dice.csv" >> "$OUT/ct_sm.txt"
done
# Voxels whose label differs between the runs (plain numpy: no nibabel on such machines).
python3 - >> "$OUT/ct_sm.txt" <<'PY'
import gzip, struct, numpy as np
def load(p):
    b = gzip.open(p).read()
    dt = {2: np.uint8, 4: np.int16, 512: np.uint16, 8: np.int32}[struct.unpack_from("<h", b, 70)[0]]
    return np.frombuffer(b, dt, offset=int(struct.unpack_from("<f", b, 108)[0]))
a = load("/tmp/eval_gpu1/ct_sm_unet_labels.nii.gz")
for other in ("gpu2", "cpu"):
    o = load(f"/tmp/eval_{other}/ct_sm_unet_labels.nii.gz")
    print(f"labels gpu1 vs {other}: {int((a != o).sum())} of {a.size} voxels differ")
PY
cat "$OUT/ct_sm.txt"
