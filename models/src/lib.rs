//! bertlab's model zoo: the plugin trait every architecture implements, the
//! registry that names them, and one file per plugin under `zoo/`.
//!
//! A plugin turns a table of knob values (the `[model]` section of an
//! experiment, after sweeps are applied) into a model built in a
//! `tch::nn::VarStore`. The knob schema it declares is what the runner
//! validates experiment files against and what `bertlab models` prints.
pub mod heads;
pub mod hf;
pub mod knob;
pub mod plugin;
pub mod registry;
pub mod zoo;

pub use hf::HuggingFace;
pub use knob::{Knob, KnobDefault, KnobError, KnobKind, KnobValues};
pub use heads::SequenceClassifier;
pub use plugin::{Encoder, EncoderInput, MaskedLm, Plugin};
