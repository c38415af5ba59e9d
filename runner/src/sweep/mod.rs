//! From one experiment to its trials. The sweep space ([`axes`]: grid,
//! zip groups, [`random`] draws) gives points; each point gets its derived
//! values ([`derive`], written in [`expr`]essions over [`keys`]), passes or
//! fails the [`constraints`], and becomes one checked [`crate::trial::Trial`] per seed
//! ([`expansion`]).
pub mod axes;
pub mod constraints;
pub mod derive;
pub mod expr;
pub mod keys;
pub mod random;
pub mod search;
pub mod tpe;
pub mod expansion;

pub use expansion::{expand, Expanded, Expansion, Planned};
