//! Voxel connectivity: which neighbours join two voxels into one component.

use std::fmt;

/// A `connectivity` that does not fit `per_slice` (the node names the param).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectivityError {
    /// 4 or 8 without `per_slice`.
    #[error("{0} is an in-plane connectivity: set `per_slice: true`, or use 6, 18 or 26 in 3D")]
    InPlaneIn3d(u8),
    /// 6, 18 or 26 with `per_slice`.
    #[error(
        "{0} is a 3D connectivity: use 4 or 8 with `per_slice: true`, or set `per_slice: false`"
    )]
    ThreeDPerSlice(u8),
    /// Another number with `per_slice`.
    #[error("must be 4 or 8 with `per_slice: true`, got {0}")]
    NotInPlane(u8),
    /// Another number in 3D.
    #[error("must be 6, 18 or 26 in 3D, got {0}")]
    Not3d(u8),
}

/// Which voxels count as neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connectivity {
    /// In-plane, sharing an edge: (±1, 0, 0), (0, ±1, 0). Per axial slice.
    Plane4,
    /// In-plane, sharing an edge or a corner (the 3x3 square). Per axial slice.
    Plane8,
    /// Sharing a face: the 6 axis neighbours.
    Face6,
    /// Sharing a face or an edge: offsets with at most two non-zero coordinates.
    Edge18,
    /// Sharing a face, an edge or a corner: the whole 3x3x3 cube.
    Vertex26,
}

impl Connectivity {
    /// The connectivity for a node's params: `None` means 8 when `per_slice`, else 26.
    /// 4 and 8 need `per_slice: true`; 6, 18 and 26 need `per_slice: false`.
    pub fn from_params(
        connectivity: Option<u8>,
        per_slice: bool,
    ) -> Result<Self, ConnectivityError> {
        match (connectivity, per_slice) {
            (None, true) | (Some(8), true) => Ok(Connectivity::Plane8),
            (None, false) | (Some(26), false) => Ok(Connectivity::Vertex26),
            (Some(4), true) => Ok(Connectivity::Plane4),
            (Some(6), false) => Ok(Connectivity::Face6),
            (Some(18), false) => Ok(Connectivity::Edge18),
            (Some(c @ (4 | 8)), false) => Err(ConnectivityError::InPlaneIn3d(c)),
            (Some(c @ (6 | 18 | 26)), true) => Err(ConnectivityError::ThreeDPerSlice(c)),
            (Some(c), true) => Err(ConnectivityError::NotInPlane(c)),
            (Some(c), false) => Err(ConnectivityError::Not3d(c)),
        }
    }

    /// Whether components stay within one axial slice.
    pub fn per_slice(self) -> bool {
        matches!(self, Connectivity::Plane4 | Connectivity::Plane8)
    }

    /// The number of neighbours (4, 8, 6, 18 or 26).
    pub fn neighbours(self) -> u8 {
        match self {
            Connectivity::Plane4 => 4,
            Connectivity::Plane8 => 8,
            Connectivity::Face6 => 6,
            Connectivity::Edge18 => 18,
            Connectivity::Vertex26 => 26,
        }
    }

    /// Every neighbour offset `(dx, dy, dz)`.
    pub fn offsets(self) -> Vec<[isize; 3]> {
        let (dzs, max_nonzero): (&[isize], usize) = match self {
            Connectivity::Plane4 => (&[0], 1),
            Connectivity::Plane8 => (&[0], 2),
            Connectivity::Face6 => (&[-1, 0, 1], 1),
            Connectivity::Edge18 => (&[-1, 0, 1], 2),
            Connectivity::Vertex26 => (&[-1, 0, 1], 3),
        };
        let mut out = Vec::new();
        for &dz in dzs {
            for dy in -1..=1isize {
                for dx in -1..=1isize {
                    let nz = [dx, dy, dz].iter().filter(|&&d| d != 0).count();
                    if nz >= 1 && nz <= max_nonzero {
                        out.push([dx, dy, dz]);
                    }
                }
            }
        }
        out
    }
}

impl fmt::Display for Connectivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-connectivity{}",
            self.neighbours(),
            if self.per_slice() { " per slice" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_counts_and_param_rules() {
        for c in [
            Connectivity::Plane4,
            Connectivity::Plane8,
            Connectivity::Face6,
            Connectivity::Edge18,
            Connectivity::Vertex26,
        ] {
            assert_eq!(c.offsets().len(), c.neighbours() as usize);
            assert_eq!(
                Connectivity::from_params(Some(c.neighbours()), c.per_slice()),
                Ok(c)
            );
            assert!(Connectivity::from_params(Some(c.neighbours()), !c.per_slice()).is_err());
        }
        assert_eq!(
            Connectivity::from_params(None, true),
            Ok(Connectivity::Plane8)
        );
        assert_eq!(
            Connectivity::from_params(None, false),
            Ok(Connectivity::Vertex26)
        );
        assert_eq!(
            Connectivity::from_params(Some(5), true),
            Err(ConnectivityError::NotInPlane(5))
        );
        assert!(Connectivity::from_params(Some(8), false)
            .unwrap_err()
            .to_string()
            .contains("set `per_slice: true`"));
    }
}
