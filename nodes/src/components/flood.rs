//! Reference labelling (the `flood` implementation): scan the voxels in order (x
//! fastest, then y, then z) and flood-fill each unlabelled foreground voxel's component
//! breadth-first through the connectivity's neighbour offsets. Simple and obviously
//! right; the run-based labelling is tested against it.

use std::collections::VecDeque;

use voxflow_engine::Mask;

use super::connectivity::Connectivity;
use super::kernels::Components;
use crate::shared::grid::{index, neighbour};

/// Label the components of `mask` by flood fill; ids follow scan order like
/// [`super::kernels::label_runs`].
pub fn label_flood(mask: &Mask, conn: Connectivity) -> Components {
    let [nx, ny, nz] = mask.dims();
    let src = mask.to_bytes();
    let offsets = conn.offsets();
    let mut ids = vec![0u32; src.len()];
    let mut sizes = vec![0u64];
    let mut slice_first = Vec::with_capacity(nz + 1);
    let mut queue = VecDeque::new();
    for z in 0..nz {
        slice_first.push((sizes.len() - 1) as u32);
        for y in 0..ny {
            for x in 0..nx {
                let i = x + nx * (y + ny * z);
                if src[i] == 0 || ids[i] != 0 {
                    continue;
                }
                let id = sizes.len() as u32;
                sizes.push(0);
                ids[i] = id;
                queue.push_back([x, y, z]);
                while let Some([cx, cy, cz]) = queue.pop_front() {
                    sizes[id as usize] += 1;
                    for o in &offsets {
                        let Some(q) = neighbour([nx, ny, nz], [cx, cy, cz], o) else {
                            continue;
                        };
                        let j = index([nx, ny, nz], q);
                        if src[j] != 0 && ids[j] == 0 {
                            ids[j] = id;
                            queue.push_back(q);
                        }
                    }
                }
            }
        }
    }
    slice_first.push((sizes.len() - 1) as u32);
    let per_slice = conn.per_slice().then_some(slice_first);
    Components::from_voxels([nx, ny, nz], ids, sizes, per_slice)
}
