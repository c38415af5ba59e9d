//! The devices training runs on: waiting for one, their names, and what
//! the driver says of its GPUs.
use std::path::PathBuf;
use tch::Device;

/// Waits for the work queued on `device` (a no-op on the CPU).
pub fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// A device as `train.device` writes it: `cpu`, `cuda:0`.
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    }
}

/// Whether CUDA device `index` computes bf16 natively (compute capability
/// 8.0 or later, as `torch.cuda.is_bf16_supported` checks). tch binds no
/// device properties, so the driver's tool answers; without it, assume a
/// current GPU.
pub fn native_bf16(index: usize) -> bool {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=compute_cap", "--format=csv,noheader", "-i", &index.to_string()])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().map_or(true, |capability| capability >= 8.0)
        }
        _ => true,
    }
}

/// GPU names as the NVIDIA driver reports them, in PCI bus order (CUDA's
/// order for identical devices): from /proc, else from nvidia-smi (some
/// sandboxes hide the driver's /proc folder). tch binds no device properties.
pub fn gpu_names() -> Vec<String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    let names: Vec<String> = entries
        .iter()
        .filter_map(|gpu| {
            let info = std::fs::read_to_string(gpu.join("information")).ok()?;
            let model = info.lines().find_map(|l| l.strip_prefix("Model:"))?;
            Some(model.trim().to_string())
        })
        .collect();
    if !names.is_empty() {
        return names;
    }
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
}
