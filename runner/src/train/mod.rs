//! Training one trial: the device it runs on ([`device`]) and at what
//! precision ([`precision`]), the optimiser ([`optimizer`]) and its schedule
//! ([`schedule`]), the masked-LM loss and evaluation ([`eval`]), one
//! optimisation step ([`step`]), and the loop that ties them together
//! ([`trainer`]).
pub mod device;
pub mod eval;
pub mod optimizer;
pub mod precision;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use trainer::{train, Observer, Outcome};
