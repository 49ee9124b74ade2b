//! Hostile dicom input.

#[allow(unused_imports)]
use crate::support::*;
