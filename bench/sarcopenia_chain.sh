#!/usr/bin/env bash
# The whole sarcopenia post-processing chain on a 512x512x200 CT (phantom, 0.8x0.8x2.5 mm):
# voxflow's graph next to the reference implementation (numpy + scipy) in the same run.
# Reports median wall time (3 runs each), compute-only time, and peak memory (/usr/bin/time -v).
#
#   bench/sarcopenia_chain.sh [PYTHON]     (PYTHON: a python with numpy, scipy, nibabel;
#                                          VOXFLOW_BIN=path skips building voxflow)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-${VOXFLOW_PYTHON:-python3}}"
DATA="${BENCH_DATA:-target/bench-data/chain}"
# VOXFLOW_BIN: an already built voxflow (skips the build).
VF="${VOXFLOW_BIN:-}"
if [ -z "$VF" ]; then
  cargo build --release -q -p voxflow-cli
  VF=target/release/voxflow
fi
mkdir -p "$DATA"
if [ ! -f "$DATA/prediction.nii.gz" ]; then
  cat > "$DATA/make.ron" <<'RON'
Graph(name: "make", nodes: {
    "p":    (node: "Phantom", params: (seed: 11, dims: (512, 512, 200), spacing_mm: (0.8, 0.8, 2.5))),
    "ct":   (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
    "pred": (node: "SaveNifti", inputs: (volume: "p.prediction"), params: (path: "prediction.nii.gz")),
})
RON
  "$VF" run "$DATA/make.ron" --out "$DATA" -q
fi
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
vf_wall=(); vf_compute=(); ref_wall=(); ref_compute=()
for i in 1 2 3; do
  /usr/bin/time -v -o "$DATA/vf_time.txt" "$VF" run graphs/sarcopenia_postprocess.ron -q \
      --set ct="$DATA/ct.nii.gz" --set prediction="$DATA/prediction.nii.gz" --out "$DATA/vf_out" --report "$DATA/report.json"
  vf_wall+=("$(grep 'Elapsed (wall' "$DATA/vf_time.txt" | awk -F': ' '{split($2,t,":"); print t[1]*60+t[2]}')")
  vf_rss=$(grep 'Maximum resident' "$DATA/vf_time.txt" | awk '{print $6}')
  # Compute only: the run's wall time minus loading and saving (they overlap nothing else at start/end).
  vf_compute+=("$("$PY" -c "
import json; r=json.load(open('$DATA/report.json'))
io=sum(n['wall_ms'] for n in r['nodes'] if n['type'] in ('LoadNifti','LoadLabels','SaveNifti','WriteTable'))
print((r['wall_ms']-io)/1000)")")
  /usr/bin/time -v -o "$DATA/ref_time.txt" "$PY" ../shared/peers/sarcopenia_ref.py "$DATA/ct.nii.gz" "$DATA/prediction.nii.gz" "$DATA/ref.nii.gz" --time > "$DATA/ref_out.txt"
  ref_wall+=("$(grep 'Elapsed (wall' "$DATA/ref_time.txt" | awk -F': ' '{split($2,t,":"); print t[1]*60+t[2]}')")
  ref_rss=$(grep 'Maximum resident' "$DATA/ref_time.txt" | awk '{print $6}')
  ref_compute+=("$(grep 'postprocess seconds' "$DATA/ref_out.txt" | awk '{print $3}')")
done
vw=$(printf '%s\n' "${vf_wall[@]}" | median); vc=$(printf '%s\n' "${vf_compute[@]}" | median)
rw=$(printf '%s\n' "${ref_wall[@]}" | median); rc=$(printf '%s\n' "${ref_compute[@]}" | median)
ct_mb=$(( 512 * 512 * 200 * 2 / 1048576 ))
echo "sarcopenia chain, 512x512x200, medians of 3:"
printf '  %-22s %10s %12s %14s\n' "" "wall (s)" "compute (s)" "peak RSS (MB)"
printf '  %-22s %10.3f %12.3f %14d\n' "voxflow" "$vw" "$vc" "$((vf_rss / 1024))"
printf '  %-22s %10.3f %12.3f %14d\n' "sarcopenia_ref.py" "$rw" "$rc" "$((ref_rss / 1024))"
awk -v a="$rw" -v b="$vw" -v c="$rc" -v d="$vc" 'BEGIN {printf "  voxflow is %.1fx faster end to end, %.1fx faster in compute\n", a/b, c/d}'
echo "  CT in memory: ${ct_mb} MB (int16); voxflow peak is $(awk -v r="$vf_rss" -v c="$ct_mb" 'BEGIN {printf "%.2f", r/1024/c}')x that"
"$PY" - "$DATA" <<'PY'
import sys, nibabel as nib, numpy as np
d = sys.argv[1]
a = np.asanyarray(nib.load(f"{d}/vf_out/sarcopenia_labels.nii.gz").dataobj)
b = np.asanyarray(nib.load(f"{d}/ref.nii.gz").dataobj)
print(f"  voxels differing from the reference: {int((a != b).sum())}")
PY
