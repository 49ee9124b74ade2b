//! Voxel grids with their physical geometry.
//!
//! A [`Volume`] is a 3D array stored x-fastest (the NIfTI and DICOM order) plus a
//! [`Geometry`] that maps voxel indices to millimetres. Every volume value in a graph
//! (`Image`, `Mask`, `Labels`) is a `Volume` of some voxel type, so nodes can rely on one
//! layout and kernels can work on the flat slice returned by [`Volume::as_slice`].

use ndarray::{Array3, ArrayView3, ArrayViewMut3, ShapeBuilder};

/// Where a grid sits in space: size, voxel spacing and the voxel-to-world affine.
///
/// The affine maps voxel indices `(i, j, k, 1)` to world coordinates in millimetres in the
/// NIfTI convention, RAS+: world +x points to the patient's Right, +y Anterior, +z
/// Superior. Loaders of LPS data (DICOM) negate x and y on the way in.
///
/// Equality compares the grid (dims, spacing, affine) only, not [`Geometry::nifti`].
#[derive(Clone, Debug)]
pub struct Geometry {
    /// Number of voxels along x, y, z.
    pub dims: [usize; 3],
    /// Voxel size along x, y, z in millimetres.
    pub spacing: [f64; 3],
    /// Voxel index to world (mm) transform, row-major 4x4; the last row is `0 0 0 1`.
    pub affine: [[f64; 4]; 4],
    /// Header fields of the NIfTI file this grid was loaded from, for writing them back
    /// (see [`NiftiHeaderMeta`]); `None` for grids from anywhere else. It rides on the
    /// geometry so that every volume computed on the same grid keeps it.
    pub nifti: Option<std::sync::Arc<NiftiHeaderMeta>>,
}

impl PartialEq for Geometry {
    /// The same grid: the NIfTI header fields say how a file described it, not where it
    /// is, so a loaded grid equals the same grid built in code.
    fn eq(&self, other: &Geometry) -> bool {
        self.dims == other.dims && self.spacing == other.spacing && self.affine == other.affine
    }
}

/// The meaning of a NIfTI-1 header beyond the grid and voxels, kept from a loaded file
/// so that SaveNifti writes it back (a load/save round trip should not turn an
/// "aligned" sform into "scanner", drop the time units and TR, or forget the intent).
/// The I/O nodes fill and read it; the engine only carries and caches it. Non-finite
/// floats are stored as 0 (they mean "unset" in every one of these fields).
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct NiftiHeaderMeta {
    /// `qform_code` of the source (0 none, 1 scanner, 2 aligned, 3 Talairach, 4 MNI).
    pub qform_code: i16,
    /// `sform_code` of the source.
    pub sform_code: i16,
    /// `xyzt_units`: spatial and temporal units.
    pub xyzt_units: u8,
    /// `dim_info`: frequency, phase and slice encoding axes.
    pub dim_info: u8,
    /// `pixdim[4..8]`: step along time (TR) and the higher dimensions.
    pub pixdim_rest: [f32; 4],
    /// `cal_min`, `cal_max`: the display range.
    pub cal: [f32; 2],
    /// `intent_code`.
    pub intent_code: i16,
    /// `intent_p1..3`.
    pub intent_params: [f32; 3],
    /// `intent_name` (up to 16 bytes, trailing NULs removed).
    pub intent_name: Vec<u8>,
    /// `descrip` (up to 80 bytes, trailing NULs removed).
    pub descrip: Vec<u8>,
}

/// How close two geometries must be to count as the same grid (mm and direction cosines).
pub const GEOMETRY_TOLERANCE: f64 = 1e-3;

impl Geometry {
    /// A grid with axis-aligned voxels of the given spacing, origin at the world origin.
    pub fn new(dims: [usize; 3], spacing: [f64; 3]) -> Self {
        let mut affine = [[0.0; 4]; 4];
        for (a, s) in spacing.iter().enumerate() {
            affine[a][a] = *s;
        }
        affine[3][3] = 1.0;
        Geometry {
            dims,
            spacing,
            affine,
            nifti: None,
        }
    }

    /// A grid from a voxel-to-world affine; spacing is the length of each affine column.
    pub fn from_affine(dims: [usize; 3], affine: [[f64; 4]; 4]) -> Self {
        let spacing = std::array::from_fn(|c| {
            (0..3)
                .map(|r| affine[r][c] * affine[r][c])
                .sum::<f64>()
                .sqrt()
        });
        Geometry {
            dims,
            spacing,
            affine,
            nifti: None,
        }
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when the grid has no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Volume of one voxel in millilitres (1 ml = 1000 mm³).
    pub fn voxel_volume_ml(&self) -> f64 {
        self.spacing.iter().product::<f64>() / 1000.0
    }

    /// World position (mm) of the centre of voxel (0, 0, 0).
    pub fn origin(&self) -> [f64; 3] {
        [self.affine[0][3], self.affine[1][3], self.affine[2][3]]
    }

    /// Unit direction of each voxel axis in world space (columns of the affine, normalised).
    pub fn direction(&self) -> [[f64; 3]; 3] {
        std::array::from_fn(|c| {
            let s = if self.spacing[c] > 0.0 {
                self.spacing[c]
            } else {
                1.0
            };
            std::array::from_fn(|r| self.affine[r][c] / s)
        })
    }

    /// World position (mm) of a voxel centre given by (fractional) indices.
    pub fn to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|r| {
            self.affine[r][3] + (0..3).map(|c| self.affine[r][c] * ijk[c]).sum::<f64>()
        })
    }

    /// Linear index of voxel `(x, y, z)` in x-fastest order.
    #[inline]
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.dims[0] * (y + self.dims[1] * z)
    }

    /// Whether two grids are the same within [`GEOMETRY_TOLERANCE`]: equal dims, and
    /// spacing and affine equal up to the tolerance.
    pub fn same_grid(&self, other: &Geometry) -> bool {
        self.dims == other.dims
            && self
                .spacing
                .iter()
                .zip(other.spacing.iter())
                .all(|(a, b)| (a - b).abs() <= GEOMETRY_TOLERANCE)
            && self
                .affine
                .iter()
                .flatten()
                .zip(other.affine.iter().flatten())
                .all(|(a, b)| (a - b).abs() <= GEOMETRY_TOLERANCE)
    }

    /// One-line human description, used in errors about mismatched grids.
    pub fn describe(&self) -> String {
        let o = self.origin();
        format!(
            "dims {}x{}x{}, spacing {:.4}x{:.4}x{:.4} mm, origin ({:.3}, {:.3}, {:.3}) mm",
            self.dims[0],
            self.dims[1],
            self.dims[2],
            self.spacing[0],
            self.spacing[1],
            self.spacing[2],
            o[0],
            o[1],
            o[2]
        )
    }
}

/// A 3D array of voxels (x fastest) and the grid it lives on.
///
/// The array is always in Fortran (column-major) layout with shape `(nx, ny, nz)`, so
/// `data[[x, y, z]]` indexes like NIfTI and the memory order is x-fastest.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume<T> {
    geometry: Geometry,
    data: Array3<T>,
}

/// Error building a volume from a buffer of the wrong length.
#[derive(Debug, thiserror::Error)]
#[error("voxel buffer has {got} values but the grid {dims:?} needs {want}")]
pub struct ShapeError {
    /// Values given.
    pub got: usize,
    /// Values needed.
    pub want: usize,
    /// Grid size.
    pub dims: [usize; 3],
}

impl<T: Clone> Volume<T> {
    /// A volume from voxels in x-fastest order.
    pub fn from_vec(geometry: Geometry, voxels: Vec<T>) -> Result<Self, ShapeError> {
        let [nx, ny, nz] = geometry.dims;
        if voxels.len() != geometry.len() {
            return Err(ShapeError {
                got: voxels.len(),
                want: geometry.len(),
                dims: geometry.dims,
            });
        }
        let data = Array3::from_shape_vec((nx, ny, nz).f(), voxels).expect("length checked");
        Ok(Volume { geometry, data })
    }

    /// A volume filled with one value.
    pub fn filled(geometry: Geometry, value: T) -> Self {
        let n = geometry.len();
        Self::from_vec(geometry, vec![value; n]).expect("length matches")
    }

    /// The grid.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Grid size (nx, ny, nz).
    pub fn dims(&self) -> [usize; 3] {
        self.geometry.dims
    }

    /// The voxels as an `(nx, ny, nz)` array view.
    pub fn view(&self) -> ArrayView3<'_, T> {
        self.data.view()
    }

    /// The voxels as a mutable `(nx, ny, nz)` array view.
    pub fn view_mut(&mut self) -> ArrayViewMut3<'_, T> {
        self.data.view_mut()
    }

    /// The voxels in x-fastest order.
    pub fn as_slice(&self) -> &[T] {
        self.data
            .as_slice_memory_order()
            .expect("volumes are contiguous")
    }

    /// Consume into the voxels in x-fastest order.
    pub fn into_vec(self) -> Vec<T> {
        let (v, _) = self.data.into_raw_vec_and_offset();
        v
    }

    /// A volume on the same grid with every voxel mapped.
    pub fn map<U, F>(&self, f: F) -> Volume<U>
    where
        T: Sync,
        U: Clone + Send,
        F: Fn(&T) -> U + Sync + Send,
    {
        use rayon::prelude::*;
        let out: Vec<U> = self.as_slice().par_iter().map(f).collect();
        Volume::from_vec(self.geometry.clone(), out).expect("same grid")
    }

    /// The same voxels on another grid of the same size (for loaders fixing geometry).
    pub fn with_geometry(mut self, geometry: Geometry) -> Result<Self, ShapeError> {
        if geometry.dims != self.geometry.dims {
            return Err(ShapeError {
                got: self.geometry.len(),
                want: geometry.len(),
                dims: geometry.dims,
            });
        }
        self.geometry = geometry;
        Ok(self)
    }
}

/// A label map: 0 = background, other values name structures.
pub type Labels = Volume<u16>;

/// Numeric voxels, e.g. Hounsfield units of a CT.
///
/// Integer CTs stay `i16` (half the memory of f32, and exact); anything else (scaled,
/// floating point, wider integers) is held as `f32`.
#[derive(Clone, Debug, PartialEq)]
pub enum Image {
    /// 16-bit signed voxels, the usual CT storage.
    I16(Volume<i16>),
    /// 32-bit float voxels.
    F32(Volume<f32>),
}

impl Image {
    /// The grid.
    pub fn geometry(&self) -> &Geometry {
        match self {
            Image::I16(v) => v.geometry(),
            Image::F32(v) => v.geometry(),
        }
    }

    /// Name of the voxel type (`i16` or `f32`).
    pub fn dtype(&self) -> &'static str {
        match self {
            Image::I16(_) => "i16",
            Image::F32(_) => "f32",
        }
    }

    /// Voxel value at a linear index, as f64.
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Image::I16(v) => v.as_slice()[i] as f64,
            Image::F32(v) => v.as_slice()[i] as f64,
        }
    }
}

/// Number of voxels per value, for values present (sorted by value).
pub fn value_counts<T: Copy + Ord>(voxels: &[T]) -> Vec<(T, usize)> {
    let mut map = std::collections::BTreeMap::new();
    for &v in voxels {
        *map.entry(v).or_insert(0usize) += 1;
    }
    map.into_iter().collect()
}
