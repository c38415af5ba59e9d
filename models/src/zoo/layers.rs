//! The layers every model of the zoo builds the same way, kept beside the
//! models as candle keeps `with_tracing.rs`: BERT's initialisation (normal
//! weights with `initializer_range`, zero biases, unit LayerNorm gains), the
//! padding mask and the multi-head attention through libtorch's fused
//! kernel, and the weight-decay rule (biases and normalisation gains are not
//! decayed, as in BERT's optimiser).
use tch::nn;
use tch::{Kind, Tensor};

/// The module at the dotted path `dotted` under `root` (`bert.pooler`).
pub fn at<'a>(root: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted.split('.').fold(root.clone(), |path, part| &path / part)
}

/// BERT's initialisation of a layer's weights: a normal draw with standard
/// deviation `initializer_range`.
fn normal(initializer_range: f64) -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev: initializer_range }
}

/// A linear layer with BERT's initialisation; `bias` false leaves it out
/// (Cramming's linear layers have none).
pub fn linear(p: nn::Path, n_in: i64, n_out: i64, initializer_range: f64, bias: bool) -> nn::Linear {
    let config = nn::LinearConfig { ws_init: normal(initializer_range), bs_init: Some(nn::Init::Const(0.0)), bias };
    nn::linear(p, n_in, n_out, config)
}

pub fn layer_norm(p: nn::Path, hidden: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![hidden], nn::LayerNormConfig { eps, ..Default::default() })
}

pub fn embedding(p: nn::Path, rows: i64, hidden: i64, initializer_range: f64) -> nn::Embedding {
    nn::embedding(p, rows, hidden, nn::EmbeddingConfig { ws_init: normal(initializer_range), ..Default::default() })
}

/// The encoder input's `[batch, seq]` padding mask (1 real, 0 padding) as
/// the `[batch, 1, 1, seq]` booleans attention broadcasts over heads and
/// queries: true where a query may look.
pub fn attention_mask(mask: Option<&Tensor>) -> Option<Tensor> {
    mask.map(|m| m.to_kind(Kind::Bool).unsqueeze(1).unsqueeze(1))
}

/// Multi-head self-attention from the fused projections `qkv`
/// (`[batch, seq, 3 * hidden]`, query then key then value) over `heads`
/// heads, through libtorch's fused `scaled_dot_product_attention` (flash,
/// memory-efficient or math, chosen per device; scale 1/sqrt(head size), as
/// in BERT). Returns the context, `[batch, seq, hidden]`. `dropout` applies
/// to the attention probabilities; pass 0 outside training.
pub fn attend(qkv: &Tensor, heads: i64, mask: Option<&Tensor>, dropout: f64) -> Tensor {
    let (batch, seq, width) = qkv.size3().expect("projections are [batch, seq, 3 * hidden]");
    let hidden = width / 3;
    // [batch, seq, 3, heads, head size] -> three [batch, heads, seq, head size]
    let qkv = qkv.view([batch, seq, 3, heads, hidden / heads]).permute([2, 0, 3, 1, 4]);
    let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
    let context = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, dropout, false, None, false);
    context.transpose(1, 2).contiguous().view([batch, seq, hidden])
}

/// Whether AdamW's weight decay applies to `variable`: not to a bias, nor
/// to any parameter of a normalisation layer, which a plugin names by the
/// module names in `norms` (the last module in the variable's dotted path).
/// Every other weight (matrices, embeddings) is decayed, as in BERT.
pub fn decays(variable: &str, norms: &[&str]) -> bool {
    let mut parts = variable.rsplit('.');
    let leaf = parts.next();
    let module = parts.next();
    leaf != Some("bias") && !module.is_some_and(|m| norms.contains(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_skips_biases_and_the_named_norms_only() {
        let norms = ["LayerNorm", "final_norm"];
        assert!(decays("bert.encoder.layer.0.attention.self.query.weight", &norms));
        assert!(decays("bert.embeddings.word_embeddings.weight", &norms));
        assert!(!decays("bert.encoder.layer.0.attention.self.query.bias", &norms));
        assert!(!decays("bert.embeddings.LayerNorm.weight", &norms));
        assert!(!decays("final_norm.weight", &norms));
        assert!(!decays("cls.predictions.bias", &norms));
        // A module merely containing a norm's name is not a norm.
        assert!(decays("layers.0.final_norm_proj.weight", &norms));
    }
}
