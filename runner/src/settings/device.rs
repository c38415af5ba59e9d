//! `train.device` (and `--device`): `auto`, `cpu`, `cuda` or `cuda:N`.

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeviceSpec {
    /// The first CUDA device if there is one, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
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
    pub fn resolve(self) -> Result<tch::Device, String> {
        let count = tch::Cuda::device_count() as usize;
        match self {
            DeviceSpec::Auto if count > 0 => Ok(tch::Device::Cuda(0)),
            DeviceSpec::Auto | DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Cuda(n) if n < count => Ok(tch::Device::Cuda(n)),
            DeviceSpec::Cuda(n) => Err(format!("cuda:{n} requested but libtorch sees {count} CUDA device(s) (see `bertlab doctor`)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(DeviceSpec::parse("auto"), Ok(DeviceSpec::Auto));
        assert_eq!(DeviceSpec::parse("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(DeviceSpec::parse("cuda:3"), Ok(DeviceSpec::Cuda(3)));
        assert!(DeviceSpec::parse("gpu").is_err());
        assert!(DeviceSpec::parse("cuda:x").is_err());
    }
}
