//! `LoadNifti`, `LoadMask`, `LoadLabels`: read a NIfTI-1 file (`.nii`, `.nii.gz`) as an
//! Image, a Mask or a Labels map.
//!
//! Three node types rather than one with a `kind` param, because a port's type must be
//! fixed in the spec for validation: each type has one output of one type. They share
//! this file and the reader in [`super::nifti`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use voxflow_engine::{
    node_impls, node_params, params::require_set, Example, Geometry, Image, Impls, Labels, Mask,
    Node, NodeContext, NodeError, NodeSpec, NodeType, OutputSpec, ParamError, Params, PortType,
    Value, Volume,
};

use super::nifti::{dispatch, par_map, par_min_max, read_samples, Dtype, NiftiReader, Sample};

node_params! {
    /// Params of the three loaders.
    pub struct LoadParams {
        /// File to read: NIfTI-1 `.nii` or `.nii.gz` (compression is detected from the
        /// content). Relative paths are relative to the working directory.
        #[param(required)]
        pub path: String = String::new(),
    }
}

node_impls! {
    /// The implementations of the three loaders.
    pub enum LoadImpl {
        /// Reads the whole file, inflates it with one zlib-rs call straight into the voxel
        /// buffer and converts types in parallel (rayon).
        // Version 2: loaded grids carry the header's meaning (`Geometry::nifti`), which
        // cached values of version 1 lack.
        #[version = 2]
        Native = "native",
    }
}

/// Read a NIfTI-1 file as an Image: `i16` when the voxels are int16, uint8 or int8 and
/// unscaled, or scaled by a whole slope and intercept with every scaled value fitting in
/// i16; `f32` (computed in f64) otherwise.
pub fn load_image(path: &Path) -> Result<Image, NodeError> {
    let reader = NiftiReader::open(path)?;
    let h = reader.header().clone();
    let geometry = reader.geometry().clone();
    let vol = |v| Volume::from_vec(geometry.clone(), v).expect("reader sized the buffer");
    let small_int = matches!(h.dtype, Dtype::I16 | Dtype::U8 | Dtype::I8);
    match (h.dtype, h.scaling()) {
        (Dtype::I16, None) => Ok(Image::I16(vol(read_samples::<i16>(reader)?))),
        (Dtype::F32, None) => Ok(Image::F32(
            Volume::from_vec(geometry.clone(), read_samples::<f32>(reader)?).expect("sized"),
        )),
        (_, None) if small_int => {
            let v = dispatch!(h.dtype, T => {
                let raw = read_samples::<T>(reader)?;
                par_map(&raw, |x| x.to_f64() as i16)
            });
            Ok(Image::I16(vol(v)))
        }
        (_, Some((s, i))) if small_int && s.fract() == 0.0 && i.fract() == 0.0 => {
            let out = dispatch!(h.dtype, T => {
                let raw = read_samples::<T>(reader)?;
                let fits = match par_min_max(&raw) {
                    None => true,
                    Some((lo, hi)) => {
                        let (a, b) = (lo.to_f64() * s + i, hi.to_f64() * s + i);
                        a.min(b) >= i16::MIN as f64 && a.max(b) <= i16::MAX as f64
                    }
                };
                if fits {
                    Image::I16(vol(par_map(&raw, |x| (x.to_f64() * s + i) as i16)))
                } else {
                    Image::F32(Volume::from_vec(geometry.clone(), par_map(&raw, |x| (x.to_f64() * s + i) as f32)).expect("sized"))
                }
            });
            Ok(out)
        }
        (dtype, scaling) => {
            let (s, i) = scaling.unwrap_or((1.0, 0.0));
            let v = dispatch!(dtype, T => {
                let raw = read_samples::<T>(reader)?;
                par_map(&raw, |x| (x.to_f64() * s + i) as f32)
            });
            Ok(Image::F32(Volume::from_vec(geometry, v).expect("sized")))
        }
    }
}

/// Read a NIfTI-1 file as a Mask: every non-zero voxel (after scaling; NaN counts as
/// zero) becomes 1.
pub fn load_mask(path: &Path) -> Result<Mask, NodeError> {
    let reader = NiftiReader::open(path)?;
    let h = reader.header().clone();
    let geometry = reader.geometry().clone();
    let v = match (h.dtype, h.scaling()) {
        (Dtype::U8, None) => read_samples::<u8>(reader)?,
        (dtype, scaling) => {
            let (s, i) = scaling.unwrap_or((1.0, 0.0));
            dispatch!(dtype, T => {
                let raw = read_samples::<T>(reader)?;
                par_map(&raw, |x| {
                    let y = x.to_f64() * s + i;
                    (y != 0.0 && !y.is_nan()) as u8
                })
            })
        }
    };
    Ok(Mask::from_bytes(geometry, &v).expect("sized"))
}

/// Read a NIfTI-1 file as a Labels map. Values (after scaling) must be whole numbers in
/// 0..=65535; otherwise the error names the file, the first bad value and its voxel.
pub fn load_labels(path: &Path) -> Result<Labels, NodeError> {
    let reader = NiftiReader::open(path)?;
    let h = reader.header().clone();
    let geometry = reader.geometry().clone();
    let v = match (h.dtype, h.scaling()) {
        (Dtype::U16, None) => read_samples::<u16>(reader)?,
        (Dtype::U8, None) => par_map(&read_samples::<u8>(reader)?, |x| x as u16),
        (dtype, scaling) => {
            let (s, i) = scaling.unwrap_or((1.0, 0.0));
            dispatch!(dtype, T => {
                let raw = read_samples::<T>(reader)?;
                let ok = |x: T| {
                    let y = x.to_f64() * s + i;
                    y.fract() == 0.0 && (0.0..=65535.0).contains(&y)
                };
                if let Some(bad) = raw.par_iter().position_first(|&x| !ok(x)) {
                    return Err(bad_label(path, &geometry, bad, raw[bad].to_f64() * s + i));
                }
                par_map(&raw, |x| (x.to_f64() * s + i) as u16)
            })
        }
    };
    Ok(Volume::from_vec(geometry, v).expect("sized"))
}

fn bad_label(path: &Path, g: &Geometry, index: usize, value: f64) -> NodeError {
    let [nx, ny, _] = g.dims;
    let (x, y, z) = (index % nx, (index / nx) % ny, index / (nx * ny));
    let what = if value.is_finite() && value.fract() == 0.0 {
        format!("label value {value} at voxel ({x}, {y}, {z}) is outside 0..=65535")
    } else {
        format!("non-integral label value {value} at voxel ({x}, {y}, {z})")
    };
    NodeError::file(
        path,
        format!("not a label map: {what}; labels must be whole numbers 0..=65535"),
    )
}

/// Which of the three loaders.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Image,
    Mask,
    Labels,
}

impl Kind {
    /// The spec of this kind's loader: all three share their params, implementations,
    /// category and lack of inputs; they differ in name, texts and their one output.
    fn spec(
        self,
        name: &'static str,
        summary: &'static str,
        doc: &'static str,
        output: OutputSpec,
    ) -> NodeSpec {
        NodeSpec {
            name,
            summary,
            doc,
            category: "io",
            inputs: vec![],
            outputs: vec![output],
            params: LoadParams::param_specs(),
            impls: LoadImpl::specs(),
        }
    }

    /// The loader of this kind for the file its params name.
    fn build(self, params: &serde_json::Value) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = LoadParams::from_json(params)?;
        require_set("path", &p.path, "the NIfTI file to read")?;
        Ok(Box::new(LoadNode {
            path: PathBuf::from(p.path),
            kind: self,
        }))
    }
}

struct LoadNode {
    path: PathBuf,
    kind: Kind,
}

impl Node for LoadNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        match self.kind {
            Kind::Image => ctx.set_output("image", Value::Image(Arc::new(load_image(&self.path)?))),
            Kind::Mask => ctx.set_output("mask", Value::Mask(Arc::new(load_mask(&self.path)?))),
            Kind::Labels => {
                ctx.set_output("labels", Value::Labels(Arc::new(load_labels(&self.path)?)))
            }
        }
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
}

/// Read a NIfTI-1 file as an Image (HU for CT).
pub struct LoadNifti;

impl NodeType for LoadNifti {
    fn spec(&self) -> NodeSpec {
        Kind::Image.spec(
            "LoadNifti",
            "Read a NIfTI-1 file (.nii, .nii.gz) as an Image.",
            concat!(
                "The voxels stay i16 when the file holds int16, uint8 or int8 without scaling ",
                "(or with a whole slope and intercept whose results fit in i16); anything else ",
                "becomes f32, computed in f64 as value * scl_slope + scl_inter. ",
                "Supports NIfTI-1 single files, plain or gzip (also multi-member), little- or ",
                "big-endian, with header extensions (vox_offset is honoured), dtypes uint8, int8, ",
                "int16, uint16, int32, uint32, float32 and float64, and scl_slope/scl_inter ",
                "(slope 0 means no scaling). Geometry: the sform when sform_code > 0, else the ",
                "qform (quaternion) when qform_code > 0, else pixdim scaling; elements are kept ",
                "at the f32 precision the header stores, so a save/load round trip is exact. An ",
                "unusable sform (NaN/Inf element, zero or singular) falls back to a sound qform; ",
                "any other unusable transform (NaN/Inf quaternion, qoffset or pixdim) is an error ",
                "naming the field. Dims and vox_offset are checked against the file size before ",
                "anything is allocated. 3D ",
                "files, or 4D with a single volume; more volumes, complex or RGB data, NIfTI-2 and ",
                ".hdr/.img pairs are errors naming the file."
            ),
            OutputSpec::new(
                "image",
                PortType::Image,
                "The voxels (HU for CT) and their grid.",
            ),
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "Write the phantom CT as a NIfTI file (what LoadNifti reads back).",
                graph: r#"Graph(
    name: "save_phantom_ct",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "save":    (node: "SaveNifti", inputs: (volume: "phantom.ct"), params: (path: "phantom_ct.nii.gz")),
    },
)"#,
            },
            Example {
                description:
                    "Muscle statistics of the real test CT (runs where ../shared/data exists).",
                graph: r#"Graph(
    name: "load_ct_muscle_stats",
    params: {
        "ct": "../shared/data/ct_sm.nii.gz",
        "muscle": "../shared/data/ct_sm_tissue_skeletal_muscle.nii.gz",
    },
    nodes: {
        "ct":     (node: "LoadNifti", params: (path: "${ct}")),
        "muscle": (node: "LoadMask", params: (path: "${muscle}")),
        "stats":  (node: "LabelStats", inputs: (labels: "muscle", image: "ct")),
        "csv":    (node: "WriteTable", inputs: (table: "stats.table"), params: (path: "muscle_stats.csv")),
    },
)"#,
            },
        ]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        Kind::Image.build(params)
    }
}

/// Read a NIfTI-1 file as a Mask (non-zero voxels become 1).
pub struct LoadMask;

impl NodeType for LoadMask {
    fn spec(&self) -> NodeSpec {
        Kind::Mask.spec(
            "LoadMask",
            "Read a NIfTI-1 file (.nii, .nii.gz) as a Mask; non-zero voxels become 1.",
            concat!(
                "Any voxel type is accepted; a voxel is foreground when its (scaled) value is ",
                "neither 0 nor NaN. Formats, geometry and errors as LoadNifti."
            ),
            OutputSpec::new(
                "mask",
                PortType::Mask,
                "1 where the file is non-zero, else 0.",
            ),
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description:
                    "Write the phantom's muscle labels as a NIfTI file (LoadMask reads it).",
                graph: r#"Graph(
    name: "save_phantom_truth",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "save":    (node: "SaveNifti", inputs: (volume: "phantom.truth"), params: (path: "truth.nii.gz")),
    },
)"#,
            },
            Example {
                description: "Volume of the real muscle mask (runs where ../shared/data exists).",
                graph: r#"Graph(
    name: "load_mask_volume",
    params: { "muscle": "../shared/data/ct_sm_tissue_skeletal_muscle.nii.gz" },
    nodes: {
        "muscle": (node: "LoadMask", params: (path: "${muscle}")),
        "stats":  (node: "LabelStats", inputs: (labels: "muscle")),
    },
)"#,
            },
        ]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        Kind::Mask.build(params)
    }
}

/// Read a NIfTI-1 file as a Labels map.
pub struct LoadLabels;

impl NodeType for LoadLabels {
    fn spec(&self) -> NodeSpec {
        Kind::Labels.spec(
            "LoadLabels",
            "Read a NIfTI-1 label map (.nii, .nii.gz) as Labels.",
            concat!(
                "Integer files, or float files whose every (scaled) value is a whole number in ",
                "0..=65535; otherwise an error names the file, the first bad value and its voxel. ",
                "Formats, geometry and other errors as LoadNifti."
            ),
            OutputSpec::new(
                "labels",
                PortType::Labels,
                "The label map (0 = background).",
            ),
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "Write the phantom's predicted labels as a NIfTI file (LoadLabels reads it).",
                graph: r#"Graph(
    name: "save_phantom_prediction",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "save":    (node: "SaveNifti", inputs: (volume: "phantom.prediction"), params: (path: "prediction.nii.gz")),
    },
)"#,
            },
            Example {
                description: "Per-label volumes and HU of the real 117-class map (runs where ../shared/data exists).",
                graph: r#"Graph(
    name: "load_total_stats",
    params: {
        "ct": "../shared/data/ct_sm.nii.gz",
        "total": "../shared/data/ct_sm_total.nii.gz",
    },
    nodes: {
        "ct":     (node: "LoadNifti", params: (path: "${ct}")),
        "total":  (node: "LoadLabels", params: (path: "${total}")),
        "stats":  (node: "LabelStats", inputs: (labels: "total", image: "ct")),
        "json":   (node: "WriteTable", inputs: (table: "stats.table"), params: (path: "total_stats.json")),
    },
)"#,
            },
        ]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        Kind::Labels.build(params)
    }
}
