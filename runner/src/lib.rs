//! bertlab: turns a TOML experiment file into a sweep of BERT training runs.
//!
//! The binary (`main.rs`) is a thin shell over [`cli`]. Each folder here
//! owns one concern, and they form a pipeline in which a module imports
//! only the ones listed before it:
//!
//! - [`error`] (the located input error), [`settings`] (device and precision
//!   words parsed into types), [`signals`] (stop requests), [`scoring`]
//!   (GLUE's metrics) and [`formats`] (the layouts of labelled-example
//!   files) at the bottom;
//! - [`config`] reads and checks experiment files;
//! - [`trial`] is one resolved configuration and seed, its id, and its
//!   binding to what the data and the machine decide;
//! - [`hub`] finds `hf:ORG/NAME` ids in the local Hugging Face cache;
//! - [`model_dir`] reads trial and Hugging Face folders;
//! - [`sweep`] expands an experiment into trials;
//! - [`data`] turns a corpus or labelled examples into batches;
//! - [`train`] trains one trial;
//! - [`store`] records a trial in its run folder (whose format the
//!   `runfolder` crate owns), [`track`] in MLflow;
//! - [`launch`] runs a sweep's trials, in this process or in workers;
//! - [`cli`] parses the command line, calls the rest and prints.
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod formats;
pub mod hub;
pub mod launch;
pub mod model_dir;
pub mod scoring;
pub mod settings;
pub mod signals;
pub mod store;
pub mod track;
pub mod sweep;
pub mod torch_file;
pub mod train;
pub mod trial;

pub use error::InputError;
