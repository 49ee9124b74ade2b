//! Hostile batch input.

#[allow(unused_imports)]
use crate::support::*;
