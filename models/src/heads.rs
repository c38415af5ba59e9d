//! Heads that work on any encoder of the zoo: sequence classification and
//! regression (BERT's pooler and classifier), and BERT's next-sentence
//! prediction head for pretraining.
use crate::knob::{KnobError, KnobValues};
use crate::plugin::{Encoder, EncoderInput};
use crate::zoo::layers;
use tch::nn::{self, Module};
use tch::Tensor;

/// Where the sequence head's classifier goes, under the model's root:
/// Hugging Face's `BertForSequenceClassification` name.
pub const CLASSIFIER: &str = "classifier";

/// Where the next-sentence classifier goes, under the model's root:
/// Hugging Face's `BertForPreTraining` name.
pub const NEXT_SENTENCE: &str = "cls.seq_relationship";

/// Whether `variable` belongs to the sequence head's classifier, which
/// always starts fresh when fine-tuning begins.
pub fn is_classifier(variable: &str) -> bool {
    variable.strip_prefix(CLASSIFIER).is_some_and(|rest| rest.starts_with('.'))
}

/// Whether `variable` belongs to the next-sentence classifier.
pub fn is_next_sentence(variable: &str) -> bool {
    variable.strip_prefix(NEXT_SENTENCE).is_some_and(|rest| rest.starts_with('.'))
}

/// A head layer of width `hidden` to `n_out`, with BERT's initialisation
/// (normal weights with the encoder's `initializer_range`, zero biases).
fn head_linear(p: nn::Path, n_out: i64, knobs: &KnobValues) -> Result<nn::Linear, KnobError> {
    let hidden = knob(knobs, "hidden")? as i64;
    Ok(layers::linear(p, hidden, n_out, knob(knobs, "initializer_range")?, true))
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
    /// to `root / CLASSIFIER`.
    pub fn new(root: &nn::Path, pooler: &nn::Path, encoder: Box<dyn Encoder>, knobs: &KnobValues, labels: i64) -> Result<Self, KnobError> {
        let hidden = knob(knobs, "hidden")? as i64;
        Ok(SequenceClassifier {
            encoder,
            pooler: head_linear(pooler / "dense", hidden, knobs)?,
            classifier: head_linear(root / CLASSIFIER, labels, knobs)?,
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
    /// to `root /` [`NEXT_SENTENCE`].
    pub fn new(root: &nn::Path, pooler: &nn::Path, knobs: &KnobValues) -> Result<Self, KnobError> {
        let hidden = knob(knobs, "hidden")? as i64;
        let classifier = layers::at(root, NEXT_SENTENCE);
        Ok(NextSentenceHead {
            pooler: head_linear(pooler / "dense", hidden, knobs)?,
            seq_relationship: head_linear(classifier, 2, knobs)?,
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
