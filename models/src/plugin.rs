//! The contract between the runner and a model architecture.
use crate::heads::SequenceClassifier;
use crate::hf::HuggingFace;
use crate::knob::{Knob, KnobError, KnobValues};
use tch::{nn, Tensor};

/// One batch as the encoder sees it.
pub struct EncoderInput {
    /// `[batch, seq]`, int64.
    pub input_ids: Tensor,
    /// `[batch, seq]`, int64 segment ids (all zero for single sentences).
    pub token_type_ids: Tensor,
    /// `[batch, seq]`, 1 for real tokens and 0 for padding; `None` when the
    /// batch has no padding, which lets attention take its fastest kernel.
    pub attention_mask: Option<Tensor>,
}

/// A built encoder.
pub trait Encoder: Send {
    /// Final hidden states, `[batch, seq, hidden]`. `train` turns dropout on.
    fn encode(&self, input: &EncoderInput, train: bool) -> Tensor;
}

/// A built encoder with a masked-language-modelling head.
pub trait MaskedLm: Encoder {
    /// Vocabulary logits for hidden states of any leading shape. Kept apart
    /// from `encode` so training can score only the masked positions.
    fn mlm_logits(&self, hidden: &Tensor) -> Tensor;
}

/// An architecture in the zoo.
pub trait Plugin: Sync {
    /// The name experiment files use (`[experiment] model = "..."`).
    fn name(&self) -> &'static str;

    /// One line for `bertlab models`: what it is and which paper it follows.
    fn summary(&self) -> &'static str;

    fn knobs(&self) -> &'static [Knob];

    /// Validates user values against the schema and the architecture's own
    /// rules (e.g. `hidden` divisible by `heads`) and fills every default.
    /// Knobs whose default is computed by the runner (the vocabulary size,
    /// from the tokenizer) must be present by the time `build` is called.
    fn resolve(&self, given: &KnobValues) -> Result<KnobValues, KnobError>;

    /// Exact number of trainable parameters of the model `build` makes.
    fn param_count(&self, knobs: &KnobValues) -> Result<i64, KnobError>;

    /// Training FLOPs per token at sequence length `seq_len`: three times
    /// the forward pass (backward costs two), where the forward counts two
    /// FLOPs per multiply-add of every matrix product, the attention scores
    /// and weighted sums included, and the MLM head over every position.
    fn flops_per_token(&self, knobs: &KnobValues, seq_len: i64) -> Result<i64, KnobError>;

    /// How to read and write Hugging Face folders, for plugins that have a
    /// Hugging Face counterpart.
    fn hugging_face(&self) -> Option<&dyn HuggingFace> {
        None
    }

    /// Creates the encoder alone under `root`, for heads other than the
    /// masked-LM one; its variables are named as in [`Plugin::build`].
    fn build_encoder(&self, root: &nn::Path, knobs: &KnobValues) -> Result<Box<dyn Encoder>, KnobError>;

    /// Where a sequence head's pooler lives, dotted (`bert.pooler` keeps
    /// Hugging Face's `BertForSequenceClassification` names).
    fn pooler_path(&self) -> &'static str {
        "pooler"
    }

    /// The pooler's module under `root`.
    fn pooler<'a>(&self, root: &nn::Path<'a>) -> nn::Path<'a> {
        crate::zoo::layers::at(root, self.pooler_path())
    }

    /// Whether `variable` belongs to the pooler (under [`Plugin::pooler_path`]).
    fn is_pooler(&self, variable: &str) -> bool {
        variable.strip_prefix(self.pooler_path()).is_some_and(|rest| rest.starts_with('.'))
    }

    /// The encoder with a sequence classification head of `labels` outputs
    /// (1 for regression): pooler (dense + tanh on the first token), dropout,
    /// then `classifier`, as in BERT.
    fn build_classifier(&self, root: &nn::Path, knobs: &KnobValues, labels: i64) -> Result<SequenceClassifier, KnobError> {
        let encoder = self.build_encoder(root, knobs)?;
        let pooler = self.pooler(root);
        SequenceClassifier::new(root, &pooler, encoder, knobs, labels)
    }

    /// Whether AdamW's weight decay applies to `variable` (a name in the
    /// models this plugin builds, heads included): not to biases nor to
    /// normalisation gains, as in BERT. The plugin answers because only it
    /// knows what it named its normalisation layers.
    fn decays(&self, variable: &str) -> bool;

    /// Whether `variable` is one of the embedding tables (words, positions,
    /// token types) or their normalisation.
    fn is_embedding(&self, variable: &str) -> bool;

    /// Creates the model's variables under `root` and returns the model.
    fn build(&self, root: &nn::Path, knobs: &KnobValues) -> Result<Box<dyn MaskedLm>, KnobError>;
}
