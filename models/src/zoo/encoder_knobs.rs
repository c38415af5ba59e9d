//! The knobs every encoder of the zoo shares (depth, width, heads, dropout,
//! embedding sizes, initialisation) and the rules that complete them, so each
//! plugin declares only what is its own.
use crate::knob::{check_against, Knob, KnobDefault, KnobError, KnobKind, KnobValues};

const fn int(name: &'static str, min: i64, default: KnobDefault, doc: &'static str) -> Knob {
    Knob { name, kind: KnobKind::Int { min, max: i64::MAX }, default, doc }
}

const fn fraction(name: &'static str, default: KnobDefault, doc: &'static str) -> Knob {
    Knob { name, kind: KnobKind::Float { min: 0.0, max: 1.0, max_inclusive: false }, default, doc }
}

/// Defaults are BERT-Base's, as in Hugging Face's `BertConfig`, except the
/// dropout, which recipes differ on.
pub const fn encoder_knobs(dropout: f64) -> [Knob; 11] {
    [
        int("layers", 1, KnobDefault::Int(12), "number of transformer blocks"),
        int("hidden", 1, KnobDefault::Int(768), "hidden size (embedding and block width)"),
        int("heads", 1, KnobDefault::Int(12), "attention heads; must divide hidden"),
        int("intermediate", 1, KnobDefault::Computed("4 * hidden"), "feed-forward inner size"),
        fraction("dropout", KnobDefault::Float(dropout), "dropout on embeddings and block outputs"),
        fraction("attention_dropout", KnobDefault::Computed("dropout"), "dropout on attention probabilities"),
        int("vocab_size", 1, KnobDefault::Computed("the tokenizer's vocabulary"), "word embedding rows; at least the tokenizer's vocabulary"),
        int("max_position", 1, KnobDefault::Int(512), "position embedding rows; at least data.seq_len"),
        int("type_vocab_size", 1, KnobDefault::Int(2), "token type (segment) embedding rows"),
        fraction("layer_norm_eps", KnobDefault::Float(1e-12), "LayerNorm epsilon"),
        fraction("initializer_range", KnobDefault::Float(0.02), "std of the normal initialisation of weights"),
    ]
}

/// Checks `given` against `schema` and completes it: `heads` must divide
/// `hidden`, `intermediate` defaults to 4 × hidden, `attention_dropout` to
/// `dropout`.
pub fn resolve_encoder(schema: &[Knob], given: &KnobValues) -> Result<KnobValues, KnobError> {
    let mut knobs = check_against(schema, given)?;
    let hidden = knobs["hidden"].as_i64().unwrap_or_default();
    let heads = knobs["heads"].as_i64().unwrap_or(1);
    if hidden % heads != 0 {
        return Err(KnobError::new("heads", format!("hidden ({hidden}) must be divisible by heads ({heads})")));
    }
    if !knobs.contains_key("intermediate") {
        knobs.insert("intermediate".into(), (4 * hidden).into());
    }
    if !knobs.contains_key("attention_dropout") {
        let dropout = knobs["dropout"].clone();
        knobs.insert("attention_dropout".into(), dropout);
    }
    Ok(knobs)
}
