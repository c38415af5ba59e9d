//! AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, skipping
//! the parameters the model's plugin says are not decayed (biases and
//! normalisation gains, as BERT does), plus global-norm gradient
//! clipping. Each update is libtorch's fused multi-tensor AdamW kernel, once
//! per group (decayed, not decayed), as `torch.optim.AdamW(fused=True)`:
//! a handful of kernel launches per step instead of several per parameter,
//! and no value read back to the host, so a GPU never waits on the CPU.
use crate::config::TrainSection;
use anyhow::Result;
use tch::{nn::VarStore, Kind, Tensor};
use torch_ops::{AdamWGroup, AdamWHyper};

/// Parameters sharing a weight decay, with their optimiser state.
struct Group {
    /// The parameters' names in the VarStore, which name their state in a
    /// checkpoint.
    names: Vec<String>,
    params: Vec<Tensor>,
    exp_avgs: Vec<Tensor>,
    exp_avg_sqs: Vec<Tensor>,
    /// Per-parameter step counters, on the device, where the fused kernel
    /// reads them.
    steps: Vec<Tensor>,
    weight_decay: f64,
}

impl Group {
    fn new(named: Vec<(String, Tensor)>, weight_decay: f64) -> Group {
        let (names, params): (Vec<String>, Vec<Tensor>) = named.into_iter().unzip();
        Group {
            names,
            exp_avgs: params.iter().map(Tensor::zeros_like).collect(),
            exp_avg_sqs: params.iter().map(Tensor::zeros_like).collect(),
            steps: params.iter().map(|p| Tensor::zeros([], (Kind::Float, p.device()))).collect(),
            params,
            weight_decay,
        }
    }
}

pub struct AdamW {
    groups: [Group; 2],
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl AdamW {
    /// The optimiser of the trainable variables of `vs`; `decays` says
    /// which of them weight decay applies to (the plugin's
    /// [`models::Plugin::decays`]).
    pub fn new(vs: &VarStore, train: &TrainSection, decays: &dyn Fn(&str) -> bool) -> AdamW {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        // The VarStore's map has no order; a fixed one keeps runs reproducible.
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (decayed, plain): (Vec<_>, Vec<_>) = named.into_iter().partition(|(name, _)| decays(name));
        AdamW {
            groups: [Group::new(decayed, train.weight_decay), Group::new(plain, 0.0)],
            beta1: train.adam_beta1,
            beta2: train.adam_beta2,
            eps: train.adam_eps,
        }
    }

    /// Every parameter's moments and step count, named for a checkpoint
    /// (`optimizer/exp_avg/<parameter>`, ...).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for group in &self.groups {
            for (i, name) in group.names.iter().enumerate() {
                out.push((format!("optimizer/exp_avg/{name}"), group.exp_avgs[i].shallow_clone()));
                out.push((format!("optimizer/exp_avg_sq/{name}"), group.exp_avg_sqs[i].shallow_clone()));
                out.push((format!("optimizer/step/{name}"), group.steps[i].shallow_clone()));
            }
        }
        out
    }

    /// The trainable parameters, in the optimiser's order.
    pub fn params(&self) -> impl Iterator<Item = &Tensor> {
        self.groups.iter().flat_map(|g| g.params.iter())
    }

    /// Drops the gradients before a backward pass (set to none rather than
    /// zeroed, as PyTorch's default).
    pub fn zero_grad(&mut self) -> Result<()> {
        Ok(torch_ops::clear_grads(&self.params().collect::<Vec<_>>())?)
    }

    /// The gradients of every parameter that has one.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params().map(Tensor::grad).filter(Tensor::defined).collect()
    }

    /// Scales gradients so their global L2 norm is at most `max_norm` (0:
    /// no clipping); returns the norm before clipping, left on the device.
    pub fn clip_grad_norm(&self, max_norm: f64) -> Result<Tensor> {
        let grads = self.grads();
        Ok(torch_ops::clip_grad_norm(&grads.iter().collect::<Vec<_>>(), max_norm)?)
    }

    /// One update at learning rate `lr`; with `found_inf` (mixed precision
    /// with loss scaling) the device skips it when a gradient overflowed.
    pub fn step(&mut self, lr: f64, found_inf: Option<&Tensor>) -> Result<()> {
        for group in &self.groups {
            let with_grad: Vec<usize> = (0..group.params.len()).filter(|&i| group.params[i].grad().defined()).collect();
            let grads: Vec<Tensor> = with_grad.iter().map(|&i| group.params[i].grad()).collect();
            fn pick<'a>(tensors: &'a [Tensor], indices: &[usize]) -> Vec<&'a Tensor> {
                indices.iter().map(|&i| &tensors[i]).collect()
            }
            let fused = AdamWGroup {
                params: pick(&group.params, &with_grad),
                grads: grads.iter().collect(),
                exp_avgs: pick(&group.exp_avgs, &with_grad),
                exp_avg_sqs: pick(&group.exp_avg_sqs, &with_grad),
                steps: pick(&group.steps, &with_grad),
            };
            let hyper = AdamWHyper { lr, beta1: self.beta1, beta2: self.beta2, weight_decay: group.weight_decay, eps: self.eps };
            tch::no_grad(|| torch_ops::fused_adamw(&fused, &hyper, found_inf))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn matches_the_adamw_update_rule() {
        // One parameter, constant gradient g: after one step Adam moves it by
        // exactly lr (m̂ = g, v̂ = g²), after decoupled decay of lr·wd·x.
        let vs = VarStore::new(Device::Cpu);
        let x = vs.root().var("weight", &[1], nn::Init::Const(2.0));
        let train = TrainSection { weight_decay: 0.1, adam_eps: 1e-12, ..TrainSection::default() };
        let mut opt = AdamW::new(&vs, &train, &|_| true);
        (&x * 3.0).sum(Kind::Float).backward();
        opt.step(0.01, None).unwrap();
        let expected = 2.0 * (1.0 - 0.01 * 0.1) - 0.01;
        let got = f64::try_from(&x.sum(Kind::Float)).unwrap();
        assert!((got - expected).abs() < 1e-6, "{got} != {expected}");
    }

    /// One step from the same initial weights with and without weight
    /// decay: only the matrices (weights of two or more dimensions) may
    /// differ; biases and normalisation gains (one dimension) must be equal.
    /// The dimension is the oracle, independent of the names the plugin
    /// judges by, for the masked-LM model with its next-sentence head and
    /// for the classifier.
    #[test]
    fn every_plugin_decays_its_matrices_and_not_its_norms_or_biases() {
        use models::heads::NextSentenceHead;
        use models::EncoderInput;
        use std::collections::HashMap;
        let ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10, 11, 12]).view([2, 4]);
        let input = || EncoderInput { input_ids: ids.copy(), token_type_ids: Tensor::from_slice(&[0i64, 0, 1, 1, 0, 0, 1, 1]).view([2, 4]), attention_mask: None };
        for plugin in models::registry::all() {
            let given = serde_json::json!({"layers": 1, "hidden": 16, "heads": 2, "vocab_size": 40, "max_position": 8, "dropout": 0.0});
            let knobs = plugin.resolve(given.as_object().unwrap()).unwrap();
            let pretraining = |root: &nn::Path| -> Box<dyn Fn() -> Tensor> {
                let model = plugin.build(root, &knobs).unwrap();
                let pooler = plugin.pooler(root);
                let head = NextSentenceHead::new(root, &pooler, &knobs).unwrap();
                Box::new(move || {
                    let hidden = model.encode(&input(), true);
                    model.mlm_logits(&hidden).sum(Kind::Float) + head.logits(&hidden).sum(Kind::Float)
                })
            };
            let classifier = |root: &nn::Path| -> Box<dyn Fn() -> Tensor> {
                let model = plugin.build_classifier(root, &knobs, 3).unwrap();
                Box::new(move || model.logits(&input(), true).sum(Kind::Float))
            };
            let builders: [(&str, &dyn Fn(&nn::Path) -> Box<dyn Fn() -> Tensor>); 2] = [("masked-LM with next-sentence head", &pretraining), ("classifier", &classifier)];
            for (what, build) in builders {
                // Both runs start from the weights of `initial`, copied: the
                // global seed is no help, as tests running alongside draw
                // from the same generator.
                let initial = VarStore::new(Device::Cpu);
                let _ = build(&initial.root());
                let stepped = |weight_decay: f64| -> HashMap<String, Tensor> {
                    let mut vs = VarStore::new(Device::Cpu);
                    let loss = build(&vs.root());
                    vs.copy(&initial).unwrap();
                    let train = TrainSection { weight_decay, ..TrainSection::default() };
                    let mut opt = AdamW::new(&vs, &train, &|name| plugin.decays(name));
                    loss().backward();
                    opt.step(0.1, None).unwrap();
                    vs.variables()
                };
                let (plain, decayed) = (stepped(0.0), stepped(0.5));
                assert!(plain.len() > 10);
                for (name, without) in &plain {
                    let with = &decayed[name];
                    let matrix = without.dim() >= 2;
                    assert_eq!(without.equal(with), !matrix, "{} {what}: {name} ({}-D) {}", plugin.name(), without.dim(), if matrix { "was not decayed" } else { "was decayed" });
                }
            }
        }
    }
}
