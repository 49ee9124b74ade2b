//! Helpers several node families use, kept out of any one family so that no family
//! reaches into another's internals.
//!
//! - [`buffer`]: zeroed, volume-sized output buffers that are cheap to fault in (the
//!   mask-producing kernels of intensity, masks and components).
//! - [`bytes`]: little- or big-endian numbers at byte offsets (the DICOM prescan, the
//!   NIfTI header).
//! - [`edt`]: exact anisotropic Euclidean distance transforms (`CompareMasks`' surface
//!   distances, `SimulateSparseAnnotation`'s background band).

pub mod buffer;
pub mod bytes;
pub mod edt;
pub mod grid;
