//! Diagnostics: problems found in graph files, each with a `file:line:col` location.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ron_spanned::{line_col, Span};

/// The text of every file a graph was loaded from (the graph, its macros, the command
/// line), so diagnostics can print positions and excerpts.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<(PathBuf, String)>,
}

/// Index of a file in [`Sources`].
pub type FileId = usize;

impl Sources {
    /// Add a file's text; returns its id.
    pub fn add(&mut self, path: &Path, text: String) -> FileId {
        self.files.push((path.to_path_buf(), text));
        self.files.len() - 1
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file is loaded.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Path of a file.
    pub fn path(&self, id: FileId) -> &Path {
        &self.files[id].0
    }

    /// Text of a file.
    pub fn text(&self, id: FileId) -> &str {
        &self.files[id].1
    }

    /// Id of an already loaded file.
    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.files.iter().position(|(p, _)| p == path)
    }
}

/// A place in a source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: FileId,
    /// Byte range in it.
    pub span: Span,
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The graph cannot run.
    Error,
    /// Probably a mistake, but the graph can run.
    Warning,
}

/// One problem in a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where, when it can be pinned to a place in a file.
    pub location: Option<Location>,
    /// The file concerned when there is no position (e.g. a file that cannot be read).
    pub file: Option<PathBuf>,
    /// What is wrong.
    pub message: String,
    /// A suggestion ("did you mean ...?", the valid choices).
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at a location.
    pub fn error(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location: Some(location),
            file: None,
            message: message.into(),
            help: None,
        }
    }

    /// A warning at a location.
    pub fn warning(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            location: Some(location),
            file: None,
            message: message.into(),
            help: None,
        }
    }

    /// An error about a whole file.
    pub fn file_error(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location: None,
            file: Some(path.to_path_buf()),
            message: message.into(),
            help: None,
        }
    }

    /// Add a help line (no-op for `None`).
    pub fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// `file:line:col` of the diagnostic, when it has a location.
    pub fn position(&self, sources: &Sources) -> Option<(PathBuf, usize, usize)> {
        let loc = self.location?;
        let (line, col) = line_col(sources.text(loc.file), loc.span.start);
        Some((sources.path(loc.file).to_path_buf(), line, col))
    }

    /// Render as `file:line:col: error: message`, the source line with a caret, and help.
    pub fn render(&self, sources: &Sources) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = match (self.position(sources), &self.file) {
            (Some((path, line, col)), _) => {
                format!("{}:{line}:{col}: {sev}: {}", path.display(), self.message)
            }
            (None, Some(path)) => format!("{}: {sev}: {}", path.display(), self.message),
            (None, None) => format!("{sev}: {}", self.message),
        };
        if let Some(loc) = self.location {
            let text = sources.text(loc.file);
            let (line, col) = line_col(text, loc.span.start);
            if let Some(src_line) = text.lines().nth(line - 1) {
                let width = text[loc.span.start..loc.span.end.min(text.len())]
                    .lines()
                    .next()
                    .map(|l| l.chars().count())
                    .unwrap_or(1)
                    .max(1);
                out.push_str(&format!(
                    "\n  {line:>4} | {src_line}\n       | {}{}",
                    " ".repeat(col - 1),
                    "^".repeat(width)
                ));
            }
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("\n       = help: {help}"));
        }
        out
    }
}

/// All diagnostics of a failed load or validation, with the sources to render them.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    /// Every problem found, errors and warnings, in file order.
    pub items: Vec<Diagnostic>,
    /// The files they point into.
    pub sources: Sources,
}

impl Diagnostics {
    /// Number of errors (warnings excluded).
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{}", d.render(&self.sources))?;
        }
        let n = self.error_count();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// Sort diagnostics by file and position so they read top to bottom.
pub fn sort(items: &mut [Diagnostic]) {
    items.sort_by_key(|d| {
        d.location
            .map(|l| (l.file, l.span.start))
            .unwrap_or((usize::MAX, 0))
    });
}
