//! One DICOM slice's header, checked, and the grouping of a folder's slices into series.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use rayon::prelude::*;
use voxflow_engine::NodeError;

use super::prescan;

/// Files larger than this are refused before reading: the largest slice accepted
/// ([`MAX_PIXELS`] pixels of 32 bits, 128 MiB) plus headers. A CT slice is under a MiB;
/// the whole file is held in memory while it is checked, once per reading thread.
pub const MAX_FILE_BYTES: u64 = 160 << 20;

/// Largest Rows x Columns accepted: 2^25 pixels (e.g. 5792 x 5792), so one decoded slice
/// stays near 128 MiB as i32 even in a hostile file whose pixel data is compressed.
pub const MAX_PIXELS: u64 = 1 << 25;

/// Tolerance on |cosine| = 1 and on the orthogonality of ImageOrientationPatient (files
/// often write 5 to 6 decimals).
const ORIENTATION_TOLERANCE: f64 = 1e-3;

/// How one slice's pixels are stored and rescaled.
#[derive(Debug, Clone, Copy)]
pub struct PixelFormat {
    pub rows: u32,
    pub cols: u32,
    pub slope: f64,
    pub intercept: f64,
    /// PixelRepresentation 1: stored values are two's complement in `bits_stored` bits.
    pub signed: bool,
    pub bits_stored: u32,
    /// MONOCHROME1: stored values are inverted before the rescale (see `pixel_format`).
    pub monochrome1: bool,
}

/// What is needed of one slice before decoding its pixels.
pub struct Slice {
    pub path: PathBuf,
    pub obj: DefaultDicomObject,
    pub rows: u32,
    pub cols: u32,
    /// Row and column direction cosines (LPS).
    pub iop: [f64; 6],
    /// Position of the first voxel (LPS, mm).
    pub ipp: [f64; 3],
    /// Spacing between rows, then between columns (mm), as DICOM orders PixelSpacing.
    pub pixel_spacing: [f64; 2],
    pub slope: f64,
    pub intercept: f64,
    /// PixelRepresentation 1: stored values are two's complement in `bits_stored` bits.
    pub signed: bool,
    pub bits_stored: u32,
    /// MONOCHROME1 (inverted before the rescale).
    pub monochrome1: bool,
    pub series_uid: String,
    pub series_number: Option<i64>,
    pub description: String,
    pub modality: String,
}

/// A file's name (for messages).
pub fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// A text attribute with DICOM padding (trailing NUL or space) removed; empty if absent.
fn text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_matches(['\0', ' ']).to_string())
        })
        .unwrap_or_default()
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
    if let Some(bad) = v.iter().take(n).find(|x| !x.is_finite()) {
        return Err(NodeError::file(
            path,
            format!("{what} holds a non-finite value ({bad}): {:?}", &v[..n]),
        ));
    }
    Ok(v)
}

pub fn optional_float(
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

/// Read the whole file, check its structure ([`prescan`]) and parse it; with
/// `headers_only` the pixel data is not kept.
pub fn open(path: &Path, headers_only: bool) -> Result<DefaultDicomObject, NodeError> {
    let not_dicom = |why: String| NodeError::file(path, format!("not a DICOM file: {why}"));
    let meta =
        std::fs::metadata(path).map_err(|e| NodeError::file(path, format!("cannot read: {e}")))?;
    // Reading a FIFO waits for a writer, possibly forever.
    if !meta.is_file() {
        return Err(not_dicom(
            "not a regular file (a FIFO, socket or device)".into(),
        ));
    }
    let size = meta.len();
    if size > MAX_FILE_BYTES {
        return Err(NodeError::file(
            path,
            format!(
                "{size} bytes is larger than the {} MiB accepted for one slice",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| NodeError::file(path, format!("cannot read: {e}")))?;
    let layout = prescan::check(&bytes).map_err(|e| not_dicom(e.to_string()))?;
    let mut options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    if headers_only {
        options = options.read_until(tags::PIXEL_DATA);
    }
    // dicom-object's messages may quote raw UIDs with their NUL padding.
    options
        .from_reader(&bytes[layout.magic..])
        .map_err(|e| not_dicom(e.to_string().replace('\0', "")))
}

/// The transfer syntax of a parsed file: its UID and name when pixel data in it can be
/// decoded here, else an error naming both.
fn check_transfer_syntax(obj: &DefaultDicomObject, path: &Path) -> Result<(), NodeError> {
    let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    match TransferSyntaxRegistry.get(uid) {
        None => Err(NodeError::file(
            path,
            format!("unknown transfer syntax {uid}; cannot decode the pixel data"),
        )),
        Some(ts) if ts.is_unsupported() || ts.is_unsupported_pixel_encapsulation() => {
            Err(NodeError::file(
                path,
                format!(
                    "transfer syntax {uid} ({}) is not supported; this build decodes \
                     uncompressed, deflated, RLE, JPEG baseline/lossless and JPEG 2000 \
                     (JPEG-LS needs the CharLS C++ library)",
                    ts.name()
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Read and check one slice's header: everything the volume needs must be finite and
/// meaningful, or the error names the file and the attribute. With `headers_only` the
/// pixel data is not kept (nor its transfer syntax checked).
pub fn read_slice(path: &Path, headers_only: bool) -> Result<Slice, NodeError> {
    let obj = open(path, headers_only)?;
    let f = pixel_format(&obj, path, headers_only)?;
    let iop = floats(
        &obj,
        path,
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        6,
    )?;
    let iop: [f64; 6] = std::array::from_fn(|i| iop[i]);
    let norm = |v: &[f64]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let dot = iop[0] * iop[3] + iop[1] * iop[4] + iop[2] * iop[5];
    if (norm(&iop[..3]) - 1.0).abs() > ORIENTATION_TOLERANCE
        || (norm(&iop[3..]) - 1.0).abs() > ORIENTATION_TOLERANCE
        || dot.abs() > ORIENTATION_TOLERANCE
    {
        return Err(NodeError::file(
            path,
            format!(
                "degenerate ImageOrientationPatient {iop:?}: the row and column cosines must \
                 be unit vectors at right angles"
            ),
        ));
    }
    let ipp = floats(
        &obj,
        path,
        tags::IMAGE_POSITION_PATIENT,
        "ImagePositionPatient",
        3,
    )?;
    let ps = floats(&obj, path, tags::PIXEL_SPACING, "PixelSpacing", 2)?;
    if ps[0] <= 0.0 || ps[1] <= 0.0 {
        return Err(NodeError::file(
            path,
            format!("PixelSpacing {:?} must be positive", &ps[..2]),
        ));
    }
    let series_number = obj
        .element_opt(tags::SERIES_NUMBER)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<i64>().ok());
    Ok(Slice {
        path: path.to_path_buf(),
        rows: f.rows,
        cols: f.cols,
        iop,
        ipp: std::array::from_fn(|i| ipp[i]),
        pixel_spacing: [ps[0], ps[1]],
        slope: f.slope,
        intercept: f.intercept,
        signed: f.signed,
        bits_stored: f.bits_stored,
        monochrome1: f.monochrome1,
        series_uid: text(&obj, tags::SERIES_INSTANCE_UID),
        series_number,
        description: text(&obj, tags::SERIES_DESCRIPTION),
        modality: text(&obj, tags::MODALITY),
        obj,
    })
}

/// The width and height a compressed frame declares in its own header: the SIZ marker
/// of a JPEG 2000 codestream or the SOFn marker of a JPEG stream, found in the first
/// fragment. `None` when neither is found (other codecs, or an unusual layout).
fn codestream_size(fragment: &[u8]) -> Option<(u64, u64)> {
    let be32 = |at: usize| -> Option<u64> {
        Some(u32::from_be_bytes(fragment.get(at..at + 4)?.try_into().ok()?) as u64)
    };
    let be16 = |at: usize| -> Option<u64> {
        Some(u16::from_be_bytes(fragment.get(at..at + 2)?.try_into().ok()?) as u64)
    };
    // JPEG 2000: SIZ follows SOC directly (raw codestream) or inside a JP2 box; look for
    // it in the first KiB. Xsiz, Ysiz, XOsiz, YOsiz follow Lsiz and Rsiz.
    let head = &fragment[..fragment.len().min(1024)];
    if let Some(at) = head.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]) {
        let siz = at + 4;
        let (x, y) = (be32(siz + 4)?, be32(siz + 8)?);
        let (x0, y0) = (be32(siz + 12)?, be32(siz + 16)?);
        return Some((x.saturating_sub(x0), y.saturating_sub(y0)));
    }
    // JPEG: walk the markers after SOI up to the first SOFn (FFC0-FFCF but DHT C4, JPG
    // C8 and DAC CC): P, then Y (lines), then X (samples per line).
    if !fragment.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    while at + 4 <= fragment.len() && fragment[at] == 0xFF {
        let marker = fragment[at + 1];
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            return Some((be16(at + 7)?, be16(at + 5)?));
        }
        at += 2 + be16(at + 2)? as usize;
    }
    None
}

/// A compressed frame must be the size Rows and Columns say: the codecs size their
/// buffers from the frame's own header, which [`MAX_PIXELS`] does not bound.
fn check_codestream_size(
    obj: &DefaultDicomObject,
    path: &Path,
    rows: u32,
    cols: u32,
) -> Result<(), NodeError> {
    let Ok(pixel_data) = obj.element(tags::PIXEL_DATA) else {
        return Ok(());
    };
    let Some(first) = pixel_data.value().fragments().and_then(|f| f.first()) else {
        return Ok(());
    };
    match codestream_size(first) {
        Some((w, h)) if (w, h) != (cols as u64, rows as u64) => Err(NodeError::file(
            path,
            format!("the compressed frame is {w} x {h} but Columns x Rows say {cols} x {rows}"),
        )),
        _ => Ok(()),
    }
}

/// Stored values sign-extended from BitsStored when PixelRepresentation is 1, as GDCM
/// and pydicom do: some JPEG 2000 codestreams say unsigned (pydicom's
/// J2K_pixelrep_mismatch.dcm, BitsStored 13) and decode to 0..8191; the DICOM header is
/// what defines the values. Idempotent on values already sign-extended.
fn sign_extend(values: &mut [i32], bits_stored: u32) {
    if bits_stored < 32 {
        let shift = 32 - bits_stored;
        values.iter_mut().for_each(|v| *v = (*v << shift) >> shift);
    }
}

/// An error with its causes ("Could not decode pixel data" alone says nothing of the
/// codec's reason), without the raw NUL padding some messages quote UIDs with.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text.replace('\0', "")
}

/// Decode a slice's pixel data to stored values (before rescale), Rows x Columns of them.
pub fn stored_values(
    obj: &DefaultDicomObject,
    path: &Path,
    f: &PixelFormat,
) -> Result<Vec<i32>, NodeError> {
    let decoded = obj.decode_pixel_data().map_err(|e| {
        let e = chain(&e);
        let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
        let ts = TransferSyntaxRegistry
            .get(uid)
            .map_or("unknown", |t| t.name());
        NodeError::file(path, format!("cannot decode pixel data ({ts}, {uid}): {e}"))
    })?;
    let mut v: Vec<i32> = decoded
        .to_vec_with_options(&ConvertOptions::new().with_modality_lut(ModalityLutOption::None))
        .map_err(|e| NodeError::file(path, format!("cannot convert pixel data: {}", chain(&e))))?;
    if f.signed {
        sign_extend(&mut v, f.bits_stored);
    }
    if f.monochrome1 {
        let top = ((1u64 << f.bits_stored) - 1) as i64;
        v.iter_mut().for_each(|x| *x = (top - *x as i64) as i32);
    }
    let n = f.rows as usize * f.cols as usize;
    if v.len() != n {
        return Err(NodeError::file(
            path,
            format!(
                "pixel data holds {} values, expected {} x {}",
                v.len(),
                f.cols,
                f.rows
            ),
        ));
    }
    Ok(v)
}

/// One file's pixel values after the rescale, row by row, without any geometry check:
/// what the pydicom agreement test compares on files that do not place a slice in space.
#[cfg(test)]
pub fn decode_file(path: &Path) -> Result<Vec<f64>, NodeError> {
    let obj = open(path, false)?;
    let f = pixel_format(&obj, path, false)?;
    Ok(stored_values(&obj, path, &f)?
        .into_iter()
        .map(|x| x as f64 * f.slope + f.intercept)
        .collect())
}

/// The files of a series folder: hidden files (names starting with `.`) and
/// sub-folders skipped, sorted by name.
pub fn folder_files(dir: &Path) -> Result<Vec<PathBuf>, NodeError> {
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
    Ok(files)
}

/// Read every slice of a folder in parallel; the first bad file (by name) is the error.
pub fn read_folder(dir: &Path, headers_only: bool) -> Result<Vec<Slice>, NodeError> {
    folder_files(dir)?
        .par_iter()
        .map(|p| read_slice(p, headers_only))
        .collect()
}

/// What must agree for two slices to belong to one volume: UID (when set), rows,
/// columns and orientation (to 1e-4).
type SeriesKey = (String, u32, u32, [i64; 6]);

fn series_key(s: &Slice) -> SeriesKey {
    (
        s.series_uid.clone(),
        s.rows,
        s.cols,
        s.iop.map(|v| (v * 1e4).round() as i64),
    )
}

/// One series of a folder, as `voxflow dicom ls` and the several-series error list it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    /// SeriesInstanceUID (empty when the files leave it empty).
    pub uid: String,
    /// SeriesNumber, when set.
    pub number: Option<i64>,
    /// SeriesDescription (may be empty).
    pub description: String,
    /// Modality (CT, MR...; may be empty).
    pub modality: String,
    /// Rows of each slice.
    pub rows: u32,
    /// Columns of each slice.
    pub cols: u32,
    /// Indices of its slices in the folder's slice list.
    pub slices: Vec<usize>,
    /// Name of its first file.
    pub first_file: String,
}

impl std::fmt::Display for SeriesSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uid = if self.uid.is_empty() {
            "(no SeriesInstanceUID)"
        } else {
            &self.uid
        };
        let number = self.number.map_or("-".to_string(), |n| n.to_string());
        write!(
            f,
            "UID {uid}, number {number}, \"{}\", {}, {} slices of {} x {} (first file {})",
            self.description,
            if self.modality.is_empty() {
                "no modality"
            } else {
                &self.modality
            },
            self.slices.len(),
            self.cols,
            self.rows,
            self.first_file
        )
    }
}

/// Group slices into series (same UID when set, size and orientation), in order of
/// first appearance.
pub fn group(slices: &[Slice]) -> Vec<SeriesSummary> {
    let mut groups: Vec<(SeriesKey, SeriesSummary)> = Vec::new();
    for (i, s) in slices.iter().enumerate() {
        let key = series_key(s);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.slices.push(i),
            None => groups.push((
                key,
                SeriesSummary {
                    uid: s.series_uid.clone(),
                    number: s.series_number,
                    description: s.description.clone(),
                    modality: s.modality.clone(),
                    rows: s.rows,
                    cols: s.cols,
                    slices: vec![i],
                    first_file: name(&s.path),
                },
            )),
        }
    }
    groups.into_iter().map(|g| g.1).collect()
}

/// The series of a DICOM folder, from headers only (pixel data is not decoded).
pub fn list_series(dir: &Path) -> Result<Vec<SeriesSummary>, NodeError> {
    Ok(group(&read_folder(dir, true)?))
}

/// How a slice's pixels are stored and rescaled, checked: greyscale, one frame, a
/// decodable transfer syntax (unless `headers_only`), a finite usable rescale.
pub fn pixel_format(
    obj: &DefaultDicomObject,
    path: &Path,
    headers_only: bool,
) -> Result<PixelFormat, NodeError> {
    let uint = |tag, what: &str| -> Result<u32, NodeError> {
        obj.element(tag)
            .map_err(|_| NodeError::file(path, format!("missing {what}; not an image slice")))?
            .to_int::<u32>()
            .map_err(|e| NodeError::file(path, format!("unreadable {what}: {e}")))
    };
    let rows = uint(tags::ROWS, "Rows")?;
    let cols = uint(tags::COLUMNS, "Columns")?;
    if rows == 0 || cols == 0 || rows as u64 * cols as u64 > MAX_PIXELS {
        return Err(NodeError::file(
            path,
            format!("{cols} columns x {rows} rows: expected 1 to {MAX_PIXELS} pixels per slice"),
        ));
    }
    if let Ok(Some(e)) = obj.element_opt(tags::NUMBER_OF_FRAMES) {
        if e.to_int::<u32>().unwrap_or(1) > 1 {
            return Err(NodeError::file(
                path,
                "multi-frame images are not supported; expected one slice per file",
            ));
        }
    }
    let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION);
    if !matches!(photometric.as_str(), "MONOCHROME2" | "MONOCHROME1" | "") {
        return Err(NodeError::file(
            path,
            format!(
                "PhotometricInterpretation {photometric} is not supported: only greyscale \
                 (MONOCHROME1/MONOCHROME2) slices load{}",
                if photometric == "PALETTE COLOR" {
                    " (palette indices are no intensities)"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Ok(Some(e)) = obj.element_opt(tags::SAMPLES_PER_PIXEL) {
        if e.to_int::<u16>().unwrap_or(1) != 1 {
            return Err(NodeError::file(
                path,
                "colour images are not supported (SamplesPerPixel != 1)",
            ));
        }
    }
    let slope = optional_float(obj, path, tags::RESCALE_SLOPE, "RescaleSlope", 1.0)?;
    let intercept = optional_float(obj, path, tags::RESCALE_INTERCEPT, "RescaleIntercept", 0.0)?;
    if !slope.is_finite() || !intercept.is_finite() || slope == 0.0 {
        return Err(NodeError::file(
            path,
            format!(
                "RescaleSlope {slope} / RescaleIntercept {intercept}: both must be finite and \
                 the slope non-zero"
            ),
        ));
    }
    let bits_allocated = optional_float(obj, path, tags::BITS_ALLOCATED, "BitsAllocated", 16.0)?;
    let bits_stored = optional_float(obj, path, tags::BITS_STORED, "BitsStored", bits_allocated)?;
    if !(1.0..=32.0).contains(&bits_stored) || bits_stored > bits_allocated {
        return Err(NodeError::file(
            path,
            format!("BitsStored {bits_stored} with BitsAllocated {bits_allocated}"),
        ));
    }
    let signed = optional_float(
        obj,
        path,
        tags::PIXEL_REPRESENTATION,
        "PixelRepresentation",
        0.0,
    )? == 1.0;
    // Every stored value is below 2^BitsStored in magnitude: the rescaled range must fit
    // the f32 voxels (RescaleSlope 1e300 would make them all infinite).
    let extreme = slope.abs() * 2f64.powf(bits_stored) + intercept.abs();
    if extreme > f32::MAX as f64 {
        return Err(NodeError::file(
            path,
            format!(
                "RescaleSlope {slope} / RescaleIntercept {intercept} take {bits_stored}-bit \
                 values beyond the f32 range"
            ),
        ));
    }
    if !headers_only {
        check_transfer_syntax(obj, path)?;
        check_codestream_size(obj, path, rows, cols)?;
    }
    // MONOCHROME1 (low values white) is inverted as SimpleITK/GDCM do, to
    // (2^BitsStored - 1) - stored, then rescaled: checked equal to SimpleITK 2.5 on
    // pydicom's CR files. Signed MONOCHROME1 has no such reference here: refused.
    let monochrome1 = photometric == "MONOCHROME1";
    if monochrome1 && signed {
        return Err(NodeError::file(
            path,
            "MONOCHROME1 with signed pixels (PixelRepresentation 1) is not supported",
        ));
    }
    Ok(PixelFormat {
        rows,
        cols,
        slope,
        intercept,
        signed,
        bits_stored: bits_stored as u32,
        monochrome1,
    })
}
