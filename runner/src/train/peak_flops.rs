//! The peak FLOP rate model FLOPs utilisation (MFU) divides by: the
//! vendor's dense figure for the GPUs we know, at the precision the matrix
//! products run at, else a rate measured here with a large matrix product
//! (the CPU's case, whose peak depends on cores, clocks and vector units).
use super::device;
use super::precision::Precision;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub struct Peak {
    pub flops: f64,
    /// Where the figure comes from, for the reader of the benchmark.
    pub source: String,
}

/// Dense tensor-core rates in TFLOP/s from NVIDIA's data sheets (without
/// sparsity): bf16/fp16, tf32, plain fp32. Matched by substring of the
/// device name, first match wins: the H100 variants precede plain "H100".
const DATA_SHEETS: [(&str, [f64; 3]); 5] = [
    ("H100 PCIe", [756.0, 378.0, 51.2]),
    ("H100 NVL", [835.0, 418.0, 60.0]),
    ("H100", [989.4, 494.7, 66.9]),
    ("H200", [989.4, 494.7, 66.9]),
    ("A100", [312.0, 156.0, 19.5]),
];

/// The peak of `target`, named `device_name` (as [`device::gpu_names`]
/// gives it for a GPU).
pub fn peak(target: Device, device_name: &str, precision: Precision, tf32: bool) -> Peak {
    let column = match precision {
        Precision::Bf16 | Precision::Fp16 => 0,
        Precision::Fp32 if tf32 => 1,
        Precision::Fp32 => 2,
    };
    if target.is_cuda() {
        if let Some((model, rates)) = DATA_SHEETS.iter().find(|(model, _)| device_name.contains(model)) {
            let mode = ["bf16/fp16", "tf32", "fp32"][column];
            return Peak { flops: rates[column] * 1e12, source: format!("NVIDIA {model} data sheet, dense {mode}") };
        }
    }
    measured(target, precision)
}

/// The best of several timed square matrix products at the precision's
/// dtype.
fn measured(target: Device, precision: Precision) -> Peak {
    let (n, kind) = match (target, precision) {
        (Device::Cpu, Precision::Fp32) => (1024, Kind::Float),
        (Device::Cpu, _) => (1024, Kind::BFloat16),
        (_, Precision::Fp32) => (8192, Kind::Float),
        (_, Precision::Bf16) => (8192, Kind::BFloat16),
        (_, Precision::Fp16) => (8192, Kind::Half),
    };
    let a = Tensor::randn([n, n], (kind, target));
    let mut best = f64::INFINITY;
    for _ in 0..8 {
        device::synchronize(target);
        let started = Instant::now();
        let _ = a.matmul(&a);
        device::synchronize(target);
        best = best.min(started.elapsed().as_secs_f64());
    }
    let flops = 2.0 * (n as f64).powi(3) / best;
    Peak { flops, source: format!("measured here: best of 8 {n}×{n} {kind:?} matrix products") }
}
