//! Training one trial: the device it runs on ([`device`]), the optimiser
//! ([`optimizer`]) and its schedule ([`schedule`]), the masked-LM loss and
//! evaluation ([`eval`]), and the loop that ties them together ([`trainer`]).
pub mod device;
pub mod eval;
pub mod optimizer;
pub mod schedule;
pub mod trainer;

pub use trainer::{train, Observer, Outcome};
