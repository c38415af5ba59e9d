//! `[launch]` and `[launch.slurm]`: where a sweep's trials train (this
//! machine, or a Slurm cluster's job array) and what the cluster is asked
//! for. Not part of any trial's configuration: the same trial trains the
//! same wherever it runs, so these keys never change a trial id.
use crate::error::InputError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Launcher {
    /// This machine, in this process or `--jobs` workers.
    #[default]
    Local,
    /// One Slurm job array over the trials, through `sbatch`.
    Slurm,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaunchSection {
    pub launcher: Launcher,
    pub slurm: SlurmSection,
}

/// What each array task asks Slurm for; unset keys are left to the
/// cluster's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// Per task, in Slurm's syntax (`90`, `1:30:00`, `2-00:00:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Also libtorch's threads in the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// In Slurm's syntax (`16G`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<u32>,
    /// Tasks of the array running at once (`--array=...%N`); with early
    /// stopping or a search, the array's worker tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// Seconds before the time limit at which Slurm warns the task
    /// (SIGUSR1), which then checkpoints and requeues itself.
    pub signal_lead: u32,
    /// Passed to `sbatch` as they are.
    pub sbatch_args: Vec<String>,
}

impl Default for SlurmSection {
    fn default() -> Self {
        SlurmSection {
            partition: None,
            account: None,
            qos: None,
            time: None,
            cpus_per_task: None,
            mem: None,
            gpus_per_task: None,
            max_parallel: None,
            signal_lead: 120,
            sbatch_args: Vec::new(),
        }
    }
}

impl LaunchSection {
    pub fn check(&self) -> Result<(), InputError> {
        let slurm = &self.slurm;
        let key = |name: &str| format!("launch.slurm.{name}");
        let time = match &slurm.time {
            Some(text) => Some(slurm_seconds(text).ok_or_else(|| {
                InputError::at_key(key("time"), format!("`{text}` is not a Slurm time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"))
            })?),
            None => None,
        };
        if let Some(seconds) = time.filter(|&s| u64::from(slurm.signal_lead) >= s) {
            return Err(InputError::at_key(key("signal_lead"), format!("{} s is not shorter than launch.slurm.time ({seconds} s): the warning would come before the task starts", slurm.signal_lead)));
        }
        for (name, value) in [("cpus_per_task", slurm.cpus_per_task), ("max_parallel", slurm.max_parallel)] {
            if value == Some(0) {
                return Err(InputError::at_key(key(name), "must be at least 1"));
            }
        }
        for (name, value) in [("partition", &slurm.partition), ("account", &slurm.account), ("qos", &slurm.qos), ("mem", &slurm.mem)] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty() || v.contains(char::is_whitespace)) {
                return Err(InputError::at_key(key(name), "must be one word"));
            }
        }
        Ok(())
    }
}

/// A Slurm time limit in seconds (Slurm counts whole minutes, rounding
/// `MM:SS` up); `None` if it is not in one of Slurm's forms.
pub fn slurm_seconds(text: &str) -> Option<u64> {
    let number = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (Some(number(d)?), rest),
        None => (None, text),
    };
    let parts: Vec<u64> = rest.split(':').map(number).collect::<Option<_>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    (seconds > 0).then(|| seconds.div_ceil(60) * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_forms() {
        assert_eq!(slurm_seconds("90"), Some(5400));
        assert_eq!(slurm_seconds("1:30"), Some(120));
        assert_eq!(slurm_seconds("1:30:00"), Some(5400));
        assert_eq!(slurm_seconds("2-00"), Some(172_800));
        assert_eq!(slurm_seconds("1-02:03"), Some(93_780));
        assert_eq!(slurm_seconds("1-00:00:30"), Some(86_460));
        for bad in ["", "1h", "1:2:3:4", "-5", "0", "a-1"] {
            assert_eq!(slurm_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_warning_must_come_before_the_limit() {
        let mut launch = LaunchSection::default();
        launch.slurm.time = Some("2".into());
        launch.slurm.signal_lead = 60;
        assert!(launch.check().is_ok());
        launch.slurm.signal_lead = 120;
        assert!(launch.check().unwrap_err().message.contains("not shorter"));
    }
}
