//! One module per architecture.
pub mod bert;
