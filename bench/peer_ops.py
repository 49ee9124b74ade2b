#!/usr/bin/env python3
"""Reference results and peer timings for `cargo run --release -p voxflow-nodes --example bench_ops`.

Usage: peer_ops.py [DIR=/tmp/peerdata] [--reps N=3]

- If DIR/ct.nii or DIR/mask_a.nii is missing, generates them with ../shared/peers/peers.py
  (same generator and seed as `peers.py --data DIR`, 512x512x200, spacing 0.8x0.8x2.5 mm).
- Computes, with the recipes of ../shared/peers/sarcopenia_ref.py, the operations that
  bench_ops times, and writes them as x-fastest uint8 files DIR/ref_<op>.bin so bench_ops can
  check voxflow's results voxel for voxel:
    thr      = hu_window(mask_a, ct, -29, 150)
    close331 = closing(thr, (3, 3, 1))
    dil333   = dilate(thr, (3, 3, 3))
    dil553   = dilate(thr, (5, 5, 3))
    cc2d     = remove_small_per_slice(close331, 0.5 ml, 8-connected)
- Times each with the reference recipe and with scipy's fastest variant (medians), and
  writes DIR/ref_times.json; bench_ops prints the ratios.
"""
import json
import os
import sys
import time

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("VOXFLOW_PEERS", os.path.join(HERE, "..", "..", "shared", "peers"))
sys.path.insert(0, PEERS)
import sarcopenia_ref as ref  # noqa: E402


def median_time(reps, fn):
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    d = args[0] if args else "/tmp/peerdata"
    reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 3
    os.makedirs(d, exist_ok=True)
    f_ct, f_a = os.path.join(d, "ct.nii"), os.path.join(d, "mask_a.nii")
    if not (os.path.exists(f_ct) and os.path.exists(f_a)):
        import peers
        print("generating 512x512x200 with peers.py ...", flush=True)
        ct0, a0, _ = peers.generate((512, 512, 200), peers.SEED)
        peers.save_nifti(ct0, f_ct, np.int16)
        peers.save_nifti(a0, f_a, np.uint8)
        del ct0, a0
    ct_img = nib.load(f_ct, mmap=False)
    ct = np.asanyarray(ct_img.dataobj)
    a = np.asanyarray(nib.load(f_a, mmap=False).dataobj).astype(bool)
    spacing = ct_img.header.get_zooms()[:3]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    print(f"ct {ct.shape} {ct.dtype}, spacing {spacing}, voxel_ml {voxel_ml!r}")

    times = {}
    t, thr = median_time(reps, lambda: ref.hu_window(a, ct))
    times["hu_window"] = {"sarcopenia_ref": t}
    t, _ = median_time(reps, lambda: a & ((ct - np.int16(-29)).view(np.uint16) <= np.uint16(179)))
    times["hu_window"]["numpy_fused"] = t
    t, close331 = median_time(reps, lambda: ref.closing(thr))
    times["closing_331"] = {"sarcopenia_ref": t}
    u = thr.view(np.uint8)
    t, _ = median_time(reps, lambda: ndi.minimum_filter(
        ndi.maximum_filter(u, size=(3, 3, 1), mode="constant", cval=0), size=(3, 3, 1), mode="constant", cval=1))
    times["closing_331"]["scipy_max_min_filter"] = t
    t, dil333 = median_time(reps, lambda: ref.dilate(thr, (3, 3, 3)))
    times["dilation_333"] = {"sarcopenia_ref": t}
    t, _ = median_time(reps, lambda: ndi.maximum_filter(u, size=(3, 3, 3), mode="constant", cval=0))
    times["dilation_333"]["scipy_maximum_filter"] = t
    t, dil553 = median_time(reps, lambda: ref.dilate(thr, (5, 5, 3)))
    times["dilation_553"] = {"sarcopenia_ref": t}
    t, _ = median_time(reps, lambda: ndi.maximum_filter(u, size=(5, 5, 3), mode="constant", cval=0))
    times["dilation_553"]["scipy_maximum_filter"] = t
    t, cc2d = median_time(reps, lambda: ref.remove_small_per_slice(close331, 0.5, voxel_ml))
    times["remove_small_per_slice"] = {"sarcopenia_ref": t}

    for name, arr in [("thr", thr), ("close331", close331), ("dil333", dil333), ("dil553", dil553), ("cc2d", cc2d)]:
        with open(os.path.join(d, f"ref_{name}.bin"), "wb") as f:
            f.write(np.asfortranarray(arr.astype(np.uint8)).tobytes(order="F"))
        print(f"{name}: {int(np.count_nonzero(arr))} voxels")
    with open(os.path.join(d, "ref_times.json"), "w") as f:
        json.dump({"reps": reps, "seconds": times}, f, indent=1)
    print(json.dumps(times, indent=1))


if __name__ == "__main__":
    main()
