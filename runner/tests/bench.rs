//! `bertlab bench`: real training steps of a tiny BERT on the CPU, read back
//! from its JSON.
mod common;
use common::*;

const TINY: [&str; 12] = [
    "--set", "model.layers=1", "--set", "model.hidden=32", "--set", "model.heads=2", "--set", "data.vocab_size=500", "--set",
    "data.seq_len=32", "--set", "train.batch_size=8",
];

fn bench_json(extra: &[&str]) -> serde_json::Value {
    let r = run(bertlab().arg("bench").args(TINY).args(["--device", "cpu", "--steps", "4", "--warmup", "1", "--format", "json"]).args(extra));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(r.stdout.lines().last().expect("a JSON line")).expect("valid JSON")
}

#[test]
fn bench_json_has_the_named_fields_and_they_agree() {
    let json = bench_json(&[]);
    let number = |key: &str| json[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number: {json}"));
    let (tokens_per_s, step_ms, mfu) = (number("tokens_per_s"), number("step_ms"), number("mfu"));
    assert!(tokens_per_s > 0.0 && step_ms > 0.0, "{json}");
    // tokens/s and the step time describe the same batches of 8 × 32 tokens.
    assert!((tokens_per_s * step_ms / 1000.0 - 256.0).abs() < 1.0, "{json}");
    assert!(mfu > 0.0 && mfu < 1.5, "{json}");
    assert!(number("peak_memory_bytes") > 1e6, "{json}");
    assert!(json["peak_flops_source"].as_str().unwrap().contains("measured"), "{json}");
    assert_eq!(json["precision"], "fp32", "auto is fp32 on the CPU");
    assert_eq!(json["device"], "cpu");
    // The bert plugin's exact count for this shape (embeddings 32,512, one
    // block 12,704, MLM head 1,620).
    assert_eq!(json["params"], 46_836, "{json}");
    assert!(number("final_loss").is_finite(), "{json}");
}

#[test]
fn bench_times_an_accumulated_step_over_the_same_tokens() {
    let json = bench_json(&["--set", "train.micro_batch_size=2"]);
    assert_eq!((json["batch_size"].as_i64(), json["micro_batch_size"].as_i64(), json["accumulation_steps"].as_i64()), (Some(8), Some(2), Some(4)), "{json}");
    let (tokens_per_s, step_ms) = (json["tokens_per_s"].as_f64().unwrap(), json["step_ms"].as_f64().unwrap());
    assert!((tokens_per_s * step_ms / 1000.0 - 256.0).abs() < 1.0, "still 8 × 32 tokens a step: {json}");
    assert!(json["final_loss"].as_f64().unwrap().is_finite(), "{json}");
}

#[test]
fn bench_times_a_step_over_two_ranks_that_trains_what_one_does() {
    let no_dropout = ["--set", "model.dropout=0", "--set", "model.attention_dropout=0"];
    let alone = bench_json(&no_dropout);
    let two = bench_json(&[&no_dropout[..], &["--set", "train.devices=2"]].concat());
    assert_eq!(two["devices"], serde_json::json!(["cpu", "cpu"]), "{two}");
    assert_eq!((two["batch_size"].as_i64(), two["micro_batch_size"].as_i64()), (Some(8), Some(4)), "each rank takes 4 of the 8: {two}");
    let (a, b) = (alone["final_loss"].as_f64().unwrap(), two["final_loss"].as_f64().unwrap());
    assert!((a - b).abs() <= 1e-5 * a.abs(), "the same steps: {a} alone, {b} on two ranks");
    let (tokens_per_s, step_ms) = (two["tokens_per_s"].as_f64().unwrap(), two["step_ms"].as_f64().unwrap());
    assert!((tokens_per_s * step_ms / 1000.0 - 256.0).abs() < 1.0, "tokens/s of the whole batch: {two}");
}

#[test]
fn bench_takes_the_first_trial_of_a_sweep_and_mixed_precision() {
    let json = bench_json(&["--set", "train.precision=bf16", "--set", "sweep.grid={\"model.hidden\"=[64, 32]}"]);
    assert_eq!(json["precision"], "bf16");
    assert_eq!(json["model"]["hidden"], 64, "{json}");
}

#[test]
fn bench_rejects_zero_steps() {
    let r = run(bertlab().arg("bench").args(["--steps", "0"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--steps"), "{}", r.stderr);
}
