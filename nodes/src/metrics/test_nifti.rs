//! A minimal NIfTI reader for this family's tests (uint8, int16 and uint16 voxels,
//! little endian, sform or pixdim geometry), so they do not depend on the io family.

use std::path::Path;

use voxflow_engine::{Geometry, Image, Labels, Volume};

fn read(path: &Path) -> (Geometry, i16, Vec<u8>) {
    use nifti::NiftiObject;
    let obj = nifti::ReaderOptions::new()
        .read_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = obj.header().clone();
    let dims = [h.dim[1] as usize, h.dim[2] as usize, h.dim[3] as usize];
    let geom = if h.sform_code > 0 {
        let r = |s: [f32; 4]| s.map(f64::from);
        Geometry::from_affine(
            dims,
            [r(h.srow_x), r(h.srow_y), r(h.srow_z), [0.0, 0.0, 0.0, 1.0]],
        )
    } else {
        Geometry::new(dims, [h.pixdim[1], h.pixdim[2], h.pixdim[3]].map(f64::from))
    };
    (geom, h.datatype, obj.into_volume().into_raw_data())
}

fn values(datatype: i16, raw: &[u8]) -> Vec<i64> {
    match datatype {
        2 => raw.iter().map(|&v| i64::from(v)).collect(),
        4 => raw
            .chunks_exact(2)
            .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        512 => raw
            .chunks_exact(2)
            .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        t => panic!("test reader: NIfTI datatype {t} not supported"),
    }
}

/// A label map (or binary mask, as labels 0/1).
pub(crate) fn load_labels(path: &Path) -> Labels {
    let (g, t, raw) = read(path);
    Volume::from_vec(g, values(t, &raw).into_iter().map(|v| v as u16).collect()).expect("size")
}

/// A CT image (int16 HU).
pub(crate) fn load_image(path: &Path) -> Image {
    let (g, t, raw) = read(path);
    Image::I16(
        Volume::from_vec(g, values(t, &raw).into_iter().map(|v| v as i16).collect()).expect("size"),
    )
}
