//! Writing files so that a failure never leaves a half-written output.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Errors writing an output file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Creating, writing or renaming the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file that was being written.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The extension does not say which format to write.
    #[error("cannot tell the format of {path} from its extension (expected {expected})")]
    UnknownExtension {
        /// The file.
        path: PathBuf,
        /// Extensions that work.
        expected: &'static str,
    },
}

/// Write `path` through a temporary file in the same folder, renamed into place only
/// when `fill` succeeded and the data reached the disk. Parent folders are created.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<(), WriteError>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(io)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
