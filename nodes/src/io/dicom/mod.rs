//! `LoadDicomSeries`: read a folder holding one DICOM CT series as an Image in HU.
//!
//! Slices are ordered by geometry, never by name or UID: series exported by some tools
//! have empty UIDs (the test series here does), and file names carry no order. Each
//! slice's ImagePositionPatient is projected on the slice normal (the cross product of
//! the two ImageOrientationPatient direction cosines) and sorted ascending, the order
//! SimpleITK/GDCM use, so voxel k = 0 is the slice lowest along the normal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use voxflow_engine::{
    parse_params, Example, Geometry, Image, ImplSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, ParamSpec, PortType, Value, Volume,
};

/// Params of `LoadDicomSeries`.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LoadDicomParams {
    /// Folder holding the slices of one series. Required (no default). Relative paths
    /// are relative to the working directory.
    pub dir: String,
}

/// Largest difference between slice gaps accepted as even: 0.01 mm plus 0.1 % of the
/// spacing (positions are often written with 2 to 3 decimals).
fn spacing_tolerance(spacing: f64) -> f64 {
    0.01 + 1e-3 * spacing.abs()
}

/// What is needed of one slice before decoding its pixels.
struct Slice {
    path: PathBuf,
    obj: DefaultDicomObject,
    rows: u32,
    cols: u32,
    /// Row and column direction cosines (LPS).
    iop: [f64; 6],
    /// Position of the first voxel (LPS, mm).
    ipp: [f64; 3],
    /// Spacing between rows, then between columns (mm), as DICOM orders PixelSpacing.
    pixel_spacing: [f64; 2],
    slope: f64,
    intercept: f64,
    series_uid: String,
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn floats(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: dicom_core::Tag,
    what: &str,
    n: usize,
) -> Result<Vec<f64>, NodeError> {
    let e = obj.element(tag).map_err(|_| {
        NodeError::file(
            path,
            format!("missing {what}; cannot place the slice in space"),
        )
    })?;
    let v = e
        .to_multi_float64()
        .map_err(|err| NodeError::file(path, format!("unreadable {what}: {err}")))?;
    if v.len() < n {
        return Err(NodeError::file(
            path,
            format!("{what} has {} values, expected {n}", v.len()),
        ));
    }
    Ok(v)
}

fn optional_float(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: dicom_core::Tag,
    what: &str,
    default: f64,
) -> Result<f64, NodeError> {
    match obj.element_opt(tag) {
        Ok(Some(e)) => match e.to_float64() {
            Ok(v) => Ok(v),
            // Present but empty counts as absent.
            Err(_) if e.to_str().map(|s| s.trim().is_empty()).unwrap_or(false) => Ok(default),
            Err(err) => Err(NodeError::file(path, format!("unreadable {what}: {err}"))),
        },
        _ => Ok(default),
    }
}

fn read_slice(path: &Path) -> Result<Slice, NodeError> {
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| NodeError::file(path, format!("not a DICOM file (or unreadable): {e}")))?;
    let uint = |tag, what: &str| -> Result<u32, NodeError> {
        obj.element(tag)
            .map_err(|_| NodeError::file(path, format!("missing {what}; not an image slice")))?
            .to_int::<u32>()
            .map_err(|e| NodeError::file(path, format!("unreadable {what}: {e}")))
    };
    let rows = uint(tags::ROWS, "Rows")?;
    let cols = uint(tags::COLUMNS, "Columns")?;
    if let Ok(Some(e)) = obj.element_opt(tags::NUMBER_OF_FRAMES) {
        if e.to_int::<u32>().unwrap_or(1) > 1 {
            return Err(NodeError::file(
                path,
                "multi-frame images are not supported; expected one slice per file",
            ));
        }
    }
    if let Ok(Some(e)) = obj.element_opt(tags::SAMPLES_PER_PIXEL) {
        if e.to_int::<u16>().unwrap_or(1) != 1 {
            return Err(NodeError::file(
                path,
                "colour images are not supported (SamplesPerPixel != 1)",
            ));
        }
    }
    let iop = floats(
        &obj,
        path,
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )?;
    let ipp = floats(
        &obj,
        path,
        tags::IMAGE_POSITION_PATIENT,
        "ImagePositionPatient",
        3,
    )?;
    let ps = floats(&obj, path, tags::PIXEL_SPACING, "PixelSpacing", 2)?;
    let slope = optional_float(&obj, path, tags::RESCALE_SLOPE, "RescaleSlope", 1.0)?;
    let intercept = optional_float(&obj, path, tags::RESCALE_INTERCEPT, "RescaleIntercept", 0.0)?;
    let series_uid = obj
        .element_opt(tags::SERIES_INSTANCE_UID)
        .ok()
        .flatten()
        .and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        })
        .unwrap_or_default();
    Ok(Slice {
        path: path.to_path_buf(),
        obj,
        rows,
        cols,
        iop: std::array::from_fn(|i| iop[i]),
        ipp: std::array::from_fn(|i| ipp[i]),
        pixel_spacing: [ps[0], ps[1]],
        slope,
        intercept,
        series_uid,
    })
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

type SeriesKey = (String, u32, u32, [i64; 6]);

/// What must agree for two slices to belong to one volume: UID (when set), rows,
/// columns and orientation (to 1e-4).
fn series_key(s: &Slice) -> SeriesKey {
    (
        s.series_uid.clone(),
        s.rows,
        s.cols,
        s.iop.map(|v| (v * 1e4).round() as i64),
    )
}

/// Read a DICOM series folder as an Image in HU, with the NIfTI (RAS) affine.
///
/// Hidden files (names starting with `.`) and sub-folders are skipped; any other file
/// that is not DICOM is an error naming it. The voxels stay i16 when every slice's
/// rescale slope and intercept are whole and every HU value fits, else f32.
pub fn load_dicom_series(dir: &Path) -> Result<Image, NodeError> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NodeError::file(dir, "folder not found"),
        _ => NodeError::file(dir, format!("cannot list folder: {e}")),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NodeError::file(dir, format!("cannot list folder: {e}")))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !hidden && !is_dir {
            files.push(entry.path());
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(NodeError::file(dir, "no DICOM files in folder"));
    }
    let mut slices: Vec<Slice> = files
        .par_iter()
        .map(|p| read_slice(p))
        .collect::<Result<_, _>>()?;

    // One series only: same UID (when set), size and orientation.
    let mut groups: Vec<(SeriesKey, usize, &Path)> = Vec::new();
    for s in &slices {
        let key = series_key(s);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1 += 1,
            None => groups.push((key, 1, &s.path)),
        }
    }
    if groups.len() > 1 {
        let list: Vec<String> = groups
            .iter()
            .map(|((uid, r, c, _), n, p)| {
                let s = slices
                    .iter()
                    .find(|s| s.path == *p)
                    .expect("slice of group");
                let uid = if uid.is_empty() {
                    "no SeriesInstanceUID".to_string()
                } else {
                    format!("UID {uid}")
                };
                format!(
                    "{n} file(s) like {} ({c} columns x {r} rows, orientation {:?}, {uid})",
                    name(p),
                    s.iop
                )
            })
            .collect();
        return Err(NodeError::file(
            dir,
            format!("folder holds {} series: {}", groups.len(), list.join("; ")),
        ));
    }

    let iop = slices[0].iop;
    let row_dir = [iop[0], iop[1], iop[2]];
    let col_dir = [iop[3], iop[4], iop[5]];
    let normal = cross(row_dir, col_dir);
    let norm = dot(normal, normal).sqrt();
    if norm.is_nan() || norm < 0.5 {
        return Err(NodeError::file(
            &slices[0].path,
            format!("degenerate ImageOrientationPatient {iop:?}"),
        ));
    }
    let normal = normal.map(|v| v / norm);
    slices.sort_by(|a, b| dot(a.ipp, normal).total_cmp(&dot(b.ipp, normal)));
    let first = &slices[0];
    let pos: Vec<f64> = slices.iter().map(|s| dot(s.ipp, normal)).collect();
    let nz = slices.len();
    let dz = if nz > 1 {
        let dz = (pos[nz - 1] - pos[0]) / (nz - 1) as f64;
        for k in 1..nz {
            let gap = pos[k] - pos[k - 1];
            if gap.abs() < 1e-6 {
                return Err(NodeError::file(
                    dir,
                    format!(
                        "two slices at the same position {:.4} mm along the normal: {} and {}",
                        pos[k],
                        name(&slices[k - 1].path),
                        name(&slices[k].path)
                    ),
                ));
            }
            if (gap - dz).abs() > spacing_tolerance(dz) {
                let all = if nz <= 40 {
                    format!(
                        "; all positions (mm): [{}]",
                        pos.iter()
                            .map(|p| format!("{p:.3}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                };
                return Err(NodeError::file(
                    dir,
                    format!(
                        "uneven slice spacing: {} at {:.3} mm and {} at {:.3} mm along the slice \
                         normal are {:.3} mm apart, but the series averages {:.3} mm (a missing \
                         or extra slice?){all}",
                        name(&slices[k - 1].path),
                        pos[k - 1],
                        name(&slices[k].path),
                        pos[k],
                        gap,
                        dz
                    ),
                ));
            }
        }
        dz
    } else {
        optional_float(
            &first.obj,
            &first.path,
            tags::SPACING_BETWEEN_SLICES,
            "SpacingBetweenSlices",
            0.0,
        )
        .ok()
        .filter(|v| *v > 0.0)
        .or_else(|| {
            optional_float(
                &first.obj,
                &first.path,
                tags::SLICE_THICKNESS,
                "SliceThickness",
                0.0,
            )
            .ok()
            .filter(|v| *v > 0.0)
        })
        .unwrap_or(1.0)
    };

    // Decode every slice in parallel to stored values, then apply each slice's rescale.
    let (nx, ny) = (first.cols as usize, first.rows as usize);
    let stored: Vec<Vec<i32>> = slices
        .par_iter()
        .map(|s| {
            let decoded = s
                .obj
                .decode_pixel_data()
                .map_err(|e| NodeError::file(&s.path, format!("cannot decode pixel data: {e}")))?;
            let v: Vec<i32> = decoded
                .to_vec_with_options(
                    &ConvertOptions::new().with_modality_lut(ModalityLutOption::None),
                )
                .map_err(|e| NodeError::file(&s.path, format!("cannot convert pixel data: {e}")))?;
            if v.len() != nx * ny {
                return Err(NodeError::file(
                    &s.path,
                    format!("pixel data holds {} values, expected {nx} x {ny}", v.len()),
                ));
            }
            Ok(v)
        })
        .collect::<Result<_, NodeError>>()?;
    let whole = slices
        .iter()
        .all(|s| s.slope.fract() == 0.0 && s.intercept.fract() == 0.0);
    let fits = whole
        && slices.par_iter().zip(stored.par_iter()).all(|(s, v)| {
            v.iter().all(|&x| {
                let y = x as f64 * s.slope + s.intercept;
                (i16::MIN as f64..=i16::MAX as f64).contains(&y)
            })
        });

    // LPS affine: columns are row direction * column spacing, column direction * row
    // spacing, normal * slice spacing; origin the first slice's position. RAS negates
    // the x and y rows.
    let (dx, dy) = (first.pixel_spacing[1], first.pixel_spacing[0]);
    let origin = slices[0].ipp;
    let mut affine = [[0.0; 4]; 4];
    for r in 0..3 {
        let sign = if r < 2 { -1.0 } else { 1.0 };
        affine[r] = [
            sign * row_dir[r] * dx,
            sign * col_dir[r] * dy,
            sign * normal[r] * dz,
            sign * origin[r],
        ];
    }
    affine[3] = [0.0, 0.0, 0.0, 1.0];
    let geometry = Geometry::from_affine([nx, ny, nz], affine);
    let plane = nx * ny;
    if fits {
        let mut out = vec![0i16; plane * nz];
        out.par_chunks_mut(plane)
            .zip(stored.par_iter().zip(slices.par_iter()))
            .for_each(|(o, (v, s))| {
                // Checked above: slope and intercept are whole and every result fits in i16.
                let (m, b) = (s.slope as i64, s.intercept as i64);
                o.iter_mut()
                    .zip(v)
                    .for_each(|(o, &x)| *o = (x as i64 * m + b) as i16);
            });
        Ok(Image::I16(Volume::from_vec(geometry, out).expect("sized")))
    } else {
        let mut out = vec![0f32; plane * nz];
        out.par_chunks_mut(plane)
            .zip(stored.par_iter().zip(slices.par_iter()))
            .for_each(|(o, (v, s))| {
                o.iter_mut()
                    .zip(v)
                    .for_each(|(o, &x)| *o = (x as f64 * s.slope + s.intercept) as f32);
            });
        Ok(Image::F32(Volume::from_vec(geometry, out).expect("sized")))
    }
}

struct LoadDicomNode {
    dir: PathBuf,
}

impl Node for LoadDicomNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let image = load_dicom_series(&self.dir)?;
        for note in series_identity(&self.dir) {
            ctx.note(note);
        }
        ctx.set_output("image", Value::Image(Arc::new(image)));
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
}

/// `StudyInstanceUID=...`, `SeriesInstanceUID=...` and `PatientID=...` of the first
/// DICOM file of a folder (empty values left out), for provenance records.
pub fn series_identity(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let Some(obj) = files
        .iter()
        .find_map(|f| OpenFileOptions::new().open_file(f).ok())
    else {
        return Vec::new();
    };
    [
        (tags::STUDY_INSTANCE_UID, "StudyInstanceUID"),
        (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID"),
        (tags::PATIENT_ID, "PatientID"),
    ]
    .into_iter()
    .filter_map(|(tag, name)| {
        let v = obj
            .element_opt(tag)
            .ok()??
            .to_str()
            .ok()?
            .trim()
            .trim_end_matches('\0')
            .to_string();
        (!v.is_empty()).then(|| format!("{name}={v}"))
    })
    .collect()
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
                "Uncompressed and JPEG 2000 (lossless or not) transfer syntaxes decode; JPEG ",
                "baseline/lossless and RLE depend on dicom-pixeldata's enabled codecs. Hidden ",
                "files and sub-folders are skipped. Errors: empty folder, a file that is not ",
                "DICOM (named), several series (different SeriesInstanceUID when set, size or ",
                "orientation: \"folder holds 2 series\"), duplicate or unevenly spaced slices ",
                "(positions given), multi-frame or colour images."
            ),
            category: "io",
            inputs: vec![],
            outputs: vec![OutputSpec::new("image", PortType::Image, "The series in HU on its grid (RAS affine).")],
            params: vec![ParamSpec::required(
                "dir",
                "String",
                "",
                "Folder holding the slices of one series. Relative paths are relative to the \
                 working directory.",
            )],
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
        let p: LoadDicomParams = parse_params(params).map_err(|e| vec![e])?;
        if p.dir.is_empty() {
            return Err(vec![ParamError::field(
                "dir",
                "is required: the folder of the series",
            )]);
        }
        Ok(Box::new(LoadDicomNode {
            dir: PathBuf::from(p.dir),
        }))
    }
}
