//! AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, skipping
//! biases and LayerNorm parameters as BERT does, plus global-norm gradient
//! clipping. Written over the VarStore's tensors rather than with
//! `tch::nn::AdamW` because the latter cannot exclude parameters from decay
//! by name once they exist.
use crate::config::TrainSection;
use tch::{nn::VarStore, Tensor};

struct Param {
    value: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

pub struct AdamW {
    params: Vec<Param>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: i32,
}

/// Biases and LayerNorm weights are not decayed.
pub fn decays(name: &str) -> bool {
    !(name.ends_with("bias") || name.contains("LayerNorm"))
}

impl AdamW {
    pub fn new(vs: &VarStore, train: &TrainSection) -> AdamW {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        // The VarStore's map has no order; a fixed one keeps runs reproducible.
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, value)| Param {
                exp_avg: value.zeros_like(),
                exp_avg_sq: value.zeros_like(),
                decay: decays(&name),
                value,
            })
            .collect();
        AdamW {
            params,
            beta1: train.adam_beta1,
            beta2: train.adam_beta2,
            eps: train.adam_eps,
            weight_decay: train.weight_decay,
            step: 0,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.value.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`;
    /// returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.value.grad()).filter(Tensor::defined).collect();
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = f64::try_from(Tensor::stack(&norms, 0).norm()).unwrap_or(f64::NAN);
        if max_norm > 0.0 && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        total
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bias_correction1 = 1.0 - b1.powi(self.step);
        let bias_correction2 = 1.0 - b2.powi(self.step);
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.value.grad();
                if !grad.defined() {
                    continue;
                }
                let _ = p.exp_avg.g_mul_scalar_(b1).g_add_(&(&grad * (1.0 - b1)));
                let _ = p.exp_avg_sq.g_mul_scalar_(b2).addcmul_(&(&grad * (1.0 - b2)), &grad);
                if p.decay && self.weight_decay > 0.0 {
                    let _ = p.value.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let denom = (&p.exp_avg_sq / bias_correction2).sqrt() + self.eps;
                let _ = p.value.g_add_(&(&p.exp_avg / denom * (-lr / bias_correction1)));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn decay_skips_biases_and_layer_norms() {
        assert!(decays("bert.encoder.layer.0.attention.self.query.weight"));
        assert!(!decays("bert.encoder.layer.0.attention.self.query.bias"));
        assert!(!decays("bert.embeddings.LayerNorm.weight"));
        assert!(!decays("cls.predictions.bias"));
    }

    #[test]
    fn matches_the_adamw_update_rule() {
        // One parameter, constant gradient g: after one step Adam moves it by
        // exactly lr (m̂ = g, v̂ = g²), after decoupled decay of lr·wd·x.
        let vs = VarStore::new(Device::Cpu);
        let x = vs.root().var("weight", &[1], nn::Init::Const(2.0));
        let train = TrainSection { weight_decay: 0.1, adam_eps: 1e-12, ..TrainSection::default() };
        let mut opt = AdamW::new(&vs, &train);
        (&x * 3.0).sum(Kind::Float).backward();
        opt.step(0.01);
        let expected = 2.0 * (1.0 - 0.01 * 0.1) - 0.01;
        assert!((f64::try_from(&x.sum(Kind::Float)).unwrap() - expected).abs() < 1e-6);
    }
}
