//! `train.precision`: fp32, bf16 or fp16 mixed precision, or auto (bf16 on a
//! GPU that computes it natively, fp32 on the CPU). Mixed precision keeps
//! fp32 master weights and optimiser state and runs the forward pass under
//! autocast, as `torch.autocast` does; fp16 also scales the loss so small
//! gradients survive (`torch.amp.GradScaler`'s dynamic scaling).
use super::device;
use crate::settings::PrecisionSetting;
use anyhow::Result;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    /// The precision a trial on `device` runs at.
    pub fn resolve(setting: PrecisionSetting, device: Device) -> Precision {
        match setting {
            PrecisionSetting::Fp32 => Precision::Fp32,
            PrecisionSetting::Bf16 => Precision::Bf16,
            PrecisionSetting::Fp16 => Precision::Fp16,
            PrecisionSetting::Auto => match device {
                Device::Cuda(index) if device::native_bf16(index) => Precision::Bf16,
                _ => Precision::Fp32,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// Runs the forward pass `f` at this precision.
    pub fn forward<T>(self, device: Device, f: impl FnOnce() -> T) -> Result<T> {
        Ok(match self {
            Precision::Fp32 => f(),
            Precision::Bf16 => torch_ops::autocast(device, Kind::BFloat16, f)?,
            Precision::Fp16 => torch_ops::autocast(device, Kind::Half, f)?,
        })
    }
}

/// Dynamic loss scaling for fp16, with GradScaler's defaults: start at
/// 2^16, halve on an overflow (and skip that update), double after 2000
/// clean steps. Everything stays on the device.
pub struct LossScaler {
    scale: Tensor,
    growth_tracker: Tensor,
    found_inf: Tensor,
}

impl LossScaler {
    pub fn new(device: Device) -> LossScaler {
        LossScaler {
            scale: Tensor::full([1], 65536.0, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
            found_inf: Tensor::zeros([1], (Kind::Float, device)),
        }
    }

    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale
    }

    /// Unscales `grads` in place; returns the overflow flag the optimiser
    /// step must honour.
    pub fn unscale(&mut self, grads: &[Tensor]) -> Result<&Tensor> {
        let _ = self.found_inf.zero_();
        let inv_scale = self.scale.reciprocal();
        torch_ops::unscale(&grads.iter().collect::<Vec<_>>(), &self.found_inf, &inv_scale)?;
        Ok(&self.found_inf)
    }

    /// The scale and the count of clean steps, named for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![("scaler/scale".into(), self.scale.shallow_clone()), ("scaler/growth_tracker".into(), self.growth_tracker.shallow_clone())]
    }

    /// Adjusts the scale after a step, from that step's overflow flag.
    pub fn update(&mut self) {
        let _ = self.scale.internal_amp_update_scale_(&self.growth_tracker, &self.found_inf, 2.0, 0.5, 2000);
    }
}
