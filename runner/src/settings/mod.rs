//! Settings an experiment file spells as words (`train.device`,
//! `train.precision`), parsed into types in one place. They sit at the
//! bottom of the pipeline: `config` checks them when a file is loaded, and
//! `train` and the CLI act on the parsed values, without either importing
//! the other.
mod device;
mod precision;

pub use device::DeviceSpec;
pub use precision::PrecisionSetting;
