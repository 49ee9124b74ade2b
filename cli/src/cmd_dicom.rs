//! `voxflow dicom ls DIR`: the series of a DICOM folder, to pick one with
//! LoadDicomSeries' `series` param.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

/// DICOM helpers.
#[derive(clap::Subcommand)]
pub enum DicomCommand {
    /// List the series of a folder: SeriesInstanceUID, SeriesNumber, description,
    /// modality, slice count and size (headers only; pixel data is not decoded).
    Ls {
        /// Folder of DICOM files (hidden files and sub-folders are skipped).
        dir: PathBuf,
    },
}

pub fn run(cmd: DicomCommand) -> Result<ExitCode> {
    match cmd {
        DicomCommand::Ls { dir } => {
            let series = match voxflow_nodes::io::dicom::list_series(&dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            outln!(
                "{:<40} {:>6} {:>6} {:>9}  {:<8} description",
                "SeriesInstanceUID",
                "number",
                "slices",
                "size",
                "modality"
            );
            for s in &series {
                let uid = if s.uid.is_empty() { "(none)" } else { &s.uid };
                let number = s.number.map_or("-".to_string(), |n| n.to_string());
                outln!(
                    "{:<40} {:>6} {:>6} {:>9}  {:<8} {}",
                    uid,
                    number,
                    s.slices.len(),
                    format!("{}x{}", s.cols, s.rows),
                    s.modality,
                    s.description
                );
            }
            if series.len() > 1 {
                outln!(
                    "\n{} series: LoadDicomSeries needs `series: \"<uid>\"`, a number or \"largest\".",
                    series.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
