//! `train.device`: `auto` (the first CUDA device if there is one, else the
//! CPU), `cpu`, `cuda` or `cuda:N`.
use std::path::PathBuf;
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

pub fn parse(text: &str) -> Result<DeviceSpec, String> {
    match text {
        "auto" => Ok(DeviceSpec::Auto),
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        _ => text
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceSpec::Cuda)
            .ok_or_else(|| format!("`{text}` is not one of auto, cpu, cuda, cuda:N")),
    }
}

/// The device to train on; an error if CUDA is asked for and absent.
pub fn resolve(spec: DeviceSpec) -> Result<Device, String> {
    let count = tch::Cuda::device_count() as usize;
    match spec {
        DeviceSpec::Auto if count > 0 => Ok(Device::Cuda(0)),
        DeviceSpec::Auto | DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) if n < count => Ok(Device::Cuda(n)),
        DeviceSpec::Cuda(n) => Err(format!("cuda:{n} requested but libtorch sees {count} CUDA device(s) (see `bertlab doctor`)")),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("auto"), Ok(DeviceSpec::Auto));
        assert_eq!(parse("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(parse("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert!(parse("gpu").is_err());
        assert!(parse("cuda:x").is_err());
    }
}
