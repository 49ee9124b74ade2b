//! A series' slices assembled into one volume: choosing the series, ordering slices
//! along their normal, checking their spacing, decoding and rescaling to HU, and the
//! RAS affine.

use std::path::Path;

use dicom_dictionary_std::tags;
use rayon::prelude::*;
use voxflow_engine::{Geometry, Image, NodeError, Volume};

use super::series::{self, name, optional_float, read_folder, PixelFormat, SeriesSummary, Slice};
use super::SeriesChoice;

/// Largest difference between slice gaps accepted as even: 0.01 mm plus 0.1 % of the
/// spacing (positions are often written with 2 to 3 decimals).
fn spacing_tolerance(spacing: f64) -> f64 {
    0.01 + 1e-3 * spacing.abs()
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

/// Keep the slices of the chosen series (or the only one); several series without a
/// choice, or a choice matching none or several, is an error listing them all.
fn pick_series(
    dir: &Path,
    slices: Vec<Slice>,
    choice: Option<&SeriesChoice>,
) -> Result<Vec<Slice>, NodeError> {
    let groups = series::group(&slices);
    let listing = || {
        groups
            .iter()
            .map(|g| format!("  {g}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let chosen: Vec<&SeriesSummary> = match choice {
        None if groups.len() == 1 => vec![&groups[0]],
        None => {
            return Err(NodeError::file(
                dir,
                format!(
                    "folder holds {} series; choose one with the `series` param (a \
                     SeriesInstanceUID, a SeriesNumber or \"largest\"):\n{}",
                    groups.len(),
                    listing()
                ),
            ))
        }
        Some(SeriesChoice::Text(t)) if t == "largest" => {
            let most = groups.iter().map(|g| g.slices.len()).max().unwrap_or(0);
            groups.iter().filter(|g| g.slices.len() == most).collect()
        }
        Some(SeriesChoice::Text(uid)) => groups.iter().filter(|g| g.uid == *uid).collect(),
        Some(SeriesChoice::Number(n)) => groups.iter().filter(|g| g.number == Some(*n)).collect(),
    };
    let what = match choice {
        Some(SeriesChoice::Number(n)) => format!("series {n}"),
        Some(SeriesChoice::Text(t)) => format!("series \"{t}\""),
        None => String::new(),
    };
    match chosen.as_slice() {
        [one] => {
            let keep: std::collections::HashSet<usize> = one.slices.iter().copied().collect();
            Ok(slices
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep.contains(i))
                .map(|(_, s)| s)
                .collect())
        }
        [] => Err(NodeError::file(
            dir,
            format!(
                "{what}: no such series in the folder; it holds:\n{}",
                listing()
            ),
        )),
        _ => Err(NodeError::file(
            dir,
            format!(
                "{what} matches {} series; choose by SeriesInstanceUID:\n{}",
                chosen.len(),
                listing()
            ),
        )),
    }
}

/// Read a DICOM series folder as an Image in HU, with the NIfTI (RAS) affine.
///
/// Hidden files (names starting with `.`) and sub-folders are skipped; any other file
/// that is not DICOM is an error naming it. The voxels stay i16 when every slice's
/// rescale slope and intercept are whole and every HU value fits, else f32. A folder
/// holding several series needs `choice`.
pub fn load_dicom_series(dir: &Path) -> Result<Image, NodeError> {
    load_dicom_series_choosing(dir, None)
}

/// [`load_dicom_series`] picking one of several series.
pub fn load_dicom_series_choosing(
    dir: &Path,
    choice: Option<&SeriesChoice>,
) -> Result<Image, NodeError> {
    load(dir, choice).map(|(image, _)| image)
}

/// The chosen series as an Image, with its identity notes for provenance.
pub(super) fn load(
    dir: &Path,
    choice: Option<&SeriesChoice>,
) -> Result<(Image, Vec<String>), NodeError> {
    let slices = read_folder(dir, false)?;
    let mut slices = pick_series(dir, slices, choice)?;
    let mut notes = series_identity(&slices[0].obj);
    // Loaded all the same (rescaled values are still right), but HU windows would not be.
    let modality = slices[0].modality.trim();
    if !modality.is_empty() && modality != "CT" {
        let note = format!(
            "Modality {modality}: the values are not Hounsfield units; HU windows and the \
             CT graphs do not apply"
        );
        tracing::warn!("{}: {note}", dir.display());
        notes.push(note);
    }
    let axes = slice_axes(&slices[0])?;
    let normal = axes.normal;
    slices.sort_by(|a, b| dot(a.ipp, normal).total_cmp(&dot(b.ipp, normal)));
    let dz = slice_spacing(dir, &slices, normal)?;
    check_stack(&slices, axes)?;
    let image = hu_image(&slices, axes, dz)?;
    Ok((image, notes))
}

/// Directions (LPS) of a series' rows, columns and slices.
#[derive(Clone, Copy)]
struct Axes {
    row: [f64; 3],
    col: [f64; 3],
    /// Unit slice normal: row x col, normalised.
    normal: [f64; 3],
}

/// Row direction, column direction and unit slice normal of a slice's
/// ImageOrientationPatient; a degenerate orientation is an error naming the file.
fn slice_axes(first: &Slice) -> Result<Axes, NodeError> {
    let iop = first.iop;
    let row_dir = [iop[0], iop[1], iop[2]];
    let col_dir = [iop[3], iop[4], iop[5]];
    let normal = cross(row_dir, col_dir);
    let norm = dot(normal, normal).sqrt();
    if norm.is_nan() || norm < 0.5 {
        return Err(NodeError::file(
            &first.path,
            format!("degenerate ImageOrientationPatient {iop:?}"),
        ));
    }
    Ok(Axes {
        row: row_dir,
        col: col_dir,
        normal: normal.map(|v| v / norm),
    })
}

/// Slice spacing (mm) of slices sorted along `normal`: their even gap, an error naming
/// the files of a duplicate or an uneven gap; for one slice SpacingBetweenSlices, else
/// SliceThickness, else 1.
fn slice_spacing(dir: &Path, slices: &[Slice], normal: [f64; 3]) -> Result<f64, NodeError> {
    let first = &slices[0];
    let pos: Vec<f64> = slices.iter().map(|s| dot(s.ipp, normal)).collect();
    let nz = slices.len();
    Ok(if nz > 1 {
        let dz = (pos[nz - 1] - pos[0]) / (nz - 1) as f64;
        // Duplicates first: a duplicate also makes the spacing uneven, but is the cause.
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
        }
        // The usual gap is the (lower) median: a missing slice makes one gap larger, an
        // extra one makes gaps smaller, and the odd gap out is the one to name.
        let mut gaps: Vec<f64> = pos.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        let usual = gaps[(gaps.len() - 1) / 2];
        for k in 1..nz {
            let gap = pos[k] - pos[k - 1];
            if (gap - usual).abs() > spacing_tolerance(usual) {
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
                         normal are {:.3} mm apart, but the usual gap is {:.3} mm (a missing \
                         or extra slice?){all}",
                        name(&slices[k - 1].path),
                        pos[k - 1],
                        name(&slices[k].path),
                        pos[k],
                        gap,
                        usual
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
    })
}

/// Largest in-plane offset (mm) between slices of one stack accepted as none: 0.01 mm
/// plus a tenth of the pixel size (positions are written with 2 to 6 decimals; a tenth
/// of a pixel moves no voxel).
fn in_plane_tolerance(pixel_mm: f64) -> f64 {
    0.01 + 0.1 * pixel_mm
}

/// Pixel sizes (mm) of two slices accepted as equal: within 0.1 % (the slice spacing's
/// relative tolerance; over 512 pixels, half a pixel at the far edge).
fn same_pixel_size(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-3 * a.max(b)
}

/// The grid puts every slice where the first one is, moved along the normal only, with
/// the first slice's pixel size. A slice whose PixelSpacing differs, or whose position
/// drifts across the plane (a gantry tilt: each slice shifted along the column
/// direction), would silently land its voxels millimetres from where they were
/// scanned: an error naming the file.
fn check_stack(slices: &[Slice], axes: Axes) -> Result<(), NodeError> {
    let first = &slices[0];
    let [sy, sx] = first.pixel_spacing;
    for s in &slices[1..] {
        let [ry, rx] = s.pixel_spacing;
        if !same_pixel_size(ry, sy) || !same_pixel_size(rx, sx) {
            return Err(NodeError::file(
                &s.path,
                format!(
                    "PixelSpacing {:?} differs from {:?} of {} in the same series: one volume \
                     needs one pixel size",
                    s.pixel_spacing,
                    first.pixel_spacing,
                    name(&first.path)
                ),
            ));
        }
        let d: [f64; 3] = std::array::from_fn(|k| s.ipp[k] - first.ipp[k]);
        let (along_row, along_col) = (dot(d, axes.row), dot(d, axes.col));
        if along_row.abs() > in_plane_tolerance(sx) || along_col.abs() > in_plane_tolerance(sy) {
            return Err(NodeError::file(
                &s.path,
                format!(
                    "lies {along_row:.3} mm along the rows and {along_col:.3} mm along the \
                     columns from {} across the slice plane: the slices are not stacked along \
                     their normal (a gantry tilt?), which one voxel grid cannot hold; correct \
                     the tilt first (e.g. dcm2niix does)",
                    name(&first.path)
                ),
            ));
        }
    }
    Ok(())
}

/// The slices' voxels in HU on their grid: each slice decoded (in parallel) and
/// rescaled, as i16 when every slope and intercept is whole and every value fits, else
/// f32.
fn hu_image(slices: &[Slice], axes: Axes, dz: f64) -> Result<Image, NodeError> {
    let Axes {
        row: row_dir,
        col: col_dir,
        normal,
    } = axes;
    let first = &slices[0];
    let nz = slices.len();
    // Decode every slice in parallel to stored values, then apply each slice's rescale.
    let (nx, ny) = (first.cols as usize, first.rows as usize);
    let stored: Vec<Vec<i32>> = slices
        .par_iter()
        .map(|s| {
            let format = PixelFormat {
                rows: s.rows,
                cols: s.cols,
                slope: s.slope,
                intercept: s.intercept,
                signed: s.signed,
                bits_stored: s.bits_stored,
                monochrome1: s.monochrome1,
            };
            series::stored_values(&s.obj, &s.path, &format)
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

/// `StudyInstanceUID=...`, `SeriesInstanceUID=...` and `PatientID=...` of a slice of
/// the loaded series (empty values left out), for provenance records.
fn series_identity(obj: &dicom_object::DefaultDicomObject) -> Vec<String> {
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
