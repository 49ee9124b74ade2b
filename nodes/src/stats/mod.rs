//! Statistics: per-label volumes, HU and per-slice areas, and writing tables to files.

use voxflow_engine::Registry;

pub mod concat_tables;
pub mod label_stats;
pub mod muscle_area_at_level;
pub mod write_table;

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(concat_tables::ConcatTables);
    reg.add(label_stats::LabelStats);
    reg.add(muscle_area_at_level::MuscleAreaAtLevel);
    reg.add(write_table::WriteTable);
}

#[cfg(test)]
mod tests;
