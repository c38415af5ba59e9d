//! Experiment files: the typed sections ([`schema`]), reading them with their
//! layers of overrides ([`load`]), and finding the line a key came from
//! ([`locate`]) so every error can point at it; [`launch`] is where the
//! trials train, [`early_stop`] when they stop before their end.
pub mod dotted;
pub mod early_stop;
pub mod extends;
pub mod fields;
pub mod launch;
pub mod load;
pub mod locate;
pub mod schema;

pub use load::{load, load_defaults, Loaded};
pub use schema::{ConstraintsSection, DataSection, ExperimentFile, ExperimentSection, Goal, SweepSection, Task, TrainSection};
