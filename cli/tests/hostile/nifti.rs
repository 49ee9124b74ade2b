//! Hostile nifti input.

#[allow(unused_imports)]
use crate::support::*;
