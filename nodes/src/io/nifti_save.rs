//! `SaveNifti`: write an Image, Mask or Labels map as a NIfTI-1 file.

use std::ops::Range;
use std::path::{Path, PathBuf};

use voxflow_engine::{
    node_impls, node_params, params::require_set, Example, Geometry, Image, Impls, InputSpec,
    Labels, Mask, Node, NodeContext, NodeError, NodeSpec, NodeType, ParamError, Params, PortType,
    Value,
};

use super::nifti::{le_bytes, nifti_kind, par_min_max, write_file, ByteSource, Header, Sample};

node_params! {
    /// Params of `SaveNifti`.
    pub struct SaveNiftiParams {
        /// File to write: `.nii` or `.nii.gz` (gzip). Relative paths resolve against the
        /// run's output folder.
        #[param(required)]
        pub path: String = String::new(),
    }
}

node_impls! {
    /// The implementation of `SaveNifti`.
    pub enum SaveNiftiImpl {
        /// Header written here; gzip blocks deflated in parallel (zlib-rs, rayon).
        // Version 2: no qform for sheared affines, the source header's meaning kept.
        #[version = 2]
        Native = "native",
    }
}

fn check_grid(path: &Path, g: &Geometry) -> Result<(), NodeError> {
    if let Some(d) = g.dims.iter().find(|&&d| d > i16::MAX as usize) {
        return Err(NodeError::file(
            path,
            format!("cannot write: a NIfTI-1 axis holds at most 32767 voxels, got {d}"),
        ));
    }
    Ok(())
}

/// Smallest and largest voxel value, for checking a kept display range.
fn value_range<T: Sample>(voxels: &[T]) -> Option<(f64, f64)> {
    par_min_max(voxels).map(|(lo, hi)| (lo.to_f64(), hi.to_f64()))
}

fn write<T: Sample>(path: &Path, g: &Geometry, voxels: &[T]) -> Result<(), NodeError> {
    check_grid(path, g)?;
    let bytes = le_bytes(voxels);
    let source = ByteSource::slice(&bytes);
    let mut header = Header::for_geometry(g, T::DTYPE);
    header.keep_cal_if_valid(value_range(voxels));
    write_file(path, &header, &source)
}

/// Write uint8 voxels produced range by range (linear voxel ranges; no whole-volume
/// copy); `range` is their value range for the display range check (`None` drops it).
fn write_u8(
    path: &Path,
    g: &Geometry,
    range: Option<(f64, f64)>,
    bytes: impl Fn(Range<usize>) -> Vec<u8> + Sync,
) -> Result<(), NodeError> {
    check_grid(path, g)?;
    let source = ByteSource::with(g.len(), bytes);
    let mut header = Header::for_geometry(g, <u8 as Sample>::DTYPE);
    header.keep_cal_if_valid(range);
    write_file(path, &header, &source)
}

/// Write an Image: int16 voxels for i16 images, float32 for f32 ones.
pub fn save_image(path: &Path, image: &Image) -> Result<(), NodeError> {
    match image {
        Image::I16(v) => write(path, v.geometry(), v.as_slice()),
        Image::F32(v) => write(path, v.geometry(), v.as_slice()),
    }
}

/// Write a Mask as uint8 (0/1).
pub fn save_mask(path: &Path, mask: &Mask) -> Result<(), NodeError> {
    // A 0/1 mask has no display range of its own; one kept from its source (a CT
    // window) would be wrong for it.
    write_u8(path, mask.geometry(), None, |r| mask.bytes_in(r))
}

/// Write a Labels map: uint8 when every label is at most 255, else uint16.
pub fn save_labels(path: &Path, labels: &Labels) -> Result<(), NodeError> {
    let range = value_range(labels.as_slice());
    let max = range.map_or(0.0, |(_, hi)| hi);
    if max <= u8::MAX as f64 {
        let v = labels.as_slice();
        write_u8(path, labels.geometry(), range, |r| {
            v[r].iter().map(|&l| l as u8).collect()
        })
    } else {
        write(path, labels.geometry(), labels.as_slice())
    }
}

/// Write any volume value (Image, Mask, Labels) by its type.
pub fn save_value(path: &Path, value: &Value) -> Result<(), NodeError> {
    match value {
        Value::Image(v) => save_image(path, v),
        Value::Mask(v) => save_mask(path, v),
        Value::Labels(v) => save_labels(path, v),
        other => Err(NodeError::Input {
            port: "volume".into(),
            message: format!("expected Image, Mask or Labels, got {}", other.port_type()),
        }),
    }
}

struct SaveNode {
    path: String,
}

impl Node for SaveNode {
    fn output_files(&self) -> Vec<std::path::PathBuf> {
        vec![self.path.clone().into()]
    }

    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let value = ctx.required("volume")?.clone();
        let path: PathBuf = ctx.output_path(&self.path);
        save_value(&path, &value)?;
        ctx.file_written(&path);
        Ok(())
    }
}

/// Write a volume as a NIfTI-1 file.
pub struct SaveNifti;

impl NodeType for SaveNifti {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "SaveNifti",
            summary: "Write an Image, Mask or Labels map as a NIfTI-1 file (.nii, .nii.gz).",
            doc: concat!(
                "Voxel types: Image i16 -> int16, Image f32 -> float32, Mask -> uint8, Labels -> ",
                "uint8 when every label is <= 255, else uint16; no scaling (slope 1). Geometry: ",
                "the affine is written as the sform (code 1, scanner) and, when it is a rotation ",
                "times voxel sizes, as the qform (code 1); an affine with shear gets qform_code 0, ",
                "as nibabel writes it, so no reader can take a shear-stripped qform for the ",
                "geometry. pixdim holds the spacing. A volume on a grid loaded from NIfTI keeps ",
                "that header's meaning: sform/qform codes (while they still give the affine, else ",
                "the sform is written with the source's code), xyzt_units, pixdim[4..] (TR), ",
                "dim_info, intent code/params/name, descrip, and cal_min/cal_max while they ",
                "overlap the data's values (never for masks). Files ",
                "written here load back bit for bit (voxels, and the affine whenever the sform is set). ",
                "`.nii.gz` is compressed ",
                "in parallel into one standard gzip stream (deflate level 3, independent 1 MiB ",
                "blocks, the same bytes on any machine) whose header lists the blocks (an FEXTRA ",
                "subfield other readers skip), so voxflow loads it back in parallel. The file ",
                "appears atomically (temporary file, then rename); any other extension is an ",
                "error."
            ),
            category: "io",
            inputs: vec![InputSpec::required(
                "volume",
                &[PortType::Image, PortType::Mask, PortType::Labels],
                "The volume to write.",
            )],
            outputs: vec![],
            params: SaveNiftiParams::param_specs(),
            impls: SaveNiftiImpl::specs(),
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Save the phantom CT (int16) and its labels (uint8).",
            graph: r#"Graph(
    name: "save_nifti_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "ct":      (node: "SaveNifti", inputs: (volume: "phantom.ct"), params: (path: "ct.nii.gz")),
        "truth":   (node: "SaveNifti", inputs: (volume: "phantom.truth"), params: (path: "truth.nii")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = SaveNiftiParams::from_json(params)?;
        require_set("path", &p.path, "the .nii or .nii.gz file to write")?;
        if nifti_kind(Path::new(&p.path)).is_none() {
            return Err(vec![ParamError::field(
                "path",
                format!(
                    "unknown extension in {:?}: expected .nii or .nii.gz",
                    p.path
                ),
            )]);
        }
        Ok(Box::new(SaveNode { path: p.path }))
    }
}
