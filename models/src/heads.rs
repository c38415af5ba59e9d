//! Heads that work on any encoder of the zoo: sequence classification and
//! regression (BERT's pooler and classifier).
use crate::knob::{KnobError, KnobValues};
use crate::plugin::{Encoder, EncoderInput};
use tch::nn::{self, Module};
use tch::Tensor;

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
        let number = |name: &str| knobs.get(name).and_then(|v| v.as_f64()).ok_or_else(|| KnobError::new(name, "missing"));
        let hidden = number("hidden")? as i64;
        let config = nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: number("initializer_range")? }, bs_init: Some(nn::Init::Const(0.0)), bias: true };
        Ok(SequenceClassifier {
            encoder,
            pooler: nn::linear(pooler / "dense", hidden, hidden, config),
            classifier: nn::linear(root / "classifier", hidden, labels, config),
            dropout: number("dropout")?,
        })
    }

    /// `[batch, labels]`: class logits, or the predicted value when labels is 1.
    pub fn logits(&self, input: &EncoderInput, train: bool) -> Tensor {
        let first = self.encoder.encode(input, train).select(1, 0);
        let pooled = self.pooler.forward(&first).tanh().dropout(self.dropout, train);
        self.classifier.forward(&pooled)
    }
}
