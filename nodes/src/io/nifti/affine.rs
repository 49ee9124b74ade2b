//! Where voxels are: the header's sform and qform as an affine (and back, for writing),
//! and the qform quaternion.

use voxflow_engine::Geometry;

use super::header::Unusable;
use super::{Dtype, Header, HeaderError, WRITE_VOX_OFFSET};

impl Header {
    /// The voxel-to-world affine: the sform when `sform_code > 0`, else the qform
    /// (quaternion) when `qform_code > 0`, else the pixdim scaling (NIfTI "method 1"),
    /// the order nibabel's `get_best_affine` uses.
    ///
    /// A transform the header asks for but that cannot place voxels (a NaN or infinite
    /// element, a zero or singular 3x3) is not silently used. A bad sform falls back to
    /// the qform when `qform_code > 0` and the qform is sound, as ITK does when the sform
    /// is unusable: both codes say the file carries a real orientation, so the qform
    /// is an equally authoritative statement of it. There is no further fallback: a bad
    /// qform (or a bad sform without a qform) is an error naming the field, because
    /// pixdim scaling would silently drop the orientation and origin. In a qform or
    /// method 1, a zero or negative voxel size counts as 1 (as in NIfTI's reference
    /// `quatern_to_mat44`); a NaN or infinite one is an error.
    ///
    /// Every element is rounded to f32 precision, the precision a header stores: the
    /// affine of a loaded file then survives save and load bit for bit.
    pub fn affine(&self) -> Result<[[f64; 4]; 4], HeaderError> {
        let mut a = if self.sform_code > 0 {
            match (self.sform_problem(), self.qform_code > 0) {
                (None, _) => self.sform(),
                (Some(sform), true) => match self.qform_problem() {
                    None => self.qform(),
                    Some(qform) => {
                        return Err(HeaderError::SformAndQform {
                            sform_code: self.sform_code,
                            sform,
                            qform_code: self.qform_code,
                            qform,
                        })
                    }
                },
                (Some(sform), false) => {
                    return Err(HeaderError::SformNoQform {
                        sform_code: self.sform_code,
                        sform,
                        qform_code: self.qform_code,
                    })
                }
            }
        } else if self.qform_code > 0 {
            if let Some(qform) = self.qform_problem() {
                return Err(HeaderError::Qform {
                    qform_code: self.qform_code,
                    qform,
                });
            }
            self.qform()
        } else {
            if let Some(why) = self.pixdim_problem() {
                return Err(HeaderError::Pixdim(why));
            }
            let mut a = [[0.0; 4]; 4];
            for i in 0..3 {
                let p = self.pixdim[i + 1] as f64;
                a[i][i] = if p > 0.0 { p } else { 1.0 };
            }
            a
        };
        for row in a.iter_mut().take(3) {
            for v in row.iter_mut() {
                *v = *v as f32 as f64;
            }
        }
        a[3] = [0.0, 0.0, 0.0, 1.0];
        Ok(a)
    }

    /// The sform as an affine, unchecked.
    fn sform(&self) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 4]; 4];
        for (r, row) in self.srow.iter().enumerate() {
            a[r] = row.map(|v| v as f64);
        }
        a
    }

    /// The qform as an affine, unchecked.
    fn qform(&self) -> [[f64; 4]; 4] {
        let b = self.quatern.map(|v| v as f64);
        let o = self.qoffset.map(|v| v as f64);
        let d = [1, 2, 3].map(|i| self.pixdim[i] as f64);
        quatern_to_affine(b, o, d, self.pixdim[0] as f64)
    }

    /// Why the sform cannot place voxels, naming the field; `None` when it can.
    fn sform_problem(&self) -> Option<Unusable> {
        for (r, row) in self.srow.iter().enumerate() {
            if let Some(c) = row.iter().position(|v| !v.is_finite()) {
                return Some(non_finite(
                    format!("srow_{}[{c}]", ["x", "y", "z"][r]),
                    row[c],
                ));
            }
        }
        let m: [[f64; 3]; 3] =
            std::array::from_fn(|r| std::array::from_fn(|c| self.srow[r][c] as f64));
        singular_problem(&m)
    }

    /// Why the qform cannot place voxels, naming the field; `None` when it can. (A
    /// quaternion always gives a rotation, and pixdim[0] only its sign, so only
    /// non-finite values are fatal.)
    fn qform_problem(&self) -> Option<Unusable> {
        for (i, v) in self.quatern.iter().enumerate() {
            if !v.is_finite() {
                return Some(non_finite(format!("quatern_{}", ["b", "c", "d"][i]), *v));
            }
        }
        for (i, v) in self.qoffset.iter().enumerate() {
            if !v.is_finite() {
                return Some(non_finite(format!("qoffset_{}", ["x", "y", "z"][i]), *v));
            }
        }
        self.pixdim_problem()
    }

    /// A non-finite voxel size in pixdim[1..=3], named.
    fn pixdim_problem(&self) -> Option<Unusable> {
        (1..=3)
            .find(|&i| !self.pixdim[i].is_finite())
            .map(|i| non_finite(format!("pixdim[{i}]"), self.pixdim[i]))
    }

    /// The grid of the first 3D volume; errors as [`Header::affine`].
    pub fn geometry(&self) -> Result<Geometry, HeaderError> {
        Ok(Geometry::from_affine(self.dims3(), self.affine()?))
    }

    /// A header for a 3D volume of this dtype on this grid: the sform from the affine,
    /// pixdim from the spacing, and the qform only when the affine is a rotation times
    /// positive voxel sizes. A quaternion cannot hold a shear, and a qform stripped of
    /// it would place voxels elsewhere for readers that prefer the qform (SimpleITK
    /// does); so with a shear qform_code is 0 and the quaternion fields are zero, as
    /// nibabel writes new images.
    ///
    /// A grid loaded from a NIfTI file carries that header's meaning
    /// ([`Geometry::nifti`]), which is written back: the sform and qform codes, units,
    /// `pixdim[4..]`, `dim_info`, intent, `descrip` and the display range (see
    /// [`Header::keep_cal_if_valid`]). The source's codes are kept while the forms they
    /// select still give this affine (to nibabel's `allclose` tolerance, the test
    /// nibabel applies before rewriting a header); otherwise the sform is written with
    /// the source's code, or 1 (scanner) when the source had none. Without a source:
    /// both codes 1, units mm, descrip "voxflow".
    pub fn for_geometry(geometry: &Geometry, dtype: Dtype) -> Header {
        let [nx, ny, nz] = geometry.dims;
        let rigid = qform_can_hold(&geometry.affine);
        let (quatern, qoffset, qfac) = if rigid {
            affine_to_quatern(&geometry.affine)
        } else {
            ([0.0; 3], [0.0; 3], 1.0)
        };
        let mut pixdim = [1.0f32; 8];
        pixdim[0] = qfac as f32;
        for i in 0..3 {
            pixdim[i + 1] = geometry.spacing[i] as f32;
        }
        let mut h = Header {
            dim: [3, nx as i16, ny as i16, nz as i16, 1, 1, 1, 1],
            dtype,
            pixdim,
            vox_offset: WRITE_VOX_OFFSET,
            scl_slope: 1.0,
            scl_inter: 0.0,
            xyzt_units: 2,
            qform_code: rigid as i16,
            sform_code: 1,
            quatern: quatern.map(|v| v as f32),
            qoffset: qoffset.map(|v| v as f32),
            srow: std::array::from_fn(|r| geometry.affine[r].map(|v| v as f32)),
            big_endian: false,
            dim_info: 0,
            cal: [0.0; 2],
            intent_code: 0,
            intent_params: [0.0; 3],
            intent_name: Vec::new(),
            descrip: b"voxflow".to_vec(),
        };
        let Some(m) = geometry.nifti.as_deref() else {
            return h;
        };
        h.xyzt_units = m.xyzt_units;
        h.pixdim[4..].copy_from_slice(&m.pixdim_rest);
        h.dim_info = m.dim_info;
        h.cal = m.cal;
        h.intent_code = m.intent_code;
        h.intent_params = m.intent_params;
        h.intent_name = m.intent_name.clone();
        h.descrip = m.descrip.clone();
        h.qform_code = if rigid { m.qform_code.max(0) } else { 0 };
        h.sform_code = m.sform_code.max(0);
        let same = |a: [[f64; 4]; 4]| {
            a.iter()
                .flatten()
                .zip(geometry.affine.iter().flatten())
                .all(|(x, y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
        };
        if !h.affine().is_ok_and(same) {
            h.sform_code = [m.sform_code, m.qform_code, 1]
                .into_iter()
                .find(|&c| c > 0)
                .expect("1 > 0");
        }
        h
    }
}

/// The qform affine (NIfTI `quatern_to_mat44`): rotation from the quaternion (b, c, d),
/// voxel sizes `d` (non-positive ones count as 1), `qfac` < 0 flips the third axis.
pub fn quatern_to_affine(q: [f64; 3], offset: [f64; 3], d: [f64; 3], qfac: f64) -> [[f64; 4]; 4] {
    let [mut b, mut c, mut dd] = q;
    let mut a = 1.0 - (b * b + c * c + dd * dd);
    if a < 1e-7 {
        // Not a unit quaternion: normalise (b, c, d) and use a 180° rotation.
        let n = 1.0 / (b * b + c * c + dd * dd).sqrt();
        b *= n;
        c *= n;
        dd *= n;
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let s = d.map(|v| if v > 0.0 { v } else { 1.0 });
    let zs = if qfac < 0.0 { -s[2] } else { s[2] };
    let r = [
        [
            a * a + b * b - c * c - dd * dd,
            2.0 * (b * c - a * dd),
            2.0 * (b * dd + a * c),
        ],
        [
            2.0 * (b * c + a * dd),
            a * a + c * c - b * b - dd * dd,
            2.0 * (c * dd - a * b),
        ],
        [
            2.0 * (b * dd - a * c),
            2.0 * (c * dd + a * b),
            a * a + dd * dd - c * c - b * b,
        ],
    ];
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        m[i] = [r[i][0] * s[0], r[i][1] * s[1], r[i][2] * zs, offset[i]];
    }
    m[3] = [0.0, 0.0, 0.0, 1.0];
    m
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Why a 3x3 voxel-to-world matrix cannot place voxels (a zero column, or columns so
/// close to coplanar that the grid has no volume); `None` when it can. The determinant
/// is compared with the product of the column lengths, so the test does not depend on
/// the voxel size.
fn singular_problem(m: &[[f64; 3]; 3]) -> Option<Unusable> {
    let norms: [f64; 3] =
        std::array::from_fn(|c| (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt());
    if let Some(c) = norms.iter().position(|&n| n == 0.0) {
        return Some(Unusable::ZeroColumn(c));
    }
    let det = det3(m);
    if det.is_nan() || det.abs() <= 1e-6 * norms.iter().product::<f64>() {
        return Some(Unusable::Singular(det));
    }
    None
}

/// A field that is NaN or infinite.
fn non_finite(field: String, value: f32) -> Unusable {
    Unusable::NonFinite { field, value }
}

/// Whether the 3x3 of an affine is a rotation (possibly with the third axis flipped,
/// NIfTI's qfac -1) times positive voxel sizes, i.e. whether a qform can hold it.
/// Columns must be orthogonal to within 1e-5 of their lengths' product: looser than the
/// f32 rounding of a stored affine (about 1e-7), far tighter than any real shear.
pub fn qform_can_hold(a: &[[f64; 4]; 4]) -> bool {
    let col = |c: usize| [a[0][c], a[1][c], a[2][c]];
    let dot = |x: [f64; 3], y: [f64; 3]| x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
    let norms: [f64; 3] = std::array::from_fn(|c| dot(col(c), col(c)).sqrt());
    if !norms.iter().all(|n| n.is_finite() && *n > 0.0) {
        return false;
    }
    [(0, 1), (0, 2), (1, 2)]
        .iter()
        .all(|&(i, j)| dot(col(i), col(j)).abs() <= 1e-5 * norms[i] * norms[j])
}

fn inv_transpose3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let d = det3(m);
    if d.abs() < 1e-12 {
        return None;
    }
    // The cofactor matrix divided by the determinant is the inverse transposed.
    let c =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [c(1, 2, 1, 2) / d, -c(1, 2, 0, 2) / d, c(1, 2, 0, 1) / d],
        [-c(0, 2, 1, 2) / d, c(0, 2, 0, 2) / d, -c(0, 2, 0, 1) / d],
        [c(0, 1, 1, 2) / d, -c(0, 1, 0, 2) / d, c(0, 1, 0, 1) / d],
    ])
}

/// The qform of an affine (NIfTI `mat44_to_quatern`): quaternion (b, c, d), offset and
/// qfac. Columns are normalised and the rotation is made orthogonal by polar
/// decomposition, so shears are dropped (the sform keeps them).
pub fn affine_to_quatern(m: &[[f64; 4]; 4]) -> ([f64; 3], [f64; 3], f64) {
    let offset = [m[0][3], m[1][3], m[2][3]];
    let mut r = [[0.0; 3]; 3];
    for c in 0..3 {
        let n = (0..3).map(|i| m[i][c] * m[i][c]).sum::<f64>().sqrt();
        for i in 0..3 {
            r[i][c] = if n > 0.0 {
                m[i][c] / n
            } else if i == c {
                1.0
            } else {
                0.0
            };
        }
    }
    // Polar decomposition by the Newton iteration X <- (X + X^-T) / 2.
    for _ in 0..100 {
        let Some(it) = inv_transpose3(&r) else {
            r = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
            break;
        };
        let mut change = 0.0f64;
        for i in 0..3 {
            for j in 0..3 {
                let v = 0.5 * (r[i][j] + it[i][j]);
                change = change.max((v - r[i][j]).abs());
                r[i][j] = v;
            }
        }
        if change < 1e-15 {
            break;
        }
    }
    let qfac = if det3(&r) > 0.0 {
        1.0
    } else {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    };
    let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
    let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
    let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
    let trace = r11 + r22 + r33 + 1.0;
    let [a, b, c, d] = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        [
            a,
            0.25 * (r32 - r23) / a,
            0.25 * (r13 - r31) / a,
            0.25 * (r21 - r12) / a,
        ]
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            [
                0.25 * (r32 - r23) / b,
                b,
                0.25 * (r12 + r21) / b,
                0.25 * (r13 + r31) / b,
            ]
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            [
                0.25 * (r13 - r31) / c,
                0.25 * (r12 + r21) / c,
                c,
                0.25 * (r23 + r32) / c,
            ]
        } else {
            let d = 0.5 * zd.sqrt();
            [
                0.25 * (r21 - r12) / d,
                0.25 * (r13 + r31) / d,
                0.25 * (r23 + r32) / d,
                d,
            ]
        }
    };
    // q and -q are the same rotation; NIfTI keeps a >= 0 (a is implied by b, c, d).
    let [b, c, d] = if a < 0.0 { [-b, -c, -d] } else { [b, c, d] };
    ([b, c, d], offset, qfac)
}
