//! Gradient accumulation (`train.micro_batch_size`): a step cut into
//! micro-batches makes the update of the whole batch, so without dropout
//! every `train/loss` and `eval/loss` point matches the plain batch's to
//! 1e-5 relative, for masked-LM pretraining (with next-sentence pairs too)
//! and for fine-tuning, whose last batch of an epoch is short. And a step
//! that runs out of memory (a real allocation failure, under an address-space
//! limit) runs again in halved micro-batches and trains what they train.
mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// The two runs of `text`: plain and with `micro_batch_size`; they must be
/// the same trial and train the same numbers.
fn compare(dir: &Path, name: &str, text: &str, keys: &[&str], micro: &str) {
    let plain = run_experiment(dir, &format!("{name}-plain"), text, &[]);
    let accumulated = run_experiment(dir, &format!("{name}-micro"), text, &[micro]);
    assert_same_trial_close(&plain, &accumulated, keys, name);
}

#[test]
fn micro_batches_train_as_the_whole_batch_in_pretraining() {
    let dir = tempfile::tempdir().unwrap();
    for (name, nsp) in [("mlm", false), ("nsp", true)] {
        let text = pretraining_without_dropout(name, nsp);
        compare(dir.path(), name, &text, &["train/loss", "eval/loss"], "train.micro_batch_size=4");
    }
}

#[test]
fn micro_batches_train_as_the_whole_batch_in_fine_tuning() {
    let dir = tempfile::tempdir().unwrap();
    // 600 training rows in batches of 48: each epoch ends on a batch of 24,
    // cut into micro-batches of 16 and 8.
    let text = fine_tuning_without_dropout(dir.path());
    compare(dir.path(), "topics", &text, &["train/loss", "eval/loss"], "train.micro_batch_size=16");
}

/// The pretraining that runs out of memory: a tiny model on long batches,
/// whose activations are most of what a step allocates.
fn long_batches(name: &str, batch: usize) -> String {
    experiment(name, "steps = 2\neval_every = 0\nlog_every = 1", "")
        .replace("[model]\n", "[model]\ndropout = 0.0\nattention_dropout = 0.0\n")
        .replace("seq_len = 32\n", "seq_len = 128\n")
        .replace("batch_size = 16\n", &format!("batch_size = {batch}\n"))
        .replace("warmup_steps = 5\n", "warmup_steps = 1\n")
}

/// The highest virtual memory (VmPeak) of `cmd`'s process, polled until it
/// exits; and how it ended.
fn virtual_peak(cmd: &mut std::process::Command) -> (u64, std::process::ExitStatus) {
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (peak, status);
        }
        let kib = std::fs::read_to_string(&status_file).ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmPeak:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()));
        peak = peak.max(kib.unwrap_or(0) * 1024);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_step_out_of_memory_runs_again_in_halved_micro_batches() {
    let dir = tempfile::tempdir().unwrap();
    // What the process needs besides a big step: the same run on batches of 64.
    let small = write(dir.path(), "small.toml", &long_batches("small", 64));
    let (baseline, status) = virtual_peak(bertlab().arg("run").arg(&small).arg("--out").arg(dir.path().join("small")));
    assert!(status.success() && baseline > 0, "{status} {baseline}");
    // 1 GiB more: a step of 4096 sequences of 128 tokens needs about 2.4
    // GiB of this model's activations, one of 1024 about 0.6.
    let limit = baseline + (1 << 30);
    let file = write(dir.path(), "big.toml", &long_batches("big", 4096));
    let out = dir.path().join("big");
    let mut limited = bertlab();
    limited.arg("run").arg(&file).arg("--out").arg(&out);
    // SAFETY: setrlimit between fork and exec.
    unsafe {
        limited.pre_exec(move || {
            let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let r = run(&mut limited);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("out of memory with micro-batches of 4096: the step runs again with micro-batches of 2048"), "{}", r.stderr);
    let trials = read_table(&out.join("trials.parquet"));
    assert_eq!(strings(&trials, "status"), ["completed"]);
    let micro = floats(&trials, "train/micro_batch_size")[0] as usize;
    assert!((1..=2048).contains(&micro) && 4096 % micro == 0, "ran with micro-batches of {micro}");
    let id = &strings(&trials, "trial_id")[0];
    let log = std::fs::read_to_string(out.join("trials").join(id).join("log.txt")).unwrap();
    assert!(log.contains(&format!("step 1 out of memory: from step 1 on, steps run in micro-batches of {micro} examples")), "{log}");
    // The same update as micro-batches of that size asked for.
    let asked = run_experiment(dir.path(), "asked", &long_batches("big", 4096), &[&format!("train.micro_batch_size={micro}")]);
    for key in ["train/loss", "eval/loss"] {
        assert_close(&one_series(&asked, key), &one_series(&out, key), key);
    }
}
