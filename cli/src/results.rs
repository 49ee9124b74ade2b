//! The end of a run: the result tables a user looks for first (Dice per label, volumes),
//! printed briefly so that a run needs no second step to show what it found.

use std::fmt::Write as _;

use voxflow_engine::run::RunReport;
use voxflow_engine::table::{Cell, Table};
use voxflow_engine::validate::Plan;
use voxflow_engine::Value;

/// Tables longer than this are left to their files and the run report.
const MAX_ROWS: usize = 12;

/// The run's final result tables, by `node.port`: tables that only sinks (nodes without
/// outputs, such as `WriteTable`) read or nobody reads. Intermediate tables (the inputs of
/// `ConcatTables`) and per-slice tables (a `slice` column) are left out.
pub fn key_tables<'a>(plan: &Plan, report: &'a RunReport) -> Vec<(&'a str, &'a Table)> {
    report
        .outputs
        .iter()
        .filter_map(|(name, v)| match v {
            Value::Table(t) => Some((name.as_str(), t.as_ref())),
            _ => None,
        })
        .filter(|(name, t)| {
            t.column("slice").is_none()
                && !t.rows.is_empty()
                && t.rows.len() <= MAX_ROWS
                && !read_by_a_producer(plan, name)
        })
        .collect()
}

/// Whether a node with outputs of its own reads the output `name` (`node.port`).
fn read_by_a_producer(plan: &Plan, name: &str) -> bool {
    let Some((node, port)) = name.rsplit_once('.') else {
        return false;
    };
    let Some(from) = plan.index(node) else {
        return false;
    };
    plan.nodes.iter().any(|n| {
        !n.outputs.is_empty()
            && n.inputs
                .iter()
                .flat_map(|(_, edges)| edges)
                .any(|e| e.from == from && e.port == port)
    })
}

/// A table as aligned text, numbers with four significant digits.
pub fn brief(name: &str, t: &Table) -> String {
    let cells: Vec<Vec<String>> = std::iter::once(t.columns.clone())
        .chain(t.rows.iter().map(|r| r.iter().map(short).collect()))
        .collect();
    let widths: Vec<usize> = (0..t.columns.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!("{name}:\n");
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:>w$}"))
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
    out
}

fn short(c: &Cell) -> String {
    match c {
        Cell::Float(x) if x.is_finite() && *x != 0.0 => {
            let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
            format!("{x:.digits$}")
        }
        Cell::Null => "-".into(),
        other => other.to_csv(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_aligns_columns_and_rounds_to_four_digits() {
        let mut t = Table::new(["label", "dice", "volume_ml", "hd_mm"]);
        t.push(vec![
            Cell::Int(1),
            Cell::Float(0.976543),
            Cell::Float(1234.5678),
            Cell::Null,
        ]);
        t.push(vec![
            Cell::Int(2),
            Cell::Float(0.5),
            Cell::Float(0.012346),
            Cell::Float(3.0),
        ]);
        assert_eq!(
            brief("after.table", &t),
            "after.table:\n  label    dice  volume_ml  hd_mm\n      1  0.9765       1235      -\n      2  0.5000    0.01235  3.000\n"
        );
    }
}
