//! Heads that work on any encoder of the zoo: sequence classification and
//! regression (BERT's pooler and classifier), and BERT's next-sentence
//! prediction head for pretraining.
use crate::knob::{KnobError, KnobValues};
use crate::plugin::{Encoder, EncoderInput};
use tch::nn::{self, Module};
use tch::Tensor;

/// The width of the heads' layers and their initialisation (BERT's: normal
/// weights with the encoder's `initializer_range`, zero biases).
fn layer_shape(knobs: &KnobValues) -> Result<(i64, nn::LinearConfig), KnobError> {
    let hidden = knob(knobs, "hidden")? as i64;
    let config = nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: knob(knobs, "initializer_range")? }, bs_init: Some(nn::Init::Const(0.0)), bias: true };
    Ok((hidden, config))
}

fn knob(knobs: &KnobValues, name: &str) -> Result<f64, KnobError> {
    knobs.get(name).and_then(|v| v.as_f64()).ok_or_else(|| KnobError::new(name, "missing"))
}

/// BERT's pooler: its dense layer and tanh on the first token's final
/// hidden state.
fn pool(pooler: &nn::Linear, hidden: &Tensor) -> Tensor {
    pooler.forward(&hidden.select(1, 0)).tanh()
}

pub struct SequenceClassifier {
    encoder: Box<dyn Encoder>,
    pooler: nn::Linear,
    classifier: nn::Linear,
    dropout: f64,
}

impl SequenceClassifier {
    /// `pooler` is where the pooler's dense layer goes; the classifier goes
    /// to `root / "classifier"`.
    pub fn new(root: &nn::Path, pooler: &nn::Path, encoder: Box<dyn Encoder>, knobs: &KnobValues, labels: i64) -> Result<Self, KnobError> {
        let (hidden, config) = layer_shape(knobs)?;
        Ok(SequenceClassifier {
            encoder,
            pooler: nn::linear(pooler / "dense", hidden, hidden, config),
            classifier: nn::linear(root / "classifier", hidden, labels, config),
            dropout: knob(knobs, "dropout")?,
        })
    }

    /// `[batch, labels]`: class logits, or the predicted value when labels is 1.
    pub fn logits(&self, input: &EncoderInput, train: bool) -> Tensor {
        let pooled = pool(&self.pooler, &self.encoder.encode(input, train)).dropout(self.dropout, train);
        self.classifier.forward(&pooled)
    }
}

/// BERT's next-sentence prediction: the pooler (dense + tanh on the first
/// token's hidden state) and a two-way classifier, named as in Hugging
/// Face's `BertForPreTraining` (`bert.pooler.dense`, `cls.seq_relationship`).
pub struct NextSentenceHead {
    pooler: nn::Linear,
    seq_relationship: nn::Linear,
}

impl NextSentenceHead {
    /// `pooler` is where the pooler's dense layer goes; the classifier goes
    /// to `root / "cls" / "seq_relationship"`.
    pub fn new(root: &nn::Path, pooler: &nn::Path, knobs: &KnobValues) -> Result<Self, KnobError> {
        let (hidden, config) = layer_shape(knobs)?;
        Ok(NextSentenceHead {
            pooler: nn::linear(pooler / "dense", hidden, hidden, config),
            seq_relationship: nn::linear(root / "cls" / "seq_relationship", hidden, 2, config),
        })
    }

    /// Trainable parameters the head adds to a model of width `hidden`.
    pub fn param_count(hidden: i64) -> i64 {
        (hidden * hidden + hidden) + (2 * hidden + 2)
    }

    /// `[batch, 2]` logits (0: B follows A, 1: B is random) from the
    /// encoder's final hidden states `[batch, seq, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        self.seq_relationship.forward(&pool(&self.pooler, hidden))
    }
}
