//! Tables: rows of named values, the port type of statistics and metrics.

use std::fmt::Write as _;
use std::path::Path;

use crate::fsutil::{write_atomic, WriteError};

/// One table cell.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Cell {
    /// An integer (counts, labels, slice numbers).
    Int(i64),
    /// A real number (volumes, distances, scores).
    Float(f64),
    /// Text (names, notes).
    Text(String),
    /// No value (for example a distance between two empty masks).
    Null,
}

impl Cell {
    /// The value as f64 when numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The CSV rendering: floats with up to 6 decimals, trailing zeros removed, so
    /// snapshots stay readable and stable across platforms.
    pub fn to_csv(&self) -> String {
        match self {
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) if f.is_finite() => format_float(*f),
            Cell::Float(f) => f.to_string(),
            Cell::Text(t) => csv_quote(t),
            Cell::Null => String::new(),
        }
    }
}

fn format_float(f: f64) -> String {
    let s = format!("{f:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

fn csv_quote(t: &str) -> String {
    if t.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", t.replace('"', "\"\""))
    } else {
        t.to_string()
    }
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}
impl From<usize> for Cell {
    fn from(v: usize) -> Self {
        Cell::Int(v as i64)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Float(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Cell::Null)
    }
}

/// A table with named columns; every row has one cell per column.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows of cells, each as long as `columns`.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Self {
        Table {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row; panics when its length differs from the column count (a bug in the
    /// node that builds the table, not a user error).
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "row length must match the columns"
        );
        self.rows.push(row);
    }

    /// Index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The table as CSV text (header row first, `\n` line ends).
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        let header: Vec<String> = self.columns.iter().map(|c| csv_quote(c)).collect();
        let _ = writeln!(s, "{}", header.join(","));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(Cell::to_csv).collect();
            let _ = writeln!(s, "{}", cells.join(","));
        }
        s
    }

    /// The table as a JSON array of objects (one per row, keys in column order).
    pub fn to_json(&self) -> serde_json::Value {
        let rows = self
            .rows
            .iter()
            .map(|row| {
                let mut obj = serde_json::Map::new();
                for (c, v) in self.columns.iter().zip(row) {
                    let value = match v {
                        Cell::Float(f) if !f.is_finite() => serde_json::Value::Null,
                        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
                    };
                    obj.insert(c.clone(), value);
                }
                serde_json::Value::Object(obj)
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    /// Write as CSV (`.csv`, `.tsv` is tab-separated) or JSON (`.json`), chosen by the
    /// extension, atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), WriteError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let text = match ext.as_str() {
            "csv" => self.to_csv(),
            "tsv" => self.to_csv_with(b'\t'),
            "json" => {
                let mut t = serde_json::to_string_pretty(&self.to_json()).expect("json");
                t.push('\n');
                t
            }
            _ => {
                return Err(WriteError::UnknownExtension {
                    path: path.to_path_buf(),
                    expected: "csv, tsv or json",
                })
            }
        };
        write_atomic(path, |w| w.write_all(text.as_bytes()))
    }

    fn to_csv_with(&self, sep: u8) -> String {
        let sep = (sep as char).to_string();
        self.to_csv()
            .lines()
            .map(|l| l.replace(',', &sep))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }
}
