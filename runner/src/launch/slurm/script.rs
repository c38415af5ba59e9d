//! The batch script of one job array: `#SBATCH` lines from
//! `[launch.slurm]`, then the task's trial picked from the array's trial
//! list by `SLURM_ARRAY_TASK_ID` and `exec bertlab run ... --slurm-task`,
//! so the task's process is the one Slurm signals. A trial on several
//! devices is a job step of as many tasks (`exec srun bertlab run ...`):
//! srun passes the signal on to each, and they meet as the ranks of
//! `launch::world`. Readable, and re-submittable by hand with `sbatch`.
use crate::config::launch::SlurmSection;
use std::path::Path;

/// What goes into one script besides `[launch.slurm]`.
pub struct Script<'a> {
    pub job_name: &'a str,
    pub tasks: usize,
    /// Processes per array task: the ranks of its trial (`train.devices`).
    pub ranks: usize,
    /// Where `%A_%a.out` goes.
    pub logs: &'a Path,
    /// One trial id per line, in task order; none for an array of workers.
    pub trial_list: Option<&'a Path>,
    /// The folder the task starts in (the one `run` was given its paths in).
    pub workdir: &'a Path,
    /// Environment the task needs whatever sbatch's `--export` says.
    pub exports: &'a [(String, String)],
    /// `bertlab run ...` without the trial (the script appends it).
    pub command: &'a [String],
}

impl Script<'_> {
    pub fn render(&self, slurm: &SlurmSection) -> String {
        let what = match self.trial_list {
            Some(list) => format!("one array task per line of {}", list.display()),
            None => "each array task is a worker that trains what the sweep's early stopping or search gives it next".into(),
        };
        let mut lines = vec![
            "#!/bin/bash".to_string(),
            format!("# Written by `bertlab run --launcher slurm`: {what}."),
            "# Re-submit by hand with `sbatch` on this file; a task with nothing left to train".into(),
            "# (its trials completed, or held by another process) exits at once.".into(),
            format!("#SBATCH --job-name={}", self.job_name),
            format!("#SBATCH --array=0-{}{}", self.tasks.saturating_sub(1), slurm.max_parallel.map(|n| format!("%{n}")).unwrap_or_default()),
            format!("#SBATCH --output={}/%A_%a.out", self.logs.display()),
            // A requeued task writes on after its earlier runs.
            "#SBATCH --open-mode=append".into(),
            "#SBATCH --requeue".into(),
            // B: the batch shell, which is bertlab itself, or srun, which
            // passes it on to each rank (exec below).
            format!("#SBATCH --signal=B:USR1@{}", slurm.signal_lead),
            format!("#SBATCH --ntasks={}", self.ranks),
        ];
        let optional = [
            ("partition", slurm.partition.clone()),
            ("account", slurm.account.clone()),
            ("qos", slurm.qos.clone()),
            ("time", slurm.time.clone()),
            ("cpus-per-task", slurm.cpus_per_task.map(|n| n.to_string())),
            ("mem", slurm.mem.clone()),
            ("gpus-per-task", slurm.gpus_per_task.map(|n| n.to_string())),
        ];
        lines.extend(optional.into_iter().filter_map(|(flag, value)| value.map(|v| format!("#SBATCH --{flag}={v}"))));
        lines.extend(slurm.sbatch_args.iter().map(|arg| format!("#SBATCH {arg}")));
        lines.push("set -euo pipefail".into());
        for (name, value) in self.exports {
            lines.push(format!("export {name}={}", quote(value)));
        }
        lines.push(format!("cd {}", quote(&self.workdir.display().to_string())));
        let mut command: Vec<String> = self.command.iter().map(|arg| quote(arg)).collect();
        if self.ranks > 1 {
            // One rank per task; a rank that fails ends the step.
            command.splice(0..0, ["srun".to_string(), "--kill-on-bad-exit=1".to_string()]);
        }
        match self.trial_list {
            Some(list) => {
                lines.push(format!("trial=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {})", quote(&list.display().to_string())));
                lines.push(format!("exec {} --trial \"$trial\"", command.join(" ")));
            }
            None => lines.push(format!("exec {}", command.join(" "))),
        }
        lines.join("\n") + "\n"
    }
}

/// `text` as one bash word.
fn quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%".contains(&b)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_sbatch_lines() {
        let slurm = SlurmSection { partition: Some("gpu".into()), time: Some("1:00:00".into()), max_parallel: Some(2), sbatch_args: vec!["--exclusive".into()], ..Default::default() };
        let command = vec!["/bin/bertlab".to_string(), "run".into(), "it's.toml".into()];
        let script = Script {
            job_name: "bertlab-x",
            tasks: 4,
            ranks: 1,
            logs: Path::new("/r/slurm/logs"),
            trial_list: Some(Path::new("/r/slurm/1.trials")),
            workdir: Path::new("/w"),
            exports: &[("BERTLAB_TRAIN__STEPS".into(), "5".into())],
            command: &command,
        }
        .render(&slurm);
        for line in ["#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --time=1:00:00", "#SBATCH --signal=B:USR1@120", "#SBATCH --exclusive", "export BERTLAB_TRAIN__STEPS=5"] {
            assert!(script.lines().any(|l| l == line), "{line} in\n{script}");
        }
        assert!(script.contains(r"exec /bin/bertlab run 'it'\''s.toml' --trial"), "{script}");
        assert!(!script.contains("--account"));
    }

    #[test]
    fn a_trial_on_several_devices_is_a_step_of_as_many_tasks() {
        let command = vec!["/bin/bertlab".to_string(), "run".into(), "x.toml".into()];
        let slurm = SlurmSection { gpus_per_task: Some(1), ..Default::default() };
        let script = Script { job_name: "j", tasks: 2, ranks: 4, logs: Path::new("/l"), trial_list: Some(Path::new("/t")), workdir: Path::new("/w"), exports: &[], command: &command }.render(&slurm);
        for line in ["#SBATCH --ntasks=4", "#SBATCH --gpus-per-task=1", "exec srun --kill-on-bad-exit=1 /bin/bertlab run x.toml --trial \"$trial\""] {
            assert!(script.lines().any(|l| l == line), "{line} in\n{script}");
        }
    }
}
