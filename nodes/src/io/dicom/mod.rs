//! `LoadDicomSeries`: read a folder holding one DICOM CT series as an Image in HU.
//!
//! Slices are ordered by geometry, never by name or UID: series exported by some tools
//! have empty UIDs (the test series here does), and file names carry no order. Each
//! slice's ImagePositionPatient is projected on the slice normal (the cross product of
//! the two ImageOrientationPatient direction cosines) and sorted ascending, the order
//! SimpleITK/GDCM use, so voxel k = 0 is the slice lowest along the normal.
//!
//! The format is read in `series` (files, elements, pixel data) after `prescan`
//! checked each file's structure; `volume` assembles a series into one volume; this
//! file is the node and its params.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use voxflow_engine::{
    node_params, params::require_set, Example, ImplSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Value,
};

mod prescan;
mod series;
mod volume;

#[cfg(test)]
pub(crate) use series::decode_file;
pub use series::{list_series, SeriesSummary, MAX_FILE_BYTES, MAX_PIXELS};
use volume::load;
pub use volume::{load_dicom_series, load_dicom_series_choosing};

/// Which series of a folder to load.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum SeriesChoice {
    /// The series with this SeriesNumber.
    Number(i64),
    /// The series with this SeriesInstanceUID, or `"largest"`: the one with most slices.
    Text(String),
}

// By hand rather than `#[serde(untagged)]`, whose error ("did not match any variant")
// would not say what the param accepts.
impl<'de> Deserialize<'de> for SeriesChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Choice;
        impl serde::de::Visitor<'_> for Choice {
            type Value = SeriesChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a SeriesInstanceUID string, a whole SeriesNumber or \"largest\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SeriesChoice, E> {
                Ok(SeriesChoice::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SeriesChoice, E> {
                i64::try_from(v)
                    .map(SeriesChoice::Number)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SeriesChoice, E> {
                Ok(SeriesChoice::Text(v.to_string()))
            }
        }
        d.deserialize_any(Choice)
    }
}

node_params! {
    /// Params of `LoadDicomSeries`.
    pub struct LoadDicomParams {
        /// Folder holding the slices of one series. Relative paths are relative to the
        /// working directory.
        #[param(required)]
        pub dir: String = String::new(),
        /// Which series to load when the folder holds several (`voxflow dicom ls DIR` lists
        /// them): a SeriesInstanceUID, a SeriesNumber, or "largest" (most slices). None
        /// (the default): a folder with several series is an error that lists them.
        #[param(ty = "None | \"<SeriesInstanceUID>\" | <SeriesNumber> | \"largest\"")]
        pub series: Option<SeriesChoice> = None,
    }
}

struct LoadDicomNode {
    dir: PathBuf,
    series: Option<SeriesChoice>,
}

impl Node for LoadDicomNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let (image, notes) = load(&self.dir, self.series.as_ref())?;
        for note in notes {
            ctx.note(note);
        }
        ctx.set_output("image", Value::Image(Arc::new(image)));
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
}

/// Read a DICOM CT series folder as an Image in HU.
pub struct LoadDicomSeries;

impl NodeType for LoadDicomSeries {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "LoadDicomSeries",
            summary: "Read a folder holding one DICOM CT series as an Image in HU.",
            doc: concat!(
                "Slices are ordered by ImagePositionPatient projected on the slice normal (the ",
                "cross product of the ImageOrientationPatient rows), ascending, as SimpleITK ",
                "does; names and UIDs play no part. RescaleSlope/RescaleIntercept are applied per ",
                "slice (i16 voxels when both are whole numbers and HU fit, else f32). The LPS ",
                "patient coordinates of DICOM become the RAS affine of NIfTI (x and y negated). ",
                "Transfer syntaxes: uncompressed, deflated, RLE Lossless, JPEG 2000 and 8/16-bit ",
                "JPEG baseline/lossless; JPEG-LS is refused naming the syntax, 12-bit JPEG ",
                "extended fails to decode (named). With ",
                "PixelRepresentation 1 stored values are sign-extended from BitsStored (as GDCM ",
                "and pydicom do, whatever a JPEG 2000 codestream says). MONOCHROME1 is inverted ",
                "as SimpleITK/GDCM do ((2^BitsStored - 1) - stored, then rescaled; pydicom ",
                "leaves it as stored); signed MONOCHROME1 is refused. Hidden files and sub-folders ",
                "are skipped. Errors name the file: not DICOM, element lengths beyond the file ",
                "or sequences nested over 64 deep (checked before parsing), non-finite or ",
                "degenerate ImagePositionPatient/ImageOrientationPatient/PixelSpacing, ",
                "RescaleSlope 0 or non-finite rescale (or one beyond the f32 range), PALETTE ",
                "COLOR or colour, multi-frame; duplicate or unevenly spaced slices (files and ",
                "positions given), a slice of another PixelSpacing, slices shifted across the ",
                "plane (a gantry tilt: one voxel grid cannot hold them). Several series (different SeriesInstanceUID when set, size ",
                "or orientation): an error listing UID, number, description, modality and slice ",
                "count of each unless `series` picks one. A Modality other than CT (MR, PT...) ",
                "loads, rescaled all the same, with a warning in the run report that the values ",
                "are not HU."
            ),
            category: "io",
            inputs: vec![],
            outputs: vec![OutputSpec::new("image", PortType::Image, "The series in HU on its grid (RAS affine).")],
            params: LoadDicomParams::param_specs(),
            impls: vec![ImplSpec::new(
                "native",
                "dicom-object + dicom-pixeldata (pure Rust JPEG 2000), files read and decoded in parallel.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description:
                    "Write the phantom CT as NIfTI (what a DICOM series is usually converted to).",
                graph: r#"Graph(
    name: "phantom_to_nifti",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "save":    (node: "SaveNifti", inputs: (volume: "phantom.ct"), params: (path: "ct.nii.gz")),
    },
)"#,
            },
            Example {
                description:
                    "Convert the real test series to NIfTI (runs where ../shared/data exists).",
                graph: r#"Graph(
    name: "dicom_to_nifti",
    params: { "series": "../shared/data/dicom/ct_series" },
    nodes: {
        "ct":   (node: "LoadDicomSeries", params: (dir: "${series}")),
        "save": (node: "SaveNifti", inputs: (volume: "ct"), params: (path: "ct_series.nii.gz")),
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
        let p = LoadDicomParams::from_json(params)?;
        require_set("dir", &p.dir, "the folder of the series")?;
        Ok(Box::new(LoadDicomNode {
            dir: PathBuf::from(p.dir),
            series: p.series,
        }))
    }
}
