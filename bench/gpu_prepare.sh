#!/usr/bin/env bash
# Builds and packs, on a machine without a GPU, what bench/gpu_check.sh needs on a lent
# GPU machine (the `device` tool), within the 64 MiB that a device run can carry:
#   .gpubin/   train_step and unet_infer built with `wgpu-tuned`, stripped and
#              xz-compressed (~20 MB each); WITH_VOXFLOW=1 adds voxflow for step 3 (then the
#              tree is near the limit: leave .whl out, the peer is skipped)
#   .gpudata/  ../shared/data's ct_sm*.nii.gz and dicom/ct_series, and ../shared/peers
#   .gl/       the Vulkan loader's .debs (libvulkan1), which those machines lack
#   .whl/      keras, namex and optree for the machine's Python 3.12 (it has jax, not keras)
# and lists them in .git/info/exclude. Then one device run, e.g.:
#   command: STEPS="1 2" bash bench/gpu_check.sh   carry: [.gpubin, .gpudata, .gl, .whl]
# The build takes ~10 min on 2 cores (its own target folder: GPU_TARGET, default
# target/gpu); each compression about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${GPU_TARGET:-target/gpu}
SHARED=${SHARED:-../shared}
bins=(train_step unet_infer)
features=voxflow-bench/wgpu-tuned
build_args=(-p voxflow-bench --bin train_step --bin unet_infer)
if [[ ${WITH_VOXFLOW:-0} == 1 ]]; then
    bins+=(voxflow)
    features+=,voxflow-cli/wgpu-tuned
    build_args+=(-p voxflow-cli --bin voxflow)
fi

for d in .gpubin .gpudata .gl .whl; do
    grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >>.git/info/exclude
done

CARGO_TARGET_DIR=$TARGET cargo build --release --features "$features" "${build_args[@]}"

rm -rf .gpubin && mkdir .gpubin
for b in "${bins[@]}"; do
    strip -o ".gpubin/$b" "$TARGET/release/$b"
    xz -T0 -6 ".gpubin/$b" # gpu_check.sh unpacks NAME.xz
done

rm -rf .gpudata && mkdir -p .gpudata/data
cp "$SHARED"/data/ct_sm*.nii.gz .gpudata/data/
cp -r "$SHARED/data/dicom" .gpudata/data/
cp -r "$SHARED/peers" .gpudata/peers

rm -rf .gl && mkdir -p .gl /tmp/gpu_prepare_apt
apt_o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gpu_prepare_apt)
apt-get "${apt_o[@]}" update -qq
(cd .gl && apt-get "${apt_o[@]}" download libvulkan1)

rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "keras==${KERAS_VERSION:-3.15.1}" namex optree

du -sh .gpubin .gpudata .gl .whl
du -cb $(git ls-files) .gpubin .gpudata .gl .whl 2>/dev/null | tail -1 |
    awk '{printf "tree to carry: %.1f MiB of 64\n", $1 / 1048576}'
