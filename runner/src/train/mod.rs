//! Training one trial: the device it runs on ([`device`]) and at what
//! precision ([`precision`]), the optimiser ([`optimizer`]) and its schedule
//! ([`schedule`]), the masked-LM loss and evaluation ([`objective`]), one
//! optimisation step ([`step`]), run again in smaller micro-batches when it
//! runs out of memory ([`out_of_memory`]), and the loop that ties them together
//! ([`trainer`]), checkpointed and resumed exactly ([`checkpoint`]), on one
//! device or data-parallel over several ([`ranks`]); timing steps for
//! `bertlab bench` ([`benchmark`]) against the device's peak ([`peak_flops`]).
pub mod benchmark;
pub mod checkpoint;
pub mod device;
pub mod objective;
pub mod finetune;
pub mod optimizer;
pub mod out_of_memory;
pub mod peak_flops;
pub mod precision;
pub mod ranks;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use trainer::{train, Observer, Outcome, Placement, Stopped};
