//! The GLUE tasks as distributed (the unpacked `glue_data/` folder of
//! `download_glue_data.py`): for each, its folder, which columns hold the
//! text and the label, its label values, its dev files and the metrics the
//! benchmark scores it by.
use super::Column;
use crate::scoring::Metric;

pub struct GlueTask {
    /// The folder name in `glue_data/` (`SST-2`), also the task's name in reports.
    pub name: &'static str,
    /// CoLA's files alone have no header line.
    pub header: bool,
    pub text: &'static [Column],
    pub label: Column,
    /// Class values in label order; empty for regression (STS-B).
    pub classes: &'static [&'static str],
    /// Dev files, each with the suffix its metrics are logged under
    /// (MNLI's mismatched set: `eval/accuracy_mm`).
    pub dev: &'static [(&'static str, &'static str)],
    pub metrics: &'static [Metric],
}

use Column::Index;

const fn name(column: &'static str) -> Column {
    Column::named(column)
}
use Metric::*;

const DEV: &[(&str, &str)] = &[("dev.tsv", "")];
const BINARY: &[&str] = &["0", "1"];
const ENTAILMENT: &[&str] = &["entailment", "not_entailment"];

pub const TASKS: &[GlueTask] = &[
    // source, label, original label, sentence: no header.
    GlueTask { name: "CoLA", header: false, text: &[Index(3)], label: Index(1), classes: BINARY, dev: DEV, metrics: &[Matthews] },
    GlueTask { name: "SST-2", header: true, text: &[name("sentence")], label: name("label"), classes: BINARY, dev: DEV, metrics: &[Accuracy] },
    GlueTask {
        name: "MRPC",
        header: true,
        text: &[name("#1 String"), name("#2 String")],
        label: name("Quality"),
        classes: BINARY,
        dev: DEV,
        metrics: &[F1, Accuracy],
    },
    GlueTask {
        name: "STS-B",
        header: true,
        text: &[name("sentence1"), name("sentence2")],
        label: name("score"),
        classes: &[],
        dev: DEV,
        metrics: &[Pearson, Spearman],
    },
    GlueTask {
        name: "QQP",
        header: true,
        text: &[name("question1"), name("question2")],
        label: name("is_duplicate"),
        classes: BINARY,
        dev: DEV,
        metrics: &[Accuracy, F1],
    },
    GlueTask {
        name: "MNLI",
        header: true,
        text: &[name("sentence1"), name("sentence2")],
        label: name("gold_label"),
        classes: &["entailment", "neutral", "contradiction"],
        dev: &[("dev_matched.tsv", ""), ("dev_mismatched.tsv", "_mm")],
        metrics: &[Accuracy],
    },
    GlueTask { name: "QNLI", header: true, text: &[name("question"), name("sentence")], label: name("label"), classes: ENTAILMENT, dev: DEV, metrics: &[Accuracy] },
    GlueTask { name: "RTE", header: true, text: &[name("sentence1"), name("sentence2")], label: name("label"), classes: ENTAILMENT, dev: DEV, metrics: &[Accuracy] },
    GlueTask { name: "WNLI", header: true, text: &[name("sentence1"), name("sentence2")], label: name("label"), classes: BINARY, dev: DEV, metrics: &[Accuracy] },
];

/// The task `glue/<name>` names, forgiving case and hyphens (`glue/sst2`).
pub fn find(name: &str) -> Option<&'static GlueTask> {
    let plain = |s: &str| s.to_lowercase().replace('-', "");
    TASKS.iter().find(|t| plain(t.name) == plain(name))
}

pub fn names() -> Vec<&'static str> {
    TASKS.iter().map(|t| t.name).collect()
}
