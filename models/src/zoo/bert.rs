//! `bert`: the original post-LN BERT encoder with its masked-LM head.
//!
//! Follows Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional
//! Transformers for Language Understanding" (arXiv:1810.04805), and Hugging
//! Face's `BertForMaskedLM`: one struct per Hugging Face submodule, variables
//! named as in its state dict (`bert.encoder.layer.0.attention.self.query.weight`,
//! ...) so checkpoints move between the two without renaming. Each block is
//! post-LN: `LayerNorm(x + Dropout(Attention(x)))`, then
//! `LayerNorm(x + Dropout(FFN(x)))` with an exact (erf) GELU, as in the
//! `BertBlock` of the article this project grew from.
use crate::heads;
use crate::hf::HuggingFace;
use super::encoder_knobs::{encoder_knobs, resolve_encoder};
use super::layers;
use crate::knob::{Knob, KnobDefault, KnobError, KnobKind, KnobValues};
use crate::plugin::{Encoder, EncoderInput, MaskedLm, Plugin};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The model's configuration, field for field Hugging Face's `config.json`
/// for `BertConfig`. bertlab's knob names are accepted as aliases, so the
/// `[model]` section deserialises into it directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    #[serde(alias = "vocab_size")]
    pub vocab_size: i64,
    #[serde(alias = "hidden")]
    pub hidden_size: i64,
    #[serde(alias = "layers")]
    pub num_hidden_layers: i64,
    #[serde(alias = "heads")]
    pub num_attention_heads: i64,
    #[serde(alias = "intermediate")]
    pub intermediate_size: i64,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    #[serde(alias = "dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(alias = "attention_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(alias = "max_position")]
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    /// The MLM decoder shares the word embeddings (BERT, and Hugging Face's
    /// default); `false` gives it its own `cls.predictions.decoder.weight`.
    #[serde(default = "yes", deserialize_with = "flag", alias = "tie_embeddings")]
    pub tie_word_embeddings: bool,
}

fn gelu() -> String {
    "gelu".to_string()
}

fn yes() -> bool {
    true
}

/// `true`/`false` from `config.json`, `1`/`0` from the integer knob.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match Flag::deserialize(d)? {
        Flag::Bool(b) => b,
        Flag::Int(i) => i != 0,
    })
}

/// Hugging Face's name for BERT's normalisation modules.
const LAYER_NORM: &str = "LayerNorm";

/// Where the embeddings live: `bert.embeddings.word_embeddings`, ...
const EMBEDDINGS: &str = "bert.embeddings.";

const SHARED: [Knob; 11] = encoder_knobs(0.1);

const KNOBS: [Knob; 12] = {
    let s = SHARED;
    let tie = Knob {
        name: "tie_embeddings",
        kind: KnobKind::Int { min: 0, max: 1 },
        default: KnobDefault::Int(1),
        doc: "1: the MLM decoder is the word embeddings (BERT); 0: its own weights",
    };
    [s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], tie]
};

pub struct Bert;

impl Plugin for Bert {
    fn name(&self) -> &'static str {
        "bert"
    }

    fn summary(&self) -> &'static str {
        "original post-LN BERT (Devlin et al. 2018), Hugging Face BertForMaskedLM names"
    }

    fn knobs(&self) -> &'static [Knob] {
        &KNOBS
    }

    fn resolve(&self, given: &KnobValues) -> Result<KnobValues, KnobError> {
        resolve_encoder(&KNOBS, given)
    }

    fn param_count(&self, knobs: &KnobValues) -> Result<i64, KnobError> {
        let c = config(knobs)?;
        let (v, h, i, l) = (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers);
        let layer_norm = 2 * h;
        let linear = |n_in: i64, n_out: i64| n_in * n_out + n_out;
        let embeddings = (v + c.max_position_embeddings + c.type_vocab_size) * h + layer_norm;
        let block = 4 * linear(h, h) + linear(h, i) + linear(i, h) + 2 * layer_norm;
        // Transform dense + LayerNorm + output bias, and the decoder weight
        // when it is not the word embeddings.
        let decoder = if c.tie_word_embeddings { 0 } else { v * h };
        let head = linear(h, h) + layer_norm + v + decoder;
        Ok(embeddings + l * block + head)
    }

    fn flops_per_token(&self, knobs: &KnobValues, seq_len: i64) -> Result<i64, KnobError> {
        let c = config(knobs)?;
        let (v, h, i, l) = (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers);
        // Q, K, V and output projections, the two feed-forward layers; then
        // QK^T and the weighted sum of V, each seq_len x hidden per token.
        let block = 2 * (4 * h * h + 2 * h * i) + 2 * 2 * seq_len * h;
        // Head transform and the tied decoder.
        let head = 2 * (h * h + h * v);
        Ok(3 * (l * block + head))
    }

    fn hugging_face(&self) -> Option<&dyn HuggingFace> {
        Some(self)
    }

    fn build(&self, root: &nn::Path, knobs: &KnobValues) -> Result<Box<dyn MaskedLm>, KnobError> {
        Ok(Box::new(BertForMaskedLM::new(root, &config(knobs)?)))
    }

    fn build_encoder(&self, root: &nn::Path, knobs: &KnobValues) -> Result<Box<dyn Encoder>, KnobError> {
        Ok(Box::new(BertModel::new(root / "bert", &config(knobs)?)))
    }

    fn pooler_path(&self) -> &'static str {
        "bert.pooler"
    }

    fn decays(&self, variable: &str) -> bool {
        layers::decays(variable, &[LAYER_NORM])
    }

    fn is_embedding(&self, variable: &str) -> bool {
        variable.starts_with(EMBEDDINGS)
    }
}

/// Knob names next to the `config.json` fields they set.
const HF_FIELDS: [(&str, &str); 12] = [
    ("layers", "num_hidden_layers"),
    ("hidden", "hidden_size"),
    ("heads", "num_attention_heads"),
    ("intermediate", "intermediate_size"),
    ("dropout", "hidden_dropout_prob"),
    ("attention_dropout", "attention_probs_dropout_prob"),
    ("vocab_size", "vocab_size"),
    ("max_position", "max_position_embeddings"),
    ("type_vocab_size", "type_vocab_size"),
    ("layer_norm_eps", "layer_norm_eps"),
    ("initializer_range", "initializer_range"),
    ("tie_embeddings", "tie_word_embeddings"),
];

impl HuggingFace for Bert {
    fn knobs_from_config(&self, json: &serde_json::Value) -> Result<KnobValues, KnobError> {
        let c = BertConfig::deserialize(json).map_err(|e| KnobError::new("config.json", format!("not a BertConfig: {e}")))?;
        if !matches!(c.hidden_act.as_str(), "gelu" | "gelu_python") {
            return Err(KnobError::new("config.json", format!("hidden_act `{}`: the bert plugin implements exact GELU only", c.hidden_act)));
        }
        if let Some(kind) = json.get("position_embedding_type").and_then(|v| v.as_str()).filter(|k| *k != "absolute") {
            return Err(KnobError::new("config.json", format!("position_embedding_type `{kind}`: the bert plugin has absolute positions only")));
        }
        let fields = serde_json::to_value(&c).expect("a config serialises");
        let mut knobs = KnobValues::new();
        for (knob, field) in HF_FIELDS {
            let value = match &fields[field] {
                serde_json::Value::Bool(b) => i64::from(*b).into(),
                other => other.clone(),
            };
            knobs.insert(knob.into(), value);
        }
        self.resolve(&knobs)
    }

    fn config_json(&self, knobs: &KnobValues) -> Result<serde_json::Value, KnobError> {
        let mut json = serde_json::to_value(config(knobs)?).expect("a config serialises");
        let extra = serde_json::json!({
            "architectures": ["BertForMaskedLM"],
            "model_type": "bert",
            "position_embedding_type": "absolute",
            "pad_token_id": 0,
        });
        json.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        Ok(json)
    }

    fn export_tensors(&self, knobs: &KnobValues, mut tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
        // Untied, Hugging Face's decoder uses its own bias.
        let tied = config(knobs).map(|c| c.tie_word_embeddings).unwrap_or(true);
        if let Some(bias) = tensors.iter().find(|(n, _)| n == "cls.predictions.bias").filter(|_| !tied).map(|(_, t)| t.shallow_clone()) {
            tensors.push(("cls.predictions.decoder.bias".into(), bias));
        }
        tensors
    }

    fn variable_name(&self, knobs: &KnobValues, tensor: &str) -> Option<String> {
        let tied = config(knobs).map(|c| c.tie_word_embeddings).unwrap_or(true);
        // BertModel checkpoints have no `bert.` prefix; the other layouts
        // (BertForMaskedLM, BertForPreTraining, BertForSequenceClassification)
        // use bertlab's names already.
        let name = if ["embeddings.", "encoder.", "pooler."].iter().any(|p| tensor.starts_with(p)) {
            format!("bert.{tensor}")
        } else {
            tensor.to_string()
        };
        // Tied, Hugging Face's decoder shares the word embeddings and
        // `cls.predictions.bias`; untied, its own bias is the one it uses.
        match (name.as_str(), tied) {
            ("cls.predictions.decoder.weight" | "cls.predictions.decoder.bias", true) => None,
            ("cls.predictions.decoder.bias", false) => Some("cls.predictions.bias".into()),
            ("cls.predictions.bias", false) => None,
            _ => Some(name),
        }
    }

    fn is_head(&self, variable: &str) -> bool {
        // `cls.` holds the MLM head and the next-sentence classifier.
        variable.starts_with("cls.") || self.is_pooler(variable) || heads::is_classifier(variable)
    }
}

/// Trainable parameters of Hugging Face's `BertModel` (the encoder with its
/// pooler, no MLM head): the count published sizes are quoted in.
pub fn bert_model_param_count(knobs: &KnobValues) -> Result<i64, KnobError> {
    let c = config(knobs)?;
    let (v, h) = (c.vocab_size, c.hidden_size);
    let decoder = if c.tie_word_embeddings { 0 } else { v * h };
    let head = (h * h + h) + 2 * h + v + decoder;
    let pooler = h * h + h;
    Ok(Bert.param_count(knobs)? - head + pooler)
}

fn config(knobs: &KnobValues) -> Result<BertConfig, KnobError> {
    BertConfig::deserialize(knobs)
        .map_err(|e| KnobError::new("model", format!("incomplete bert configuration: {e}")))
}

fn linear(path: nn::Path, n_in: i64, n_out: i64, c: &BertConfig) -> nn::Linear {
    layers::linear(path, n_in, n_out, c.initializer_range, true)
}

/// The LayerNorm module of `parent`, under Hugging Face's name for it.
fn layer_norm(parent: &nn::Path, c: &BertConfig) -> nn::LayerNorm {
    layers::layer_norm(parent / LAYER_NORM, c.hidden_size, c.layer_norm_eps)
}

fn embedding(path: nn::Path, rows: i64, c: &BertConfig) -> nn::Embedding {
    layers::embedding(path, rows, c.hidden_size, c.initializer_range)
}

struct BertEmbeddings {
    word_embeddings: nn::Embedding,
    position_embeddings: nn::Embedding,
    token_type_embeddings: nn::Embedding,
    layer_norm: nn::LayerNorm,
    dropout: f64,
}

impl BertEmbeddings {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        BertEmbeddings {
            word_embeddings: embedding(&p / "word_embeddings", c.vocab_size, c),
            position_embeddings: embedding(&p / "position_embeddings", c.max_position_embeddings, c),
            token_type_embeddings: embedding(&p / "token_type_embeddings", c.type_vocab_size, c),
            layer_norm: layer_norm(&p, c),
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(&self, input: &EncoderInput, train: bool) -> Tensor {
        let seq_len = input.input_ids.size()[1];
        let positions = Tensor::arange(seq_len, (Kind::Int64, input.input_ids.device())).unsqueeze(0);
        let xs = self.word_embeddings.forward(&input.input_ids)
            + self.position_embeddings.forward(&positions)
            + self.token_type_embeddings.forward(&input.token_type_ids);
        self.layer_norm.forward(&xs).dropout(self.dropout, train)
    }
}

struct BertSelfAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl BertSelfAttention {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        let h = c.hidden_size;
        BertSelfAttention {
            query: linear(&p / "query", h, h, c),
            key: linear(&p / "key", h, h, c),
            value: linear(&p / "value", h, h, c),
            heads: c.num_attention_heads,
            dropout: c.attention_probs_dropout_prob,
        }
    }

    /// `mask`: `[batch, 1, 1, seq]` booleans, true where attention may look.
    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        // One matrix product for the three projections instead of three:
        // fewer, larger kernels. The variables stay apart, as Hugging Face
        // names them.
        let parts = [&self.query, &self.key, &self.value];
        let weight = Tensor::cat(&parts.map(|l| &l.ws), 0);
        let bias = Tensor::cat(&parts.map(|l| l.bs.as_ref().expect("BERT's projections have biases")), 0);
        let dropout = if train { self.dropout } else { 0.0 };
        layers::attend(&xs.linear(&weight, Some(&bias)), self.heads, mask, dropout)
    }
}

/// Projection, dropout, residual and LayerNorm after a sublayer: Hugging
/// Face's `BertSelfOutput` and `BertOutput` have exactly this shape.
struct ResidualNorm {
    dense: nn::Linear,
    layer_norm: nn::LayerNorm,
    dropout: f64,
}

impl ResidualNorm {
    fn new(p: nn::Path, n_in: i64, c: &BertConfig) -> Self {
        ResidualNorm {
            dense: linear(&p / "dense", n_in, c.hidden_size, c),
            layer_norm: layer_norm(&p, c),
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(&self, xs: &Tensor, residual: &Tensor, train: bool) -> Tensor {
        let projected = self.dense.forward(xs).dropout(self.dropout, train);
        self.layer_norm.forward(&(projected + residual))
    }
}

struct BertLayer {
    self_attention: BertSelfAttention,
    attention_output: ResidualNorm,
    intermediate: nn::Linear,
    output: ResidualNorm,
}

impl BertLayer {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        let attention = &p / "attention";
        BertLayer {
            self_attention: BertSelfAttention::new(&attention / "self", c),
            attention_output: ResidualNorm::new(&attention / "output", c.hidden_size, c),
            intermediate: linear(&p / "intermediate" / "dense", c.hidden_size, c.intermediate_size, c),
            output: ResidualNorm::new(&p / "output", c.intermediate_size, c),
        }
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor {
        let attended = self.self_attention.forward(xs, mask, train);
        let xs = self.attention_output.forward(&attended, xs, train);
        let inner = self.intermediate.forward(&xs).gelu("none");
        self.output.forward(&inner, &xs, train)
    }
}

struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
}

impl BertModel {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        let layer = &p / "encoder" / "layer";
        BertModel {
            embeddings: BertEmbeddings::new(&p / "embeddings", c),
            layers: (0..c.num_hidden_layers).map(|i| BertLayer::new(&layer / i, c)).collect(),
        }
    }

    fn forward(&self, input: &EncoderInput, train: bool) -> Tensor {
        let mask = layers::attention_mask(input.attention_mask.as_ref());
        let mut xs = self.embeddings.forward(input, train);
        for layer in &self.layers {
            xs = layer.forward(&xs, mask.as_ref(), train);
        }
        xs
    }
}

/// `cls.predictions`: transform (dense, GELU, LayerNorm), then a decoder
/// (tied to the word embeddings unless the config says otherwise) plus its
/// own output bias.
struct BertLMPredictionHead {
    dense: nn::Linear,
    layer_norm: nn::LayerNorm,
    /// `None` when tied: the decoder is the word embedding matrix.
    decoder: Option<Tensor>,
    bias: Tensor,
}

impl BertLMPredictionHead {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        let transform = &p / "transform";
        let init = nn::Init::Randn { mean: 0.0, stdev: c.initializer_range };
        BertLMPredictionHead {
            dense: linear(&transform / "dense", c.hidden_size, c.hidden_size, c),
            layer_norm: layer_norm(&transform, c),
            decoder: (!c.tie_word_embeddings).then(|| (&p / "decoder").var("weight", &[c.vocab_size, c.hidden_size], init)),
            bias: p.zeros("bias", &[c.vocab_size]),
        }
    }
}

pub struct BertForMaskedLM {
    bert: BertModel,
    head: BertLMPredictionHead,
}

impl BertForMaskedLM {
    pub fn new(root: &nn::Path, c: &BertConfig) -> Self {
        BertForMaskedLM {
            bert: BertModel::new(root / "bert", c),
            head: BertLMPredictionHead::new(root / "cls" / "predictions", c),
        }
    }
}

impl Encoder for BertModel {
    fn encode(&self, input: &EncoderInput, train: bool) -> Tensor {
        self.forward(input, train)
    }
}

impl Encoder for BertForMaskedLM {
    fn encode(&self, input: &EncoderInput, train: bool) -> Tensor {
        self.bert.forward(input, train)
    }
}

impl MaskedLm for BertForMaskedLM {
    fn mlm_logits(&self, hidden: &Tensor) -> Tensor {
        let transformed = self.head.layer_norm.forward(&self.head.dense.forward(hidden).gelu("none"));
        let decoder = self.head.decoder.as_ref().unwrap_or(&self.bert.embeddings.word_embeddings.ws);
        transformed.linear(decoder, Some(&self.head.bias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn knobs(json: &str) -> KnobValues {
        Bert.resolve(&serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn analytic_parameter_count_matches_the_built_model() {
        for json in [
            r#"{"layers": 2, "hidden": 64, "heads": 2, "vocab_size": 500, "max_position": 128}"#,
            r#"{"layers": 1, "hidden": 48, "heads": 3, "intermediate": 100, "vocab_size": 97}"#,
        ] {
            let knobs = knobs(json);
            let vs = nn::VarStore::new(Device::Cpu);
            Bert.build(&vs.root(), &knobs).unwrap();
            let built: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
            assert_eq!(Bert.param_count(&knobs).unwrap(), built, "{json}");
        }
    }

    #[test]
    fn flops_per_token_is_six_per_matrix_weight_plus_attention() {
        // BERT-Base at 128 tokens: 6 FLOPs per weight of every matrix product
        // (decoder included, biases and LayerNorm not) and 12 L seq h for
        // the attention scores and sums, forward and backward.
        let base = knobs(r#"{"layers": 12, "hidden": 768, "heads": 12, "vocab_size": 30522}"#);
        let (l, h, i, v, seq) = (12i64, 768i64, 3072i64, 30522i64, 128i64);
        let matrix_weights = l * (4 * h * h + 2 * h * i) + h * h + v * h;
        assert_eq!(Bert.flops_per_token(&base, seq).unwrap(), 6 * matrix_weights + 12 * l * seq * h);
        assert_eq!(Bert.flops_per_token(&base, seq).unwrap(), 667_948_032);
    }

    #[test]
    fn variable_names_follow_hugging_face_bert_for_masked_lm() {
        let vs = nn::VarStore::new(Device::Cpu);
        Bert.build(&vs.root(), &knobs(r#"{"layers": 1, "hidden": 32, "heads": 2, "vocab_size": 50}"#)).unwrap();
        let names = vs.variables();
        for name in [
            "bert.embeddings.word_embeddings.weight",
            "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.token_type_embeddings.weight",
            "bert.embeddings.LayerNorm.weight",
            "bert.encoder.layer.0.attention.self.query.weight",
            "bert.encoder.layer.0.attention.self.key.bias",
            "bert.encoder.layer.0.attention.output.dense.weight",
            "bert.encoder.layer.0.attention.output.LayerNorm.bias",
            "bert.encoder.layer.0.intermediate.dense.weight",
            "bert.encoder.layer.0.output.dense.weight",
            "bert.encoder.layer.0.output.LayerNorm.weight",
            "cls.predictions.transform.dense.weight",
            "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.bias",
        ] {
            assert!(names.contains_key(name), "missing {name}; have {:?}", names.keys());
        }
        // Tied decoder: no separate decoder weight.
        assert_eq!(names.len(), 5 + 16 + 5);
    }

    #[test]
    fn heads_must_divide_hidden() {
        let err = Bert.resolve(&serde_json::from_str(r#"{"hidden": 100, "heads": 3}"#).unwrap()).unwrap_err();
        assert_eq!(err.knob, "heads");
    }

    #[test]
    fn padding_does_not_change_the_real_tokens_outputs() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Bert.build(&vs.root(), &knobs(r#"{"layers": 2, "hidden": 32, "heads": 4, "vocab_size": 50}"#)).unwrap();
        let ids = Tensor::from_slice(&[5i64, 6, 7, 8]).view([1, 4]);
        let short = EncoderInput { input_ids: ids.copy(), token_type_ids: ids.zeros_like(), attention_mask: None };
        let padded_ids = Tensor::from_slice(&[5i64, 6, 7, 8, 0, 0]).view([1, 6]);
        let padded = EncoderInput {
            token_type_ids: padded_ids.zeros_like(),
            attention_mask: Some(Tensor::from_slice(&[1i64, 1, 1, 1, 0, 0]).view([1, 6])),
            input_ids: padded_ids,
        };
        let a = model.encode(&short, false);
        let b = model.encode(&padded, false).narrow(1, 0, 4);
        assert!(a.allclose(&b, 1e-5, 1e-5, false));
    }
}
