//! bertlab: turns a TOML experiment file into a sweep of BERT training runs.
//!
//! The binary (`main.rs`) is a thin shell over [`cli`]; each folder here owns
//! one concern: [`config`] reads and checks experiment files, [`sweep`]
//! expands them into trials, [`data`] turns a corpus into masked batches,
//! [`train`] trains one trial, [`store`] records results in Parquet tables,
//! and [`launch`] runs a sweep's trials.
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod launch;
pub mod model_dir;
pub mod store;
pub mod track;
pub mod sweep;
pub mod train;

pub use error::InputError;
