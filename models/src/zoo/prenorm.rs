//! The pre-LN encoder that `bert-preln` and `crammed-bert` share:
//! `x + Attention(LayerNorm(x))`, then `x + FFN(LayerNorm(x))`, and a final
//! LayerNorm after the last block (Xiong et al. 2020, "On Layer
//! Normalization in the Transformer Architecture", arXiv:2002.04745). What
//! the two plugins set differently is [`Variant`]: biases in the linear
//! layers, and a plain or gated-GELU feed-forward.
use super::encoder_knobs::resolve_encoder;
use super::layers;
use crate::knob::{Knob, KnobError, KnobValues};
use crate::plugin::{Encoder, EncoderInput, MaskedLm, Plugin};
use serde::Deserialize;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The architecture choices a plugin makes once.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Biases in every linear layer (BERT) or none (Cramming).
    pub bias: bool,
    /// `down(GELU(gate(x)) * up(x))` (Shazeer 2020, "GLU Variants Improve
    /// Transformer") instead of `down(GELU(up(x)))`.
    pub gated: bool,
}

/// A plugin built on this encoder; each plugin file declares one.
pub struct PreLnPlugin {
    pub name: &'static str,
    pub summary: &'static str,
    pub knobs: &'static [Knob],
    pub variant: Variant,
}

impl Plugin for PreLnPlugin {
    fn name(&self) -> &'static str {
        self.name
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    fn knobs(&self) -> &'static [Knob] {
        self.knobs
    }

    fn resolve(&self, given: &KnobValues) -> Result<KnobValues, KnobError> {
        resolve_encoder(self.knobs, given)
    }

    fn param_count(&self, knobs: &KnobValues) -> Result<i64, KnobError> {
        Ok(config(knobs)?.param_count(self.variant))
    }

    fn flops_per_token(&self, knobs: &KnobValues, seq_len: i64) -> Result<i64, KnobError> {
        Ok(config(knobs)?.flops_per_token(self.variant, seq_len))
    }

    fn build(&self, root: &nn::Path, knobs: &KnobValues) -> Result<Box<dyn MaskedLm>, KnobError> {
        Ok(Box::new(PreLnForMaskedLm::new(root, &config(knobs)?, self.variant)))
    }

    fn build_encoder(&self, root: &nn::Path, knobs: &KnobValues) -> Result<Box<dyn Encoder>, KnobError> {
        Ok(Box::new(PreLnEncoder::new(root, &config(knobs)?, self.variant)))
    }

    fn decays(&self, variable: &str) -> bool {
        layers::decays(variable, &NORMS)
    }

    fn is_embedding(&self, variable: &str) -> bool {
        variable.split('.').next() == Some(EMBEDDINGS)
    }
}

/// The knobs, resolved (see `encoder_knobs`).
#[derive(Debug, Clone, Deserialize)]
pub struct PreLnConfig {
    pub vocab_size: i64,
    pub hidden: i64,
    pub layers: i64,
    pub heads: i64,
    pub intermediate: i64,
    pub dropout: f64,
    pub attention_dropout: f64,
    pub max_position: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    pub initializer_range: f64,
}

pub fn config(knobs: &KnobValues) -> Result<PreLnConfig, KnobError> {
    PreLnConfig::deserialize(knobs).map_err(|e| KnobError::new("model", format!("incomplete configuration: {e}")))
}

impl PreLnConfig {
    /// Exact trainable parameters of [`PreLnForMaskedLm`].
    pub fn param_count(&self, variant: Variant) -> i64 {
        let (v, h, i, l) = (self.vocab_size, self.hidden, self.intermediate, self.layers);
        let b = i64::from(variant.bias);
        let linear = |n_in: i64, n_out: i64| n_in * n_out + b * n_out;
        let norm = 2 * h;
        let embeddings = (v + self.max_position + self.type_vocab_size) * h + norm;
        let ffn = if variant.gated { linear(h, 2 * i) } else { linear(h, i) } + linear(i, h);
        let block = norm + linear(h, 3 * h) + linear(h, h) + norm + ffn;
        // Final norm; head transform, its norm and the output bias (tied decoder).
        let head = norm + linear(h, h) + norm + v;
        embeddings + l * block + head
    }

    /// Training FLOPs per token, counted as `Plugin::flops_per_token` says.
    pub fn flops_per_token(&self, variant: Variant, seq_len: i64) -> i64 {
        let (v, h, i, l) = (self.vocab_size, self.hidden, self.intermediate, self.layers);
        let ffn_in = if variant.gated { 2 * i } else { i };
        let block = 2 * (4 * h * h + h * ffn_in + i * h) + 2 * 2 * seq_len * h;
        let head = 2 * (h * h + h * v);
        3 * (l * block + head)
    }
}

fn linear(p: nn::Path, n_in: i64, n_out: i64, c: &PreLnConfig, variant: Variant) -> nn::Linear {
    layers::linear(p, n_in, n_out, c.initializer_range, variant.bias)
}

fn layer_norm(p: nn::Path, c: &PreLnConfig) -> nn::LayerNorm {
    layers::layer_norm(p, c.hidden, c.layer_norm_eps)
}

fn embedding(p: nn::Path, rows: i64, c: &PreLnConfig) -> nn::Embedding {
    layers::embedding(p, rows, c.hidden, c.initializer_range)
}

/// The names of the normalisation modules: in each block, before
/// attention and before the feed-forward; after the embeddings and in the
/// MLM head (both `norm`); after the last block. Weight decay skips them.
const ATTENTION_NORM: &str = "attention_norm";
const FFN_NORM: &str = "ffn_norm";
const NORM: &str = "norm";
const FINAL_NORM: &str = "final_norm";
const NORMS: [&str; 4] = [ATTENTION_NORM, FFN_NORM, NORM, FINAL_NORM];

/// Where the embeddings live: `embeddings.word`, ...
const EMBEDDINGS: &str = "embeddings";

struct Block {
    attention_norm: nn::LayerNorm,
    /// Query, key and value in one matrix: one matrix product instead of three.
    qkv: nn::Linear,
    attention_out: nn::Linear,
    ffn_norm: nn::LayerNorm,
    up: nn::Linear,
    down: nn::Linear,
    heads: i64,
    dropout: f64,
    attention_dropout: f64,
    gated: bool,
}

impl Block {
    fn new(p: nn::Path, c: &PreLnConfig, variant: Variant) -> Self {
        let up_width = if variant.gated { 2 * c.intermediate } else { c.intermediate };
        Block {
            attention_norm: layer_norm(&p / ATTENTION_NORM, c),
            qkv: linear(&p / "attention" / "qkv", c.hidden, 3 * c.hidden, c, variant),
            attention_out: linear(&p / "attention" / "out", c.hidden, c.hidden, c, variant),
            ffn_norm: layer_norm(&p / FFN_NORM, c),
            up: linear(&p / "ffn" / "up", c.hidden, up_width, c, variant),
            down: linear(&p / "ffn" / "down", c.intermediate, c.hidden, c, variant),
            heads: c.heads,
            dropout: c.dropout,
            attention_dropout: c.attention_dropout,
            gated: variant.gated,
        }
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let dropout = if train { self.attention_dropout } else { 0.0 };
        let context = layers::attend(&self.qkv.forward(&self.attention_norm.forward(xs)), self.heads, mask, dropout);
        let xs = xs + self.attention_out.forward(&context).dropout(self.dropout, train);

        let up = self.up.forward(&self.ffn_norm.forward(&xs));
        let inner = if self.gated {
            let halves = up.chunk(2, -1);
            halves[0].gelu("none") * &halves[1]
        } else {
            up.gelu("none")
        };
        &xs + self.down.forward(&inner).dropout(self.dropout, train)
    }
}

pub struct PreLnEncoder {
    word: nn::Embedding,
    position: nn::Embedding,
    token_type: nn::Embedding,
    embedding_norm: nn::LayerNorm,
    blocks: Vec<Block>,
    final_norm: nn::LayerNorm,
    dropout: f64,
}

impl PreLnEncoder {
    pub fn new(root: &nn::Path, c: &PreLnConfig, variant: Variant) -> Self {
        let embeddings = root / EMBEDDINGS;
        PreLnEncoder {
            word: embedding(&embeddings / "word", c.vocab_size, c),
            position: embedding(&embeddings / "position", c.max_position, c),
            token_type: embedding(&embeddings / "token_type", c.type_vocab_size, c),
            embedding_norm: layer_norm(&embeddings / NORM, c),
            blocks: (0..c.layers).map(|i| Block::new(root / "layers" / i, c, variant)).collect(),
            final_norm: layer_norm(root / FINAL_NORM, c),
            dropout: c.dropout,
        }
    }
}

impl Encoder for PreLnEncoder {
    fn encode(&self, input: &EncoderInput, train: bool) -> Tensor {
        let seq = input.input_ids.size()[1];
        let positions = Tensor::arange(seq, (Kind::Int64, input.input_ids.device())).unsqueeze(0);
        let xs = self.word.forward(&input.input_ids) + self.position.forward(&positions) + self.token_type.forward(&input.token_type_ids);
        let mut xs = self.embedding_norm.forward(&xs).dropout(self.dropout, train);
        let mask = layers::attention_mask(input.attention_mask.as_ref());
        for block in &self.blocks {
            xs = block.forward(&xs, mask.as_ref(), train);
        }
        self.final_norm.forward(&xs)
    }
}

pub struct PreLnForMaskedLm {
    encoder: PreLnEncoder,
    head_dense: nn::Linear,
    head_norm: nn::LayerNorm,
    head_bias: Tensor,
}

impl PreLnForMaskedLm {
    pub fn new(root: &nn::Path, c: &PreLnConfig, variant: Variant) -> Self {
        let head = root / "head";
        PreLnForMaskedLm {
            encoder: PreLnEncoder::new(root, c, variant),
            head_dense: linear(&head / "dense", c.hidden, c.hidden, c, variant),
            head_norm: layer_norm(&head / NORM, c),
            head_bias: head.zeros("bias", &[c.vocab_size]),
        }
    }
}

impl Encoder for PreLnForMaskedLm {
    fn encode(&self, input: &EncoderInput, train: bool) -> Tensor {
        self.encoder.encode(input, train)
    }
}

impl MaskedLm for PreLnForMaskedLm {
    /// The decoder is the word embedding matrix (tied).
    fn mlm_logits(&self, hidden: &Tensor) -> Tensor {
        let transformed = self.head_norm.forward(&self.head_dense.forward(hidden).gelu("none"));
        transformed.linear(&self.encoder.word.ws, Some(&self.head_bias))
    }
}
