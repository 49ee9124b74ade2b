//! Diagnostics: problems found in graph files, each with a `file:line:col` location.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ron_spanned::{ceil_char_boundary, floor_char_boundary, line_col, Span};

/// Characters of a source line shown around the column of a diagnostic. Graph files may
/// be one long line (generated ones are); printing it whole per error once wrote
/// gigabytes of stderr.
pub const SNIPPET_CHARS: usize = 120;

/// Diagnostics printed in full by [`Diagnostics`]' `Display`; the rest are counted. Fifty
/// cover any real mistake and keep a generated graph with thousands of errors readable.
pub const MAX_SHOWN: usize = 50;

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
            out.push_str(&snippet(sources.text(loc.file), loc.span));
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
    /// The first [`MAX_SHOWN`] diagnostics, a count of the rest, and the error count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.items.iter().take(MAX_SHOWN) {
            writeln!(f, "{}", d.render(&self.sources))?;
        }
        if let Some(more) = more_line(&self.items[self.items.len().min(MAX_SHOWN)..]) {
            writeln!(f, "{more}")?;
        }
        let n = self.error_count();
        write!(f, "{} error{}", thousands(n), if n == 1 { "" } else { "s" })
    }
}

/// `and 49,950 more errors` (and warnings) for diagnostics left unprinted; `None` when
/// there are none.
pub fn more_line(rest: &[Diagnostic]) -> Option<String> {
    if rest.is_empty() {
        return None;
    }
    let errors = rest
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = rest.len() - errors;
    let more =
        |n: usize, w: &str| format!("{} more {w}{}", thousands(n), if n == 1 { "" } else { "s" });
    Some(match (errors, warnings) {
        (e, 0) => format!("and {}", more(e, "error")),
        (0, w) => format!("and {}", more(w, "warning")),
        (e, w) => format!("and {} and {}", more(e, "error"), more(w, "warning")),
    })
}

/// `49950` as `49,950`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The source line of `span` with a caret under it: at most [`SNIPPET_CHARS`] characters
/// around the column, with `…` where the line is cut. Empty when the span is past the last
/// line (the end of a file that ends with a newline).
fn snippet(text: &str, span: Span) -> String {
    let start = floor_char_boundary(text, span.start);
    let (line, col) = line_col(text, start);
    let col = col - 1; // 0-based, in characters
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    if line_start == text.len() && (text.is_empty() || text.ends_with('\n')) {
        return String::new();
    }
    let line_end = text[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(text.len());
    let mut full = text[line_start..line_end].trim_end_matches('\r');
    if line_start == 0 {
        // line_col does not count a byte order mark as a column.
        full = full.strip_prefix('\u{feff}').unwrap_or(full);
    }
    let chars: Vec<char> = full.chars().collect();
    let end = ceil_char_boundary(text, span.end.max(start)).min(line_end);
    let width = text[start..end.max(start)].chars().count();
    // The window keeps the caret a third from the left when the line is cut.
    let (from, to) = if chars.len() <= SNIPPET_CHARS {
        (0, chars.len())
    } else {
        let from = col
            .saturating_sub(SNIPPET_CHARS / 3)
            .min(chars.len() - SNIPPET_CHARS);
        (from, from + SNIPPET_CHARS)
    };
    let mut shown: String = chars[from..to].iter().collect();
    let mut caret = col - from.min(col);
    if from > 0 {
        shown.insert(0, '…');
        caret += 1;
    }
    if to < chars.len() {
        shown.push('…');
    }
    let width = width.min(to.saturating_sub(col)).max(1);
    format!(
        "\n  {line:>4} | {shown}\n       | {}{}",
        " ".repeat(caret),
        "^".repeat(width)
    )
}

/// Sort diagnostics by file and position so they read top to bottom.
pub fn sort(items: &mut [Diagnostic]) {
    items.sort_by_key(|d| {
        d.location
            .map(|l| (l.file, l.span.start))
            .unwrap_or((usize::MAX, 0))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_file(text: &str) -> Sources {
        let mut s = Sources::default();
        s.add(Path::new("g.ron"), text.to_string());
        s
    }

    fn at(start: usize, end: usize) -> Location {
        Location {
            file: 0,
            span: Span { start, end },
        }
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_with_the_caret_under_the_column() {
        let text = format!("{}BAD{}", "a".repeat(5000), "b".repeat(5000));
        let sources = one_file(&text);
        let r = Diagnostic::error(at(5000, 5003), "here").render(&sources);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines[0], "g.ron:1:5001: error: here");
        let (code, caret) = (lines[1], lines[2]);
        assert!(code.chars().count() <= SNIPPET_CHARS + 12, "{code}");
        assert!(code.contains('…'));
        // The caret sits under `BAD`, counted in characters.
        let col = caret.find('^').unwrap();
        let under: String = code.chars().skip(col).take(3).collect();
        assert_eq!(under, "BAD", "{code}\n{caret}");
        assert_eq!(caret.matches('^').count(), 3);
    }

    #[test]
    fn non_ascii_lines_and_spans_inside_characters_render() {
        let text = "name: \u{201c}demo\u{201d}\n";
        let sources = one_file(text);
        // A span that starts and ends inside multi-byte characters.
        let r = Diagnostic::error(at(7, 9), "quote").render(&sources);
        assert!(r.starts_with("g.ron:1:7: error: quote"), "{r}");
        assert!(r.contains("\u{201c}demo\u{201d}"), "{r}");
        // Past the end of a file that ends with a newline: no snippet.
        let r = Diagnostic::error(at(text.len(), text.len()), "end").render(&sources);
        assert_eq!(r, "g.ron:2:1: error: end");
    }

    #[test]
    fn display_shows_the_first_fifty_and_counts_the_rest() {
        let sources = one_file("x\n");
        let mut items: Vec<Diagnostic> = (0..1234)
            .map(|i| Diagnostic::error(at(0, 1), format!("e{i}")))
            .collect();
        items.push(Diagnostic::warning(at(0, 1), "w"));
        let d = Diagnostics { items, sources };
        let text = d.to_string();
        assert!(text.contains("error: e49\n"));
        assert!(!text.contains("error: e50\n"));
        assert!(
            text.ends_with("and 1,184 more errors and 1 more warning\n1,234 errors"),
            "{}",
            &text[text.len() - 80..]
        );
    }
}
