//! Voxel values as Rust numbers: the sealed [`Sample`] trait and byte views, allocation
//! and parallel helpers over sample buffers.

use rayon::prelude::*;
use voxflow_engine::NodeError;

use super::{Dtype, NiftiReader};

/// Keeps [`Sample`] closed: `as_bytes`, `as_bytes_mut` and `try_zeroed` are safe only
/// because every implementor is a primitive number without padding, for which every
/// bit pattern is valid. `Sealed` is public but in a private module, so no other crate
/// can name it, and so none can implement `Sample` for its own types.
mod sealed {
    pub trait Sealed {}
}

/// A primitive voxel type of the file format. Sealed: implemented for u8, i8, i16, u16,
/// i32, u32, f32 and f64 only.
pub trait Sample: sealed::Sealed + Copy + Send + Sync + Default + PartialOrd + 'static {
    /// Bytes per value.
    const SIZE: usize;
    /// The NIfTI dtype.
    const DTYPE: Dtype;
    /// The value as f64 (exact for every type but 64-bit ones).
    fn to_f64(self) -> f64;
    /// Reverse the byte order of a value.
    fn swap(self) -> Self;
    /// From little-endian bytes.
    fn from_le(b: &[u8]) -> Self;
    /// Reverse the byte order of every value, in parallel.
    fn swap_all(values: &mut [Self]) {
        values
            .par_chunks_mut(1 << 16)
            .for_each(|c| c.iter_mut().for_each(|v| *v = v.swap()));
    }
}

macro_rules! sample {
    ($t:ty, $d:expr, $swap:expr) => {
        impl sealed::Sealed for $t {}
        impl Sample for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const DTYPE: Dtype = $d;
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn swap(self) -> Self {
                #[allow(clippy::redundant_closure_call)]
                ($swap)(self)
            }
            #[inline]
            fn from_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("size"))
            }
        }
    };
}
sample!(u8, Dtype::U8, |v: u8| v);
sample!(i8, Dtype::I8, |v: i8| v);
sample!(i16, Dtype::I16, i16::swap_bytes);
sample!(u16, Dtype::U16, u16::swap_bytes);
sample!(i32, Dtype::I32, i32::swap_bytes);
sample!(u32, Dtype::U32, u32::swap_bytes);
sample!(f32, Dtype::F32, |v: f32| f32::from_bits(
    v.to_bits().swap_bytes()
));
sample!(f64, Dtype::F64, |v: f64| f64::from_bits(
    v.to_bits().swap_bytes()
));

/// View a slice of samples as bytes (every sample type is plain old data).
pub fn as_bytes<T: Sample>(v: &[T]) -> &[u8] {
    // SAFETY: Sample is implemented only for primitive integers and floats, which have
    // no padding and no invalid bit patterns; the length covers exactly the same memory.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// View a mutable slice of samples as bytes (every byte pattern is a valid sample).
pub fn as_bytes_mut<T: Sample>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; any bytes written form valid values of T.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}

/// Read the voxels of `reader` as a vector of their own type, in native byte order.
pub fn read_samples<T: Sample>(reader: NiftiReader) -> Result<Vec<T>, NodeError> {
    assert_eq!(
        reader.header().dtype,
        T::DTYPE,
        "sample type matches the file"
    );
    let big = reader.header().big_endian;
    let n = reader.header().voxels();
    let mut v: Vec<T> = try_zeroed(n).map_err(|m| NodeError::file(reader.path(), m))?;
    reader.read_voxels(as_bytes_mut(&mut v))?;
    if big != cfg!(target_endian = "big") {
        T::swap_all(&mut v);
    }
    Ok(v)
}

/// The memory for a voxel buffer cannot be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot allocate memory for {values} values of {dtype} ({bytes} bytes)")]
pub struct AllocError {
    /// How many values were asked for.
    pub values: usize,
    /// Their type's name.
    pub dtype: &'static str,
    /// Their size in bytes (saturated at `usize::MAX`).
    pub bytes: usize,
}

/// `n` zeroed samples, or an error when the memory cannot be had.
///
/// Written by hand because std has no fallible `vec![0; n]`: `vec!` aborts the process
/// when allocation fails (under `--cases` that ended the whole batch), and
/// `try_reserve` followed by `resize` writes every page, so a header that claims more
/// than a gzip stream holds would make the whole claim resident before the short stream
/// is noticed. `alloc_zeroed` (calloc) gets fresh zero pages from the OS that cost
/// memory only once the reader writes them.
pub fn try_zeroed<T: Sample>(n: usize) -> Result<Vec<T>, AllocError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let fail = || AllocError {
        values: n,
        dtype: T::DTYPE.name(),
        bytes: n.saturating_mul(T::SIZE),
    };
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| fail())?;
    // SAFETY: the layout has a non-zero size (n > 0 and every Sample has a size).
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if p.is_null() {
        return Err(fail());
    }
    // SAFETY: `p` comes from the global allocator with `Layout::array::<T>(n)`, which is
    // the layout of a `Vec<T>` of capacity n; all n values are initialised, because an
    // all-zero bit pattern is a valid value of every `Sample` (sealed: primitive
    // integers and floats only).
    Ok(unsafe { Vec::from_raw_parts(p, n, n) })
}

/// Map every value in parallel (chunks of 64 Ki voxels), keeping order.
pub fn par_map<T: Sample, U: Send + Sync + Copy + Default>(
    src: &[T],
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let mut out = vec![U::default(); src.len()];
    out.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(o, s)| o.iter_mut().zip(s).for_each(|(o, &s)| *o = f(s)));
    out
}

/// Smallest and largest value (NaN ignored), in parallel; `None` when empty or all NaN.
pub fn par_min_max<T: Sample>(v: &[T]) -> Option<(T, T)> {
    v.par_chunks(1 << 16)
        .filter_map(|c| {
            let mut it = c.iter().copied().filter(|x| x.partial_cmp(x).is_some());
            let first = it.next()?;
            Some(it.fold((first, first), |(lo, hi), x| {
                (if x < lo { x } else { lo }, if x > hi { x } else { hi })
            }))
        })
        .reduce_with(|(a, b), (c, d)| (if c < a { c } else { a }, if d > b { d } else { b }))
}

/// Little-endian bytes of samples: borrowed on little-endian machines.
pub fn le_bytes<T: Sample>(v: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(as_bytes(v))
    } else {
        let mut w = v.to_vec();
        T::swap_all(&mut w);
        std::borrow::Cow::Owned(as_bytes(&w).to_vec())
    }
}
