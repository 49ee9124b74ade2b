//! Input and output: NIfTI-1 files (load as Image, Mask or Labels; save any volume) and
//! DICOM CT series.
//!
//! [`nifti`] holds the format itself (header, reading in one go, parallel gzip writing)
//! so loaders, the saver and benchmarks share it.

use voxflow_engine::Registry;

pub mod dicom;
pub mod nifti;
pub mod nifti_load;
pub mod nifti_save;

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(nifti_load::LoadNifti);
    reg.add(nifti_load::LoadMask);
    reg.add(nifti_load::LoadLabels);
    reg.add(nifti_save::SaveNifti);
    reg.add(dicom::LoadDicomSeries);
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests_dicom;
#[cfg(test)]
mod tests_nifti;
