//! Hostile graph input.

#[allow(unused_imports)]
use crate::support::*;
