//! Structuring elements: odd boxes and voxelised ellipsoids.
//!
//! Every element is symmetric about its centre voxel. The fast kernels rely on that:
//! erosion is computed as the complement of the dilation of the complement, which equals
//! erosion only when the element equals its reflection.

/// Largest element half-size along one axis, in voxels. Bigger elements are almost
/// certainly a unit mistake (mm given where voxels were meant, or a tiny spacing).
pub const MAX_RADIUS_VOXELS: usize = 512;

/// One row of an element: every offset `(dx, dy, dz)` with `|dx| <= rx` belongs to it.
///
/// Ellipsoids are convex and symmetric, so each of their rows along x is one centred
/// run; the fast dilation ORs whole packed rows shifted by `(dy, dz)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Offset along y, in voxels.
    pub dy: isize,
    /// Offset along z, in voxels.
    pub dz: isize,
    /// Half-width of the run along x, in voxels.
    pub rx: usize,
}

/// Why a structuring element cannot be made (the node names the param).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ElementError {
    /// A box size that is even or zero (the element is centred on the voxel).
    #[error("size along {axis} must be odd (1, 3, 5, ...), got {size}")]
    EvenSize {
        /// `x`, `y` or `z`.
        axis: &'static str,
        /// The size given.
        size: usize,
    },
    /// A box size beyond `2 * MAX_RADIUS_VOXELS + 1`.
    #[error("size along {axis} must be at most {}, got {size}", 2 * MAX_RADIUS_VOXELS + 1)]
    SizeTooLarge {
        /// `x`, `y` or `z`.
        axis: &'static str,
        /// The size given.
        size: usize,
    },
    /// A negative, NaN or infinite semi-axis.
    #[error("radius along {axis} must be a finite number >= 0 mm, got {radius_mm}")]
    BadRadius {
        /// `x`, `y` or `z`.
        axis: &'static str,
        /// The semi-axis given.
        radius_mm: f64,
    },
    /// A voxel spacing that is not a positive number.
    #[error("voxel spacing along {axis} must be > 0 mm, got {spacing_mm}")]
    BadSpacing {
        /// `x`, `y` or `z`.
        axis: &'static str,
        /// The spacing of the grid.
        spacing_mm: f64,
    },
    /// A semi-axis spanning more than `MAX_RADIUS_VOXELS` voxels of this grid.
    #[error("radius {radius_mm} mm along {axis} is more than {MAX_RADIUS_VOXELS} voxels of {spacing_mm} mm")]
    RadiusTooLarge {
        /// `x`, `y` or `z`.
        axis: &'static str,
        /// The semi-axis given.
        radius_mm: f64,
        /// The spacing of the grid.
        spacing_mm: f64,
    },
}

/// A symmetric structuring element on the voxel grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Element {
    radius: [usize; 3],
    is_box: bool,
    spans: Vec<Span>,
}

impl Element {
    /// A box of `size` voxels per axis (x, y, z); every size must be odd (the element is
    /// centred on the voxel), e.g. `[3, 3, 1]` for an in-plane 3x3 neighbourhood.
    pub fn cuboid(size: [usize; 3]) -> Result<Self, ElementError> {
        for (axis, &k) in ["x", "y", "z"].iter().zip(size.iter()) {
            if k == 0 || k % 2 == 0 {
                return Err(ElementError::EvenSize { axis, size: k });
            }
            if k / 2 > MAX_RADIUS_VOXELS {
                return Err(ElementError::SizeTooLarge { axis, size: k });
            }
        }
        let radius = size.map(|k| k / 2);
        let (ry, rz) = (radius[1] as isize, radius[2] as isize);
        let spans = (-rz..=rz)
            .flat_map(|dz| {
                (-ry..=ry).map(move |dy| Span {
                    dy,
                    dz,
                    rx: radius[0],
                })
            })
            .collect();
        Ok(Element {
            radius,
            is_box: true,
            spans,
        })
    }

    /// The voxels of an ellipsoid with semi-axes `radius_mm` (x, y, z) on a grid with
    /// `spacing_mm`: offset `(dx, dy, dz)` belongs to it when
    /// `(dx*sx/rx)^2 + (dy*sy/ry)^2 + (dz*sz/rz)^2 <= 1`, evaluated in f64 in that order.
    /// A zero semi-axis means "no extent along that axis" (only offset 0 fits).
    pub fn ellipsoid(radius_mm: [f64; 3], spacing_mm: [f64; 3]) -> Result<Self, ElementError> {
        for a in 0..3 {
            let axis = ["x", "y", "z"][a];
            if !(radius_mm[a].is_finite() && radius_mm[a] >= 0.0) {
                return Err(ElementError::BadRadius {
                    axis,
                    radius_mm: radius_mm[a],
                });
            }
            if !(spacing_mm[a].is_finite() && spacing_mm[a] > 0.0) {
                return Err(ElementError::BadSpacing {
                    axis,
                    spacing_mm: spacing_mm[a],
                });
            }
        }
        let term = |a: usize, d: isize| -> f64 {
            if d == 0 {
                0.0
            } else if radius_mm[a] == 0.0 {
                f64::INFINITY
            } else {
                let q = d as f64 * spacing_mm[a] / radius_mm[a];
                q * q
            }
        };
        let mut radius = [0usize; 3];
        for (a, r) in radius.iter_mut().enumerate() {
            while term(a, *r as isize + 1) <= 1.0 {
                *r += 1;
                if *r > MAX_RADIUS_VOXELS {
                    return Err(ElementError::RadiusTooLarge {
                        axis: ["x", "y", "z"][a],
                        radius_mm: radius_mm[a],
                        spacing_mm: spacing_mm[a],
                    });
                }
            }
        }
        let (ry, rz) = (radius[1] as isize, radius[2] as isize);
        let mut spans = Vec::new();
        for dz in -rz..=rz {
            for dy in -ry..=ry {
                let base = term(0, 0) + term(1, dy) + term(2, dz);
                if base > 1.0 {
                    continue;
                }
                let mut rx = 0usize;
                while rx < radius[0] && term(0, rx as isize + 1) + term(1, dy) + term(2, dz) <= 1.0
                {
                    rx += 1;
                }
                spans.push(Span { dy, dz, rx });
            }
        }
        Ok(Element {
            radius,
            is_box: false,
            spans,
        })
    }

    /// Half-size per axis in voxels: the element fits in `(2r+1)` voxels along each axis.
    pub fn radius(&self) -> [usize; 3] {
        self.radius
    }

    /// Whether the element is a full box (the fast kernels then run separably).
    pub fn is_box(&self) -> bool {
        self.is_box
    }

    /// The rows of the element, z-major then y.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Whether offset `(dx, dy, dz)` belongs to the element.
    pub fn contains(&self, d: [isize; 3]) -> bool {
        self.spans
            .iter()
            .any(|s| s.dy == d[1] && s.dz == d[2] && d[0].unsigned_abs() <= s.rx)
    }

    /// Every offset of the element (z-major, then y, then x).
    pub fn offsets(&self) -> Vec<[isize; 3]> {
        self.spans
            .iter()
            .flat_map(|s| (-(s.rx as isize)..=s.rx as isize).map(move |dx| [dx, s.dy, s.dz]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuboid_checks_sizes() {
        assert!(Element::cuboid([3, 3, 1]).is_ok());
        assert_eq!(
            Element::cuboid([2, 3, 1]).unwrap_err(),
            ElementError::EvenSize { axis: "x", size: 2 }
        );
        assert!(Element::cuboid([3, 0, 1])
            .unwrap_err()
            .to_string()
            .contains("along y must be odd"));
        let e = Element::cuboid([5, 3, 1]).unwrap();
        assert_eq!(e.radius(), [2, 1, 0]);
        assert_eq!(e.offsets().len(), 15);
        assert!(e.contains([-2, 1, 0]) && !e.contains([0, 0, 1]));
    }

    #[test]
    fn ellipsoid_matches_its_definition() {
        let (r, s) = ([4.0, 2.5, 6.0], [1.0, 0.8, 2.5]);
        let e = Element::ellipsoid(r, s).unwrap();
        let mut n = 0;
        for dz in -5isize..=5 {
            for dy in -5isize..=5 {
                for dx in -5isize..=5 {
                    let q = |d: isize, a: usize| {
                        let t = d as f64 * s[a] / r[a];
                        t * t
                    };
                    let inside = q(dx, 0) + q(dy, 1) + q(dz, 2) <= 1.0;
                    assert_eq!(e.contains([dx, dy, dz]), inside, "{dx} {dy} {dz}");
                    n += inside as usize;
                }
            }
        }
        assert_eq!(n, e.offsets().len());
        assert_eq!(e.radius(), [4, 3, 2]);
    }

    #[test]
    fn ellipsoid_zero_axis_is_flat_and_bad_values_are_errors() {
        let e = Element::ellipsoid([2.0, 2.0, 0.0], [1.0, 1.0, 1.0]).unwrap();
        assert_eq!(e.radius(), [2, 2, 0]);
        assert!(Element::ellipsoid([-1.0, 1.0, 1.0], [1.0; 3]).is_err());
        assert!(Element::ellipsoid([1.0, 1.0, 1.0], [0.0, 1.0, 1.0]).is_err());
        assert!(matches!(
            Element::ellipsoid([1e6, 1.0, 1.0], [1.0; 3]),
            Err(ElementError::RadiusTooLarge { axis: "x", .. })
        ));
    }
}
