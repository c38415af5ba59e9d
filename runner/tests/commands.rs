//! The informational commands, and the link against libtorch_cuda that
//! makes one binary serve CPU and GPU machines.
mod common;
use common::*;

#[test]
fn doctor_reports_the_loaded_libtorch() {
    let r = run(bertlab().arg("doctor"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stdout.lines().find(|l| l.starts_with("libtorch")).expect("a libtorch line");
    assert!(line.contains("2.11.0"), "{line}");
    assert!(r.stdout.contains("cuda") && r.stdout.contains("cpu threads"), "{}", r.stdout);
}

#[test]
fn the_binary_needs_libtorch_cuda_and_finds_libtorch_by_rpath() {
    let out = std::process::Command::new("readelf").arg("-d").arg(env!("CARGO_BIN_EXE_bertlab")).output().expect("readelf runs");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(dynamic.contains("[libtorch_cuda.so]"), "libtorch_cuda.so is not NEEDED:\n{dynamic}");
    assert!(dynamic.contains("RUNPATH") || dynamic.contains("RPATH"), "no rpath:\n{dynamic}");
}

#[test]
fn models_lists_the_three_plugins_their_knobs_and_a_count() {
    let r = run(bertlab().arg("models"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sections: Vec<&str> = r.stdout.split("\n\n").filter(|s| !s.trim().is_empty()).collect();
    let names: Vec<&str> = sections.iter().map(|s| s.split(' ').next().unwrap()).collect();
    assert_eq!(names, ["bert", "bert-preln", "crammed-bert"], "{}", r.stdout);
    for section in sections {
        for knob in ["layers", "hidden", "heads", "intermediate", "dropout", "attention_dropout", "vocab_size", "max_position", "type_vocab_size", "layer_norm_eps", "initializer_range"] {
            assert!(section.lines().any(|l| l.trim_start().starts_with(knob)), "{knob} missing:\n{section}");
        }
        assert!(section.contains(" parameters at the defaults"), "{section}");
    }
    // BERT-Base's BertForMaskedLM.num_parameters() in transformers.
    assert!(r.stdout.contains("109514298 parameters"), "{}", r.stdout);
}

#[test]
fn an_unknown_subcommand_or_missing_file_is_rejected() {
    assert_eq!(run(bertlab().arg("frobnicate")).code, 2);
    let r = run(bertlab().arg("run").arg("no/such/experiment.toml"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no/such/experiment.toml"), "{}", r.stderr);
}
