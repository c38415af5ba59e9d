//! `train.precision`: `fp32`, `bf16`, `fp16`, or `auto` (decided per device
//! by `train::precision`).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionSetting {
    Fp32,
    Bf16,
    Fp16,
    Auto,
}

const NAMES: [(&str, PrecisionSetting); 4] =
    [("fp32", PrecisionSetting::Fp32), ("bf16", PrecisionSetting::Bf16), ("fp16", PrecisionSetting::Fp16), ("auto", PrecisionSetting::Auto)];

impl PrecisionSetting {
    pub fn parse(text: &str) -> Result<PrecisionSetting, String> {
        NAMES.iter().find(|(name, _)| *name == text).map(|(_, setting)| *setting).ok_or_else(|| {
            let names: Vec<&str> = NAMES.iter().map(|(name, _)| *name).collect();
            format!("`{text}` is not one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_names_only() {
        assert_eq!(PrecisionSetting::parse("bf16"), Ok(PrecisionSetting::Bf16));
        assert_eq!(PrecisionSetting::parse("auto"), Ok(PrecisionSetting::Auto));
        assert_eq!(PrecisionSetting::parse("fp64").unwrap_err(), "`fp64` is not one of fp32, bf16, fp16, auto");
    }
}
