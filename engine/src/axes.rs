//! How two grids relate: which voxel axes are permuted or flipped, and how dims, spacing
//! and position differ.
//!
//! Two files of the same scan often store the same voxels in different orders: a DICOM
//! series reads LPS while a NIfTI segmentation made from it is stored LAS, so one grid's
//! y axis runs against the other's. "Grids differ" alone leaves the user guessing; these
//! functions say which axes are flipped or swapped and whether the grids hold the same
//! voxel centres (then `Reorient` maps one onto the other exactly) or not (then only
//! `Resample` can).

use crate::volume::{Geometry, GEOMETRY_TOLERANCE};

/// For each voxel axis of a target grid: the axis of the source grid that runs along it
/// (0 = x, 1 = y, 2 = z), and whether it runs the other way (flipped).
pub type AxisMap = [(usize, bool); 3];

const AXES: [&str; 3] = ["x", "y", "z"];

/// The axis map from `from` to `to` when every voxel axis of `to` is parallel or
/// antiparallel to one axis of `from` (within [`GEOMETRY_TOLERANCE`] on the direction
/// cosines), each used once; `None` when the grids are rotated relative to each other.
pub fn axis_map(from: &Geometry, to: &Geometry) -> Option<AxisMap> {
    let (df, dt) = (from.direction(), to.direction());
    let mut map = [(0, false); 3];
    let mut used = [false; 3];
    for (c, m) in map.iter_mut().enumerate() {
        let found = (0..3).find_map(|a| {
            let dot: f64 = (0..3).map(|r| dt[c][r] * df[a][r]).sum();
            (!used[a] && (dot.abs() - 1.0).abs() <= GEOMETRY_TOLERANCE).then_some((a, dot < 0.0))
        })?;
        used[found.0] = true;
        *m = found;
    }
    Some(map)
}

/// Whether an axis map changes nothing.
pub fn is_identity(map: &AxisMap) -> bool {
    map.iter()
        .enumerate()
        .all(|(c, &(a, flip))| a == c && !flip)
}

/// The voxel-to-world affine of `from`'s voxels taken in the order of `map` (the grid
/// that `Reorient` produces): target voxel `t` is source voxel `s` with `s[a] = t[c]`, or
/// `n[a] - 1 - t[c]` when flipped, for each `(a, flip) = map[c]`. Returns the dims and
/// the affine.
pub fn permuted_affine(from: &Geometry, map: &AxisMap) -> ([usize; 3], [[f64; 4]; 4]) {
    let dims = map.map(|(a, _)| from.dims[a]);
    // Source index of target voxel (0, 0, 0).
    let mut s0 = [0.0; 3];
    for &(a, flip) in map {
        if flip {
            s0[a] = from.dims[a] as f64 - 1.0;
        }
    }
    let origin = from.to_world(s0);
    let mut affine = [[0.0; 4]; 4];
    for (c, &(a, flip)) in map.iter().enumerate() {
        let sign = if flip { -1.0 } else { 1.0 };
        for (r, row) in affine.iter_mut().take(3).enumerate() {
            row[c] = sign * from.affine[r][a];
        }
    }
    for (r, row) in affine.iter_mut().take(3).enumerate() {
        row[3] = origin[r];
    }
    affine[3][3] = 1.0;
    (dims, affine)
}

/// Largest distance in mm between corresponding corner voxel centres of two grids of the
/// same dims: 0 when they hold the same voxel centres.
pub fn corner_distance_mm(a: &Geometry, b: &Geometry) -> f64 {
    let mut worst: f64 = 0.0;
    for corner in 0..8 {
        let ijk: [f64; 3] = std::array::from_fn(|ax| {
            if corner >> ax & 1 == 1 {
                a.dims[ax].saturating_sub(1) as f64
            } else {
                0.0
            }
        });
        let (pa, pb) = (a.to_world(ijk), b.to_world(ijk));
        let d = (0..3).map(|r| (pa[r] - pb[r]).powi(2)).sum::<f64>().sqrt();
        worst = worst.max(d);
    }
    worst
}

fn fmt3(v: [f64; 3]) -> String {
    format!("{}x{}x{}", short(v[0]), short(v[1]), short(v[2]))
}

fn short(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// What differs between grid `ga` (of input `a`) and grid `gb` (of input `b`), in words,
/// ending with the node that reconciles them. Used by the "grids differ" error.
pub fn describe_difference(a: &str, ga: &Geometry, b: &str, gb: &Geometry) -> String {
    let Some(map) = axis_map(ga, gb) else {
        return format!(
            "the voxel axes of `{b}` are rotated relative to those of `{a}` (not a \
             permutation or flip): Resample (images) or ResampleLabels with `like` \
             interpolates one onto the other's grid"
        );
    };
    let mut parts = Vec::new();
    if !is_identity(&map) {
        let permuted = map.iter().enumerate().any(|(c, &(ax, _))| ax != c);
        if permuted {
            let along: Vec<String> = map
                .iter()
                .map(|&(ax, flip)| format!("{}{}", if flip { "-" } else { "" }, AXES[ax]))
                .collect();
            parts.push(format!(
                "the voxel axes are permuted: `{b}`'s x, y, z run along `{a}`'s {}",
                along.join(", ")
            ));
        } else {
            let flipped: Vec<&str> = map
                .iter()
                .enumerate()
                .filter(|(_, &(_, flip))| flip)
                .map(|(c, _)| AXES[c])
                .collect();
            parts.push(format!(
                "{} flipped: `{b}`'s {} run{} opposite to `{a}`'s",
                if flipped.len() == 1 { "axis" } else { "axes" },
                flipped.join(" and "),
                if flipped.len() == 1 { "s" } else { "" },
            ));
        }
    }
    // Dims and spacing compared axis by axis after matching the axes.
    let dims_a: [usize; 3] = map.map(|(ax, _)| ga.dims[ax]);
    let spacing_a: [f64; 3] = map.map(|(ax, _)| ga.spacing[ax]);
    let same_dims = dims_a == gb.dims;
    let same_spacing = (0..3).all(|c| (spacing_a[c] - gb.spacing[c]).abs() <= GEOMETRY_TOLERANCE);
    if !same_dims {
        parts.push(format!(
            "dims differ: {} voxels in `{a}` vs {} in `{b}` (along `{b}`'s axes)",
            dims_a.map(|d| d.to_string()).join("x"),
            gb.dims.map(|d| d.to_string()).join("x"),
        ));
    }
    if !same_spacing {
        parts.push(format!(
            "spacing differs: {} mm in `{a}` vs {} mm in `{b}` (along `{b}`'s axes)",
            fmt3(spacing_a),
            fmt3(gb.spacing),
        ));
    }
    if same_dims && same_spacing {
        let (_, affine) = permuted_affine(ga, &map);
        let reordered = Geometry::from_affine(dims_a, affine);
        let shift = corner_distance_mm(&reordered, gb);
        if shift <= GEOMETRY_TOLERANCE {
            parts.push(
                "they hold the same voxel centres: Reorient (labels) with `like` takes one's \
                 voxels in the other's axis order, exactly (no interpolation)"
                    .to_string(),
            );
        } else {
            let (oa, ob) = (reordered.origin(), gb.origin());
            parts.push(format!(
                "after matching the axes the grids are {} mm apart (origins ({}, {}, {}) vs \
                 ({}, {}, {}) mm): Resample (images) or ResampleLabels with `like` \
                 interpolates one onto the other's grid",
                short(shift),
                short(oa[0]),
                short(oa[1]),
                short(oa[2]),
                short(ob[0]),
                short(ob[1]),
                short(ob[2]),
            ));
        }
    } else {
        parts.push(
            "Resample (images, linear) or ResampleLabels (nearest) with `like` \
             interpolates one onto the other's grid"
                .to_string(),
        );
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x3x2 grid with 1x2x3 mm voxels at an arbitrary origin.
    fn grid() -> Geometry {
        let mut g = Geometry::new([4, 3, 2], [1.0, 2.0, 3.0]);
        g.affine[0][3] = 10.0;
        g.affine[1][3] = -5.0;
        g.affine[2][3] = 7.0;
        g
    }

    #[test]
    fn a_flipped_y_axis_is_found_and_reorient_suggested() {
        let g = grid();
        let map: AxisMap = [(0, false), (1, true), (2, false)];
        let (dims, affine) = permuted_affine(&g, &map);
        let flipped = Geometry::from_affine(dims, affine);
        // Voxel (0, 0, 0) of the flipped grid is voxel (0, 2, 0) of the original.
        assert_eq!(flipped.origin(), g.to_world([0.0, 2.0, 0.0]));
        assert_eq!(axis_map(&g, &flipped), Some(map));
        let d = describe_difference("image", &g, "labels", &flipped);
        assert!(
            d.contains("axis flipped: `labels`'s y runs opposite"),
            "{d}"
        );
        assert!(d.contains("Reorient (labels) with `like`"), "{d}");
        assert!(
            !d.contains("dims differ") && !d.contains("spacing differs"),
            "{d}"
        );
    }

    #[test]
    fn permutations_name_each_axis_and_compare_spacing_along_them() {
        let g = grid();
        let map: AxisMap = [(1, false), (0, true), (2, false)];
        let (dims, affine) = permuted_affine(&g, &map);
        assert_eq!(dims, [3, 4, 2]);
        let swapped = Geometry::from_affine(dims, affine);
        assert_eq!(swapped.spacing, [2.0, 1.0, 3.0]);
        let d = describe_difference("a", &g, "b", &swapped);
        assert!(d.contains("`b`'s x, y, z run along `a`'s y, -x, z"), "{d}");
        assert!(!d.contains("spacing differs"), "{d}");
        assert!(d.contains("Reorient"), "{d}");
    }

    #[test]
    fn other_spacing_and_dims_suggest_resample() {
        let g = grid();
        let other = Geometry::new([8, 3, 2], [0.5, 2.0, 3.0]);
        let d = describe_difference("a", &g, "b", &other);
        assert!(
            d.contains("dims differ: 4x3x2 voxels in `a` vs 8x3x2 in `b`"),
            "{d}"
        );
        assert!(
            d.contains("spacing differs: 1x2x3 mm in `a` vs 0.5x2x3 mm"),
            "{d}"
        );
        assert!(d.contains("ResampleLabels (nearest) with `like`"), "{d}");
        assert!(!d.contains("flipped"), "{d}");
    }

    #[test]
    fn a_shift_is_measured_and_a_rotation_named() {
        let g = grid();
        let mut shifted = g.clone();
        shifted.affine[2][3] += 6.0;
        let d = describe_difference("a", &g, "b", &shifted);
        assert!(d.contains("6 mm apart"), "{d}");
        let mut rotated = g.clone();
        let (c, s) = (0.6f64, 0.8f64);
        rotated.affine[0][0] = c;
        rotated.affine[1][0] = s;
        rotated.affine[0][1] = -s * 2.0;
        rotated.affine[1][1] = c * 2.0;
        assert_eq!(axis_map(&g, &rotated), None);
        let d = describe_difference("a", &g, "b", &rotated);
        assert!(d.contains("rotated"), "{d}");
    }
}
