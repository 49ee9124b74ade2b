//! Whole files: [`NiftiReader`] (open, check, read voxels) and [`write_file`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use voxflow_engine::{Geometry, NodeError};

use super::gzip::{GzipError, GzipStream, IndexedGzip};
use super::{encode_gzip, ByteSource, Header, HEADER_SIZE, MAX_DEFLATE_RATIO};

/// Where the bytes come from: a plain file read in place, or a gzip file inflated as it
/// is read.
pub(super) enum Source {
    Plain(File),
    Gzip(GzipStream),
    Indexed(IndexedGzip),
}

/// An open NIfTI-1 file, header parsed, positioned at the first voxel.
///
/// Reading strategy (speed): a `.nii.gz` is inflated straight into the caller's voxel
/// buffer (no intermediate copies) while the file is read and the buffer's pages are
/// mapped on another thread (see `GzipStream`); a `.nii` is read from disk straight into
/// that buffer by several threads at once. Compression is detected from the gzip magic
/// bytes, not the file name.
pub struct NiftiReader {
    path: PathBuf,
    header: Header,
    geometry: Geometry,
    pub(super) source: Source,
}

impl NiftiReader {
    /// Open a file and parse its header; errors name the file and say what is wrong.
    ///
    /// Everything the header claims is checked here, before any voxel memory exists:
    /// the voxel bytes must fit in the file (a plain file exactly; a gzip file within
    /// [`MAX_DEFLATE_RATIO`] times its size, and within its block index when it has
    /// one), and the geometry must be usable (see [`Header::affine`]). A header whose
    /// dims or offset exceed the file therefore ends here as an error naming the file,
    /// never as an allocation failure.
    pub fn open(path: &Path) -> Result<NiftiReader, NodeError> {
        let err = |m: String| NodeError::file(path, m);
        // Opening a FIFO for reading waits for a writer, possibly forever; devices and
        // sockets hold no NIfTI either. Folders fail below, at the read.
        if let Ok(m) = std::fs::metadata(path) {
            if !m.is_file() && !m.is_dir() {
                return Err(err(
                    "is not a regular file (a FIFO, socket or device); give a .nii or .nii.gz \
                     file"
                        .into(),
                ));
            }
        }
        let mut file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err("file not found".into()),
            _ => err(format!("cannot open: {e}")),
        })?;
        let mut magic = [0u8; 2];
        let n = file
            .read(&mut magic)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        let gz = n == 2 && magic == [0x1f, 0x8b];
        let len = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let indexed = if gz {
            IndexedGzip::open(&file, len)
        } else {
            None
        };
        let (header, source) = match indexed {
            Some((ix, head)) => open_indexed(path, ix, &head)?,
            None if gz => open_gzip(path, file, len)?,
            None => open_plain(path, file, len)?,
        };
        if header.volumes() > 1 {
            return Err(err(format!(
                "holds {} volumes (dims {:?}); only 3D images or 4D with a single volume are \
                 supported",
                header.volumes(),
                &header.dim[1..=header.dim[0] as usize]
            )));
        }
        let mut geometry = header.geometry().map_err(|e| NodeError::file(path, e))?;
        geometry.nifti = Some(std::sync::Arc::new(header.meta()));
        Ok(NiftiReader {
            path: path.to_path_buf(),
            header,
            geometry,
            source,
        })
    }

    /// The grid of the voxels (validated when the file was opened).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the voxels of the volume into `out`, which must hold exactly
    /// `voxels * dtype.size()` bytes (file byte order; see [`Sample::swap_all`]).
    pub fn read_voxels(self, out: &mut [u8]) -> Result<(), NodeError> {
        let NiftiReader {
            path,
            header,
            source,
            ..
        } = self;
        let err = |e: GzipError| NodeError::file(&path, e);
        assert_eq!(
            out.len(),
            header.voxels() * header.dtype.size(),
            "voxel buffer size"
        );
        match source {
            Source::Indexed(ix) => ix.read_exact(out).map_err(err)?,
            Source::Gzip(mut gz) => {
                gz.read_exact(out).map_err(err)?;
                gz.finish().map_err(err)?;
            }
            Source::Plain(file) => {
                // The size was checked at `open`; a file that shrank since fails here.
                read_parallel(&file, header.vox_offset as u64, out)
                    .map_err(|e| NodeError::file(&path, format!("cannot read voxels: {e}")))?;
            }
        }
        Ok(())
    }
}

/// A voxflow-written `.nii.gz` whose block index was read: the header block must end at
/// `vox_offset` and the blocks must hold exactly the voxel bytes the header needs.
fn open_indexed(path: &Path, ix: IndexedGzip, head: &[u8]) -> Result<(Header, Source), NodeError> {
    let header = Header::parse(head).map_err(|e| NodeError::file(path, e))?;
    if header.vox_offset != head.len() {
        return Err(NodeError::file(
            path,
            format!(
                "corrupt gzip block index: the header block holds {} bytes, vox_offset is {}",
                head.len(),
                header.vox_offset
            ),
        ));
    }
    let total: usize = ix.blocks.iter().map(|b| b.2).sum();
    if Some(total) != header.data_bytes() {
        return Err(NodeError::file(
            path,
            format!(
                "bad header or corrupt gzip block index: {} needs {} voxel bytes, the block \
                 index holds {total}",
                header.describe_data(),
                byte_count(header.data_bytes()),
            ),
        ));
    }
    Ok((header, Source::Indexed(ix)))
}

/// Any other `.nii.gz`, inflated as it is read: the voxels the header claims must fit in
/// what `len` compressed bytes can expand to; the stream is left at the first voxel.
fn open_gzip(path: &Path, file: File, len: usize) -> Result<(Header, Source), NodeError> {
    let err = |m: String| NodeError::file(path, m);
    let mut gz = GzipStream::new(file).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut head = vec![0u8; HEADER_SIZE];
    gz.read_exact(&mut head).map_err(|e| {
        if e.is_damage() {
            NodeError::file(path, e)
        } else {
            err(format!(
                "not a NIfTI file: decompressed content is shorter than a header ({e})"
            ))
        }
    })?;
    let header = Header::parse(&head).map_err(|e| NodeError::file(path, e))?;
    let limit = len.saturating_mul(MAX_DEFLATE_RATIO);
    match header.data_end() {
        Some(need) if need <= limit => {}
        need => {
            return Err(err(format!(
                "bad header or truncated file: {} needs {} bytes, more than a gzip file of \
                 {len} bytes can hold (deflate expands at most {MAX_DEFLATE_RATIO}:1, so at \
                 most {limit})",
                header.describe_data(),
                byte_count(need),
            )))
        }
    }
    gz.skip(header.vox_offset - HEADER_SIZE)
        .map_err(|e| NodeError::file(path, e))?;
    Ok((header, Source::Gzip(gz)))
}

/// A plain `.nii`: the voxels the header claims must fit in the file's `len` bytes; the
/// file is left at the first voxel.
fn open_plain(path: &Path, mut file: File, len: usize) -> Result<(Header, Source), NodeError> {
    let err = |m: String| NodeError::file(path, m);
    file.seek(SeekFrom::Start(0))
        .map_err(|e| err(format!("cannot read: {e}")))?;
    let mut head = vec![0u8; HEADER_SIZE];
    let mut got = 0;
    while got < HEADER_SIZE {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        }
    }
    let header = Header::parse(&head[..got]).map_err(|e| NodeError::file(path, e))?;
    match header.data_end() {
        Some(need) if need <= len => {}
        need => {
            return Err(err(format!(
                "truncated file or bad header: {} needs {} bytes, the file has {len}",
                header.describe_data(),
                byte_count(need),
            )))
        }
    }
    file.seek(SeekFrom::Start(header.vox_offset as u64))
        .map_err(|e| err(format!("cannot read: {e}")))?;
    Ok((header, Source::Plain(file)))
}

/// A byte count for messages; `None` (it overflowed `usize`) reads "more than 2^64".
fn byte_count(n: Option<usize>) -> String {
    n.map_or("more than 2^64".into(), |b| b.to_string())
}

/// Fill `out` from `file` at `offset`, in 8 MiB pieces read by several threads (each
/// also takes the page faults of its piece).
#[cfg(unix)]
pub(super) fn read_parallel(file: &File, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const PIECE: usize = 8 << 20;
    out.par_chunks_mut(PIECE)
        .enumerate()
        .try_for_each(|(i, piece)| file.read_exact_at(piece, offset + (i * PIECE) as u64))
}

/// Fill `out` from `file` at `offset` (sequentially where positional reads are missing).
#[cfg(not(unix))]
pub(super) fn read_parallel(file: &File, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(out)
}

/// Write a NIfTI-1 file atomically (temporary file, then rename): `.nii.gz` compressed
/// (see [`encode_gzip`]), `.nii` plain; any other extension is an error.
pub fn write_file(path: &Path, header: &Header, voxels: &ByteSource) -> Result<(), NodeError> {
    let Some(gzip) = nifti_kind(path) else {
        return Err(NodeError::file(
            path,
            "unknown extension: expected .nii or .nii.gz",
        ));
    };
    let result = if gzip {
        let parts = encode_gzip(header, voxels);
        voxflow_engine::fsutil::write_atomic(path, |w| {
            parts.iter().try_for_each(|p| w.write_all(p))
        })
    } else {
        let head = header.to_bytes();
        voxflow_engine::fsutil::write_atomic(path, |w| {
            w.write_all(&head)?;
            (0..voxels.blocks()).try_for_each(|k| w.write_all(&voxels.block(k)))
        })
    };
    result.map_err(NodeError::from)
}

/// Whether a path names a gzip-compressed NIfTI (`.nii.gz`), a plain one (`.nii`), or
/// neither (`None`).
pub fn nifti_kind(path: &Path) -> Option<bool> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".nii.gz") {
        Some(true)
    } else if name.ends_with(".nii") {
        Some(false)
    } else {
        None
    }
}
