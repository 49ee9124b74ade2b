//! The 348-byte NIfTI-1 header: voxel types, parsing (either byte order) and writing.

use voxflow_engine::volume::NiftiHeaderMeta;

use crate::shared::bytes::Endian;

use super::{HEADER_SIZE, MAX_VOX_OFFSET, WRITE_VOX_OFFSET};

/// Voxel types of NIfTI-1 that voxflow reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `DT_UINT8` (2).
    U8,
    /// `DT_INT8` (256).
    I8,
    /// `DT_INT16` (4).
    I16,
    /// `DT_UINT16` (512).
    U16,
    /// `DT_INT32` (8).
    I32,
    /// `DT_UINT32` (768).
    U32,
    /// `DT_FLOAT32` (16).
    F32,
    /// `DT_FLOAT64` (64).
    F64,
}

impl Dtype {
    /// The dtype of a NIfTI `datatype` code; an error names unsupported ones.
    pub fn from_code(code: i16) -> Result<Dtype, UnsupportedDtype> {
        Ok(match code {
            2 => Dtype::U8,
            256 => Dtype::I8,
            4 => Dtype::I16,
            512 => Dtype::U16,
            8 => Dtype::I32,
            768 => Dtype::U32,
            16 => Dtype::F32,
            64 => Dtype::F64,
            code => return Err(UnsupportedDtype { code }),
        })
    }

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            Dtype::U8 => 2,
            Dtype::I8 => 256,
            Dtype::I16 => 4,
            Dtype::U16 => 512,
            Dtype::I32 => 8,
            Dtype::U32 => 768,
            Dtype::F32 => 16,
            Dtype::F64 => 64,
        }
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::U16 => "uint16",
            Dtype::I32 => "int32",
            Dtype::U32 => "uint32",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}

/// A NIfTI `datatype` code voxflow does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported NIfTI datatype {code} ({}); supported: uint8, int8, int16, uint16, int32, \
     uint32, float32, float64",
    code_name(*.code)
)]
pub struct UnsupportedDtype {
    /// The `datatype` field.
    pub code: i16,
}

/// What the NIfTI standard calls a `datatype` code voxflow does not read, for messages.
fn code_name(code: i16) -> &'static str {
    match code {
        1 => "binary (1 bit)",
        32 => "complex64",
        1792 => "complex128",
        2048 => "complex256",
        128 => "rgb24",
        2304 => "rgba32",
        1024 => "int64",
        1280 => "uint64",
        1536 => "float128",
        0 => "unknown (0)",
        _ => "unknown",
    }
}

/// What is wrong with a header: it cannot be parsed ([`Header::parse`]), or the
/// transform it asks for cannot place voxels ([`Header::affine`]). Messages are shown
/// after the file's name.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("not a NIfTI file: only {len} bytes, a NIfTI-1 header needs {HEADER_SIZE}")]
    TooShort {
        /// Bytes there are.
        len: usize,
    },
    /// `sizeof_hdr` 540.
    #[error("NIfTI-2 files are not supported (sizeof_hdr 540); save as NIfTI-1")]
    Nifti2,
    /// `sizeof_hdr` neither 348 nor 540 in either byte order.
    #[error("not a NIfTI file: sizeof_hdr is {size}, expected 348 (first bytes {first:02x?})")]
    SizeofHdr {
        /// `sizeof_hdr` read little-endian.
        size: i32,
        /// The first four bytes of the file.
        first: [u8; 4],
    },
    /// Magic `ni1`: the header of a two-file pair.
    #[error(
        "is the header of a .hdr/.img pair; only single-file NIfTI (.nii, .nii.gz) is supported"
    )]
    HdrImgPair,
    /// Magic other than `n+1` (ANALYZE 7.5, or not NIfTI at all).
    #[error(
        "not a NIfTI-1 file: bad magic {magic:?} (expected \"n+1\"); ANALYZE 7.5 files are not \
         supported"
    )]
    Magic {
        /// The magic bytes as text, trailing NULs removed.
        magic: String,
    },
    /// `dim[0]` outside 1..=7.
    #[error("bad header: dim[0] (rank) is {0}, expected 1 to 7")]
    Rank(i16),
    /// A size below 1 within the rank.
    #[error("bad header: dim[{axis}] is {size}, sizes must be at least 1")]
    Dim {
        /// Index into `dim`.
        axis: usize,
        /// Its value.
        size: i16,
    },
    /// A `datatype` voxflow does not read.
    #[error(transparent)]
    Dtype(#[from] UnsupportedDtype),
    /// A data scaling with a valid slope and a NaN or infinite intercept: every value
    /// would be NaN or infinite, and reading it as 0 would shift the HU silently.
    #[error(
        "bad header: scl_slope is {slope} but scl_inter is {inter}; a scaled file needs a \
         finite intercept"
    )]
    Intercept {
        /// `scl_slope`.
        slope: f32,
        /// `scl_inter`.
        inter: f32,
    },
    /// `vox_offset` not a whole number in the accepted range (or NaN).
    #[error(
        "bad header: vox_offset is {0}, expected a whole number from {WRITE_VOX_OFFSET} (header \
         and extension flag) to {MAX_VOX_OFFSET}"
    )]
    VoxOffset(f32),
    /// `sform_code > 0`, the sform unusable, the qform too.
    #[error(
        "bad header: the sform (sform_code {sform_code}) is unusable: {sform}; the qform \
         (qform_code {qform_code}) is unusable too: {qform}"
    )]
    SformAndQform {
        /// `sform_code`.
        sform_code: i16,
        /// Why the sform is unusable.
        sform: Unusable,
        /// `qform_code`.
        qform_code: i16,
        /// Why the qform is unusable.
        qform: Unusable,
    },
    /// `sform_code > 0`, the sform unusable, no qform (`qform_code <= 0`).
    #[error(
        "bad header: the sform (sform_code {sform_code}) is unusable: {sform}; there is no \
         qform to fall back to (qform_code {qform_code})"
    )]
    SformNoQform {
        /// `sform_code`.
        sform_code: i16,
        /// Why the sform is unusable.
        sform: Unusable,
        /// `qform_code`.
        qform_code: i16,
    },
    /// No sform, `qform_code > 0` and the qform unusable.
    #[error("bad header: the qform (qform_code {qform_code}) is unusable: {qform}")]
    Qform {
        /// `qform_code`.
        qform_code: i16,
        /// Why the qform is unusable.
        qform: Unusable,
    },
    /// Neither form, and a non-finite voxel size in pixdim.
    #[error("bad header: {0} (no sform or qform, so pixdim gives the voxel size)")]
    Pixdim(Unusable),
}

/// Why a transform of a header cannot place voxels, naming the field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Unusable {
    /// A NaN or infinite element (`srow_x[2]`, `quatern_b`, `qoffset_z`, `pixdim[1]`).
    #[error("{field} is {value}")]
    NonFinite {
        /// The field, as the standard names it.
        field: String,
        /// Its value.
        value: f32,
    },
    /// A zero column of the 3x3: a voxel axis of length 0.
    #[error("its column {0} is zero (a voxel axis of length 0)")]
    ZeroColumn(usize),
    /// Columns so close to coplanar that the grid has no volume.
    #[error("its 3x3 is singular (determinant {0:e})")]
    Singular(f64),
}

/// Evaluate `$body` with the type alias `$T` bound to the Rust type of a [`Dtype`].
///
/// The arms come from one table of (variant, type) pairs (the `@arms` rule), so a new
/// dtype is one entry here, not another copy of the arm.
macro_rules! dispatch {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::io::nifti::dispatch!(@arms $dtype, $T, $body,
            U8 u8, I8 i8, I16 i16, U16 u16, I32 i32, U32 u32, F32 f32, F64 f64)
    };
    (@arms $dtype:expr, $T:ident, $body:expr, $($variant:ident $ty:ty),*) => {
        match $dtype {
            $($crate::io::nifti::Dtype::$variant => {
                type $T = $ty;
                $body
            })*
        }
    };
}
pub(crate) use dispatch;

/// The fields of a NIfTI-1 header that voxflow uses (others are ignored on reading and
/// zero on writing).
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// `dim[0..8]`: rank, then size along each axis.
    pub dim: [i16; 8],
    /// Voxel type.
    pub dtype: Dtype,
    /// `pixdim[0..8]`: qfac, then voxel size along each axis.
    pub pixdim: [f32; 8],
    /// Byte offset of the voxels in the (decompressed) file.
    pub vox_offset: usize,
    /// Data scaling slope; 0 or non-finite means no scaling.
    pub scl_slope: f32,
    /// Data scaling intercept (used only with a valid slope).
    pub scl_inter: f32,
    /// `xyzt_units` (2 = mm).
    pub xyzt_units: u8,
    /// How the qform is to be interpreted; 0 = absent.
    pub qform_code: i16,
    /// How the sform is to be interpreted; 0 = absent.
    pub sform_code: i16,
    /// Quaternion b, c, d of the qform rotation.
    pub quatern: [f32; 3],
    /// qform translation (mm).
    pub qoffset: [f32; 3],
    /// The three rows of the sform affine.
    pub srow: [[f32; 4]; 3],
    /// Whether the file is big-endian.
    pub big_endian: bool,
    /// `dim_info`: frequency, phase and slice encoding axes.
    pub dim_info: u8,
    /// `cal_min`, `cal_max`: the display range (0, 0 = unset).
    pub cal: [f32; 2],
    /// `intent_code` (0 = none).
    pub intent_code: i16,
    /// `intent_p1..3`.
    pub intent_params: [f32; 3],
    /// `intent_name` (16 bytes at most, trailing NULs removed).
    pub intent_name: Vec<u8>,
    /// `descrip` (80 bytes at most, trailing NULs removed).
    pub descrip: Vec<u8>,
}

/// A fixed-size text field of a header without its trailing NULs.
fn text_field(b: &[u8]) -> Vec<u8> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    b[..end].to_vec()
}

impl Header {
    /// Parse the first 348 bytes of a file; the error says what is wrong.
    pub fn parse(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < HEADER_SIZE {
            return Err(HeaderError::TooShort { len: b.len() });
        }
        let size_le = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let size_be = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let big = match (size_le, size_be) {
            (348, _) => false,
            (_, 348) => true,
            (540, _) | (_, 540) => return Err(HeaderError::Nifti2),
            _ => {
                return Err(HeaderError::SizeofHdr {
                    size: size_le,
                    first: [b[0], b[1], b[2], b[3]],
                })
            }
        };
        let magic = &b[344..348];
        if magic == b"ni1\0" {
            return Err(HeaderError::HdrImgPair);
        }
        if magic != b"n+1\0" {
            return Err(HeaderError::Magic {
                magic: String::from_utf8_lossy(magic)
                    .trim_end_matches('\0')
                    .to_string(),
            });
        }
        let f = Endian::new(b, big);
        let dim: [i16; 8] = std::array::from_fn(|i| f.i16(40 + 2 * i));
        if !(1..=7).contains(&dim[0]) {
            return Err(HeaderError::Rank(dim[0]));
        }
        for (i, d) in dim.iter().enumerate().take(dim[0] as usize + 1).skip(1) {
            if *d < 1 {
                return Err(HeaderError::Dim { axis: i, size: *d });
            }
        }
        let dtype = Dtype::from_code(f.i16(70))?;
        let pixdim: [f32; 8] = std::array::from_fn(|i| f.f32(76 + 4 * i));
        let vox = f.f32(108);
        // NaN fails every comparison, so it is rejected here too.
        if !(vox >= WRITE_VOX_OFFSET as f32 && vox <= MAX_VOX_OFFSET as f32 && vox.fract() == 0.0) {
            return Err(HeaderError::VoxOffset(vox));
        }
        let (scl_slope, scl_inter) = (f.f32(112), f.f32(116));
        if scl_slope.is_finite() && scl_slope != 0.0 && !scl_inter.is_finite() {
            return Err(HeaderError::Intercept {
                slope: scl_slope,
                inter: scl_inter,
            });
        }
        Ok(Header {
            dim,
            dtype,
            pixdim,
            vox_offset: vox as usize,
            scl_slope,
            scl_inter,
            xyzt_units: b[123],
            qform_code: f.i16(252),
            sform_code: f.i16(254),
            quatern: std::array::from_fn(|i| f.f32(256 + 4 * i)),
            qoffset: std::array::from_fn(|i| f.f32(268 + 4 * i)),
            srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c))),
            big_endian: big,
            dim_info: b[39],
            cal: [f.f32(128), f.f32(124)],
            intent_code: f.i16(68),
            intent_params: std::array::from_fn(|i| f.f32(56 + 4 * i)),
            intent_name: text_field(&b[328..344]),
            descrip: text_field(&b[148..228]),
        })
    }

    /// Grid size (x, y, z); axes beyond the rank count as 1.
    pub fn dims3(&self) -> [usize; 3] {
        std::array::from_fn(|i| {
            if i < self.dim[0] as usize {
                self.dim[i + 1] as usize
            } else {
                1
            }
        })
    }

    /// Number of 3D volumes (the product of dims 4 to 7).
    pub fn volumes(&self) -> usize {
        (4..=self.dim[0] as usize)
            .map(|i| self.dim[i] as usize)
            .product()
    }

    /// Voxels in one 3D volume.
    pub fn voxels(&self) -> usize {
        self.dims3().iter().product()
    }

    /// Bytes of the voxels of one 3D volume; `None` when that overflows `usize` (only
    /// possible on 32-bit targets: 32767^3 float64 voxels need under 2^48 bytes).
    pub fn data_bytes(&self) -> Option<usize> {
        self.dims3()
            .iter()
            .try_fold(self.dtype.size(), |n, &d| n.checked_mul(d))
    }

    /// Where the voxels of the first volume end in the (decompressed) file.
    pub fn data_end(&self) -> Option<usize> {
        self.data_bytes()?.checked_add(self.vox_offset)
    }

    /// "dims 4x3x2 of int16 from offset 352", for messages about sizes.
    pub(super) fn describe_data(&self) -> String {
        let [x, y, z] = self.dims3();
        format!(
            "dims {x}x{y}x{z} of {} from offset {}",
            self.dtype.name(),
            self.vox_offset
        )
    }

    /// The data scaling `(slope, intercept)`, `None` when the header asks for none
    /// (slope 0 or not finite, or slope 1 with intercept 0). With a slope, the intercept
    /// is finite ([`Header::parse`] refuses others).
    pub fn scaling(&self) -> Option<(f64, f64)> {
        let (s, i) = (self.scl_slope, self.scl_inter);
        if s == 0.0 || !s.is_finite() {
            return None;
        }
        if s == 1.0 && i == 0.0 {
            None
        } else {
            Some((s as f64, i as f64))
        }
    }
    /// Keep the display range (`cal_min`, `cal_max`) only while it still suits the
    /// data: finite, `cal_min < cal_max`, and overlapping the data's value range
    /// `[lo, hi]` (a window that shows none of the values was meant for other data).
    /// `None` (no range known, e.g. a 0/1 mask) drops it. Dropped means 0, 0 (unset).
    pub fn keep_cal_if_valid(&mut self, range: Option<(f64, f64)>) {
        let [c0, c1] = self.cal.map(|v| v as f64);
        let keep = match range {
            Some((lo, hi)) => c0.is_finite() && c1.is_finite() && c0 < c1 && c0 <= hi && c1 >= lo,
            None => false,
        };
        if !keep {
            self.cal = [0.0; 2];
        }
    }

    /// The header meaning voxflow does not interpret, to carry on a loaded grid
    /// ([`Geometry::nifti`]); non-finite floats become 0 ("unset").
    pub fn meta(&self) -> NiftiHeaderMeta {
        let fin = |v: f32| if v.is_finite() { v } else { 0.0 };
        NiftiHeaderMeta {
            qform_code: self.qform_code,
            sform_code: self.sform_code,
            xyzt_units: self.xyzt_units,
            dim_info: self.dim_info,
            pixdim_rest: std::array::from_fn(|i| fin(self.pixdim[4 + i])),
            cal: self.cal.map(fin),
            intent_code: self.intent_code,
            intent_params: self.intent_params.map(fin),
            intent_name: self.intent_name.clone(),
            descrip: self.descrip.clone(),
        }
    }

    /// The 352 bytes (header and an empty extension flag) of a little-endian single file.
    pub fn to_bytes(&self) -> [u8; WRITE_VOX_OFFSET] {
        let mut b = [0u8; WRITE_VOX_OFFSET];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &(HEADER_SIZE as i32).to_le_bytes());
        put(38, b"r");
        for (i, d) in self.dim.iter().enumerate() {
            put(40 + 2 * i, &d.to_le_bytes());
        }
        put(70, &self.dtype.code().to_le_bytes());
        put(72, &((self.dtype.size() * 8) as i16).to_le_bytes());
        for (i, p) in self.pixdim.iter().enumerate() {
            put(76 + 4 * i, &p.to_le_bytes());
        }
        put(108, &(self.vox_offset as f32).to_le_bytes());
        put(112, &self.scl_slope.to_le_bytes());
        put(116, &self.scl_inter.to_le_bytes());
        put(123, &[self.xyzt_units]);
        put(39, &[self.dim_info]);
        for (i, p) in self.intent_params.iter().enumerate() {
            put(56 + 4 * i, &p.to_le_bytes());
        }
        put(68, &self.intent_code.to_le_bytes());
        put(124, &self.cal[1].to_le_bytes());
        put(128, &self.cal[0].to_le_bytes());
        put(148, &self.descrip[..self.descrip.len().min(80)]);
        put(328, &self.intent_name[..self.intent_name.len().min(16)]);
        put(252, &self.qform_code.to_le_bytes());
        put(254, &self.sform_code.to_le_bytes());
        for i in 0..3 {
            put(256 + 4 * i, &self.quatern[i].to_le_bytes());
            put(268 + 4 * i, &self.qoffset[i].to_le_bytes());
        }
        for r in 0..3 {
            for c in 0..4 {
                put(280 + 16 * r + 4 * c, &self.srow[r][c].to_le_bytes());
            }
        }
        put(344, b"n+1\0");
        b
    }
}
