//! Hostile input, tried as an attacker or a careless user would: every case must end in a
//! clean error that names the file, node or param, exit code 1, no panic, no abort, no
//! partial output, and bounded memory. Inputs are generated here; no large file is
//! committed. One binary (one link), one module per input family.

// Not every family uses every check.
#[allow(dead_code)]
mod support;

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod dicom;
mod graph;
mod nifti;
