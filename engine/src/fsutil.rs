//! Writing files so that a failure never leaves a half-written output.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Errors writing an output file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Creating, writing or renaming the file failed.
    #[error("cannot write {path}: {error}")]
    Io {
        /// The file that was being written.
        path: PathBuf,
        /// What the operating system said. In the message and deliberately not the
        /// error's `source()`: anyhow's `{:#}` would print it a second time.
        error: std::io::Error,
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
    let io = |error| WriteError::Io {
        path: path.to_path_buf(),
        error,
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
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".part");
    // Temporary files are private (0600) by default; outputs are ordinary files that
    // other users and tools read, so give them the usual 0644.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let tmp = builder.tempfile_in(&dir).map_err(io)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn outputs_are_complete_and_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.txt");
        super::write_atomic(&p, |w| w.write_all(b"hello")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // A failing writer leaves nothing behind, not even the temporary file.
        let q = dir.path().join("sub/failed.txt");
        let err = super::write_atomic(&q, |_| Err(std::io::Error::other("disk full")));
        assert!(err.is_err() && !q.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
