//! Voxel neighbours on an `[nx, ny, nz]` grid stored x fastest: the bounds check the
//! reference (offset by offset) kernels of components and morphology share.

/// The voxel at `p + o`, or `None` when that is off the grid.
#[inline]
pub fn neighbour(dims: [usize; 3], p: [usize; 3], o: &[isize; 3]) -> Option<[usize; 3]> {
    let mut q = [0usize; 3];
    for k in 0..3 {
        let v = p[k] as isize + o[k];
        if v < 0 || v >= dims[k] as isize {
            return None;
        }
        q[k] = v as usize;
    }
    Some(q)
}

/// Linear index of voxel `q` (x fastest, then y, then z).
#[inline]
pub fn index(dims: [usize; 3], q: [usize; 3]) -> usize {
    q[0] + dims[0] * (q[1] + dims[1] * q[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_stop_at_every_face() {
        let d = [3, 2, 4];
        assert_eq!(neighbour(d, [0, 0, 0], &[-1, 0, 0]), None);
        assert_eq!(neighbour(d, [2, 1, 3], &[1, 0, 0]), None);
        assert_eq!(neighbour(d, [2, 1, 3], &[0, 1, 0]), None);
        assert_eq!(neighbour(d, [2, 1, 3], &[0, 0, 1]), None);
        assert_eq!(neighbour(d, [1, 0, 2], &[1, 1, -2]), Some([2, 1, 0]));
        assert_eq!(index(d, [2, 1, 3]), 2 + 3 * (1 + 2 * 3));
    }
}
