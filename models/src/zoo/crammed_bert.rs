//! `crammed-bert`: the architecture of Geiping & Goldstein 2022, "Cramming:
//! Training a Language Model on a Single GPU in One Day" (arXiv:2212.14034).
//!
//! Pre-LN blocks with a final LayerNorm, no biases in the linear layers, a
//! gated-GELU feed-forward, a LayerNorm on the embeddings, the decoder tied
//! to the word embeddings, and MLM predictions computed only at masked
//! positions (bertlab's training always scores only those). Dropout defaults
//! to 0, as in the paper's recipe. Not reproduced: the paper's scaled
//! sinusoidal positions (positions here are learned, as in BERT) and its
//! sparse prediction head's smaller details.
use super::encoder_knobs::encoder_knobs;
use super::prenorm::{PreLnPlugin, Variant};
use crate::knob::Knob;

const KNOBS: [Knob; 11] = encoder_knobs(0.0);

pub static CRAMMED_BERT: PreLnPlugin = PreLnPlugin {
    name: "crammed-bert",
    summary: "Cramming (Geiping & Goldstein 2022): pre-LN, no linear biases, gated GELU, final LayerNorm",
    knobs: &KNOBS,
    variant: Variant { bias: false, gated: true },
};
