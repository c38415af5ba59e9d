//! The layout of a run folder and the per-trial files in it.
use crate::trial::Trial;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The trials table's file name in a run folder.
pub const TRIALS_FILE: &str = "trials.parquet";

#[derive(Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn create(root: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(root.join("trials")).with_context(|| format!("creating {}", root.display()))?;
        Ok(RunDir { root: root.to_owned() })
    }

    pub fn trials_path(&self) -> PathBuf {
        self.root.join(TRIALS_FILE)
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.parquet")
    }

    pub fn trial_dir(&self, trial_id: &str) -> PathBuf {
        self.root.join("trials").join(trial_id)
    }

    /// `trials/<id>/config.toml`: the fully resolved configuration as an
    /// experiment file of one trial, so `bertlab run` can rerun it alone.
    pub fn write_trial_config(&self, experiment: &str, trial: &Trial) -> Result<()> {
        let dir = self.trial_dir(&trial.id);
        std::fs::create_dir_all(&dir)?;
        let header = format!("# bertlab trial {} of {experiment}: {}\n", trial.id, trial.label());
        let config = &trial.config;
        let mut model = config.model.clone();
        if let Some(init) = &config.init {
            model.insert("init".into(), init.clone().into());
        }
        let mut experiment_table = serde_json::json!({ "name": format!("{experiment}-{}", trial.id), "model": config.plugin, "seeds": [config.seed] });
        if !config.task.is_mlm() {
            experiment_table["task"] = serde_json::to_value(config.task)?;
        }
        let file = serde_json::json!({
            "experiment": experiment_table,
            "model": model,
            "data": config.data,
            "train": config.train,
        });
        let body = toml::to_string(&file).context("serialising the trial config")?;
        std::fs::write(dir.join("config.toml"), header + &body)?;
        std::fs::File::create(dir.join("log.txt"))?;
        Ok(())
    }

    /// Appends a line to `trials/<id>/log.txt`. Logging must never fail a
    /// trial, so errors are ignored.
    pub fn log(&self, trial_id: &str, line: &str) {
        let path = self.trial_dir(trial_id).join("log.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}
