//! Running a sweep's trials. [`local`] runs them one after another in this
//! process; a cluster launcher would sit beside it.
pub mod local;
