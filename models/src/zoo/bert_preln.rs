//! `bert-preln`: BERT with pre-LN blocks and a final LayerNorm.
//!
//! Follows Xiong et al. 2020, "On Layer Normalization in the Transformer
//! Architecture" (arXiv:2002.04745): moving LayerNorm in front of each
//! sublayer keeps gradients well-scaled at depth, so it trains without
//! warm-up troubles at learning rates where post-LN BERT diverges. Otherwise
//! BERT's: learned absolute positions, token types, biases, GELU, tied decoder.
use super::encoder_knobs::encoder_knobs;
use super::prenorm::{PreLnPlugin, Variant};
use crate::knob::Knob;

const KNOBS: [Knob; 11] = encoder_knobs(0.1);

pub static BERT_PRELN: PreLnPlugin = PreLnPlugin {
    name: "bert-preln",
    summary: "BERT with pre-LN blocks and a final LayerNorm (Xiong et al. 2020): stable at depth and high learning rates",
    knobs: &KNOBS,
    variant: Variant { bias: true, gated: false },
};
