//! One optimisation step of any objective, shared by pretraining,
//! fine-tuning and `bertlab bench`: forward under the trial's precision, backward (with loss
//! scaling in fp16), clip, fused AdamW. Nothing in it reads a value back to
//! the host, so on a GPU the CPU runs ahead queueing the next steps; the
//! loss comes back as a device tensor for the caller to read when it logs.
//! Over several ranks ([`super::ranks`]) the gradients are summed during
//! the last backward pass of the step, and the loss after it.
use super::optimizer::AdamW;
use super::precision::{LossScaler, Precision};
use super::ranks::Ranks;
use crate::config::TrainSection;
use crate::settings::PrecisionSetting;
use anyhow::Result;
use tch::{nn::VarStore, Device, Kind, Tensor};
use torch_ops::distributed::Reducer;

/// `'r`: the trial's ranks, when it trains on several.
pub struct Stepper<'r> {
    optimizer: AdamW,
    precision: Precision,
    scaler: Option<LossScaler>,
    device: Device,
    grad_clip: f64,
    replicas: Option<(&'r Ranks, Reducer)>,
}

impl<'r> Stepper<'r> {
    /// Steps for the model `plugin` built in `vs`, at the precision
    /// `train.precision` resolves to on its device, with TF32 as
    /// `train.tf32` says; weight decay where the plugin says; its
    /// gradients summed over `ranks` when given.
    pub fn new(vs: &VarStore, train: &TrainSection, plugin: &dyn models::Plugin, ranks: Option<&'r Ranks>) -> Result<Stepper<'r>> {
        let device = vs.device();
        // Checked when the experiment was loaded.
        let setting = PrecisionSetting::parse(&train.precision).map_err(anyhow::Error::msg)?;
        let precision = Precision::resolve(setting, device);
        torch_ops::allow_tf32(train.tf32)?;
        let optimizer = AdamW::new(vs, train, &|name| plugin.decays(name));
        let replicas = match ranks {
            Some(ranks) => Some((ranks, ranks.reducer(&optimizer.params().collect::<Vec<_>>())?)),
            None => None,
        };
        Ok(Stepper {
            optimizer,
            scaler: (precision == Precision::Fp16).then(|| LossScaler::new(device)),
            precision,
            device,
            grad_clip: train.grad_clip,
            replicas,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The ranks the gradients are summed over, when the trial has several.
    pub fn ranks(&self) -> Option<&'r Ranks> {
        self.replicas.as_ref().map(|(ranks, _)| *ranks)
    }

    /// The optimiser's and the loss scaler's state, named for a checkpoint:
    /// the tensors themselves, which a restore copies into.
    pub fn state(&self) -> Vec<(String, tch::Tensor)> {
        let mut state = self.optimizer.state();
        state.extend(self.scaler.iter().flat_map(LossScaler::state));
        state
    }

    /// Trains on the loss of one batch at learning rate `lr`: `parts`
    /// forward and backward passes (gradient accumulation when more than
    /// one), part `i`'s loss from `forward(i)`, each already its share of
    /// the whole batch's, so the gradients add up to the whole batch's
    /// (over the ranks, with this rank's parts of it: maybe none).
    /// Returns the whole batch's loss as a 0-dim fp32 tensor on the device,
    /// detached from the graph.
    pub fn step(&mut self, parts: usize, mut forward: impl FnMut(usize) -> Tensor, lr: f64) -> Result<Tensor> {
        self.optimizer.zero_grad()?;
        let mut total: Option<Tensor> = None;
        for part in 0..parts {
            if let Some((_, reducer)) = self.replicas.as_ref().filter(|_| part + 1 == parts) {
                reducer.arm()?;
            }
            let loss = self.precision.forward(self.device, || forward(part))?;
            match &self.scaler {
                None => loss.backward(),
                Some(scaler) => scaler.scale(&loss).backward(),
            }
            let loss = loss.detach();
            total = Some(match total {
                None => loss,
                Some(sum) => sum + loss,
            });
        }
        let total = total.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, self.device)));
        if let Some((ranks, reducer)) = &self.replicas {
            if parts == 0 {
                reducer.arm()?;
            }
            ranks.exchange(reducer)?;
            ranks.sum(&total)?;
        }
        let found_inf = match &mut self.scaler {
            None => None,
            Some(scaler) => Some(scaler.unscale(&self.optimizer.grads())?.shallow_clone()),
        };
        if self.grad_clip > 0.0 {
            let _norm_before_clipping = self.optimizer.clip_grad_norm(self.grad_clip)?;
        }
        self.optimizer.step(lr, found_inf.as_ref())?;
        if let Some(scaler) = &mut self.scaler {
            scaler.update();
        }
        Ok(total)
    }
}
