//! From one experiment to its trials: the grid's cartesian product
//! ([`grid`]) times the seeds, each point resolved into a complete, checked
//! configuration with a stable id ([`trial`]).
pub mod grid;
pub mod trial;

pub use trial::{expand, Trial, TrialConfig};
