//! Labelled examples for fine-tuning: where they come from (`data.train`,
//! `data.eval`, `data.format`), what they are labelled with, and the
//! examples tokenized as BERT reads them: `[CLS] A [SEP]` or
//! `[CLS] A [SEP] B [SEP]`, cut to `data.seq_len`.
pub mod batches;
pub mod table;

use crate::config::{DataSection, Task};
use crate::data::tokenizer::Vocab;
use crate::error::InputError;
use crate::scoring::Metric;
use std::path::{Path, PathBuf};
use crate::formats::{glue, Column, FileLayout, Format};

/// What the examples are labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Class names; a label is its index here.
    Classes(Vec<String>),
    /// A number to predict (regression).
    Values,
}

impl Labels {
    /// Outputs of the head: one per class, one for regression.
    pub fn outputs(&self) -> i64 {
        match self {
            Labels::Classes(classes) => classes.len() as i64,
            Labels::Values => 1,
        }
    }
}

/// One file's examples, tokenized.
pub struct Split {
    /// What its metrics are logged under after `eval/<metric>` (`_mm` for
    /// MNLI's mismatched dev set, else empty).
    pub suffix: &'static str,
    pub ids: Vec<Vec<u32>>,
    /// Where segment B starts in each example (its length when there is none).
    pub b_start: Vec<usize>,
    /// Class index, or the value for regression.
    pub labels: Vec<f64>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

pub struct Labeled {
    /// The GLUE task's name (`SST-2`), else the training file's stem.
    pub task: String,
    pub labels: Labels,
    /// What is reported as `eval/<metric>`; their mean is `eval/score`
    /// (GLUE's score for the task).
    pub metrics: Vec<Metric>,
    pub train: Split,
    pub evals: Vec<Split>,
    /// Rows that lacked a needed value and were left out.
    pub skipped: usize,
}

/// Where the examples are and how to read them.
struct Source {
    task: String,
    columns: Vec<Column>,
    /// Fixed by the format (GLUE) or the task (regression); `None`: the
    /// classes are the training file's labels.
    labels: Option<Labels>,
    train: (PathBuf, FileLayout),
    /// Each with the suffix its metrics are logged under.
    evals: Vec<(PathBuf, FileLayout, &'static str)>,
    metrics: Vec<Metric>,
}

/// The task's name in tables and reports: the GLUE task (`SST-2`), else
/// the training file's stem, or its folder's name when the file is just
/// `train.*` (`sentiment/train.csv` is `sentiment`).
fn task_name(data: &DataSection) -> String {
    if let Some(Ok(Format::Glue(glue))) = data.format.as_deref().map(Format::parse) {
        return glue.name.into();
    }
    let file = Path::new(data.train.as_deref().unwrap_or_default());
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match file.parent().and_then(Path::file_name) {
        Some(folder) if ["train", "training"].contains(&stem.to_lowercase().as_str()) => folder.to_string_lossy().into_owned(),
        _ => stem,
    }
}

fn required<'a>(value: &'a Option<String>, key: &str, hint: &str) -> Result<&'a str, InputError> {
    value.as_deref().ok_or_else(|| InputError::new(format!("fine-tuning needs {hint}")).key(key))
}

fn source(task: Task, data: &DataSection) -> Result<Source, InputError> {
    let train = required(&data.train, "data.train", "the labelled training examples (a .tsv, .csv, .jsonl or .parquet file, or a GLUE folder)")?;
    let format = data.format.as_deref().map(Format::parse).transpose().map_err(|m| InputError::new(m).key("data.format"))?;
    if let Some(Format::Glue(glue)) = format {
        let folder = glue_folder(Path::new(train), glue)?;
        let layout = FileLayout::Tsv { header: glue.header };
        let evals = match &data.eval {
            Some(file) => vec![(PathBuf::from(file), layout, "")],
            None => glue.dev.iter().map(|(file, suffix)| (folder.join(file), layout, *suffix)).collect(),
        };
        return Ok(Source {
            task: task_name(data),
            columns: glue.text.iter().chain([&glue.label]).cloned().collect(),
            labels: Some(match glue.classes {
                [] => Labels::Values,
                classes => Labels::Classes(classes.iter().map(|c| c.to_string()).collect()),
            }),
            train: (folder.join("train.tsv"), layout),
            evals,
            metrics: glue.metrics.to_vec(),
        });
    }
    let eval = required(&data.eval, "data.eval", "held-out labelled examples to score (data.eval), in the training file's format")?;
    let layout = |file: &str, key: &str| match format {
        Some(Format::File(layout)) => Ok(layout),
        _ => layout_of(Path::new(file)).map_err(|e| e.key(key)),
    };
    if data.text_columns.is_empty() {
        return Err(InputError::new("fine-tuning needs the text column, or two for sentence pairs, e.g. [\"sentence\"]").key("data.text_columns"));
    }
    let label = data.label_column.clone().unwrap_or_else(|| "label".into());
    let columns = data.text_columns.iter().cloned().chain([label]).map(|name| Column::Name(name.into())).collect();
    let regression = task == Task::Regression;
    let metrics = if regression { vec![Metric::Pearson, Metric::Spearman] } else { vec![Metric::Accuracy] };
    Ok(Source {
        task: task_name(data),
        columns,
        labels: regression.then_some(Labels::Values),
        train: (train.into(), layout(train, "data.train")?),
        evals: vec![(eval.into(), layout(eval, "data.eval")?, "")],
        metrics,
    })
}

/// The task's folder: `data.train` itself, or `<data.train>/<task>` for
/// the whole unpacked GLUE folder.
fn glue_folder(given: &Path, task: &glue::GlueTask) -> Result<PathBuf, InputError> {
    [given.join(task.name), given.to_owned()].into_iter().find(|folder| folder.join("train.tsv").is_file()).ok_or_else(|| {
        InputError::new(format!("found no {0}/train.tsv nor train.tsv in it: point data.train at the unpacked GLUE folder or its {0} folder", task.name))
            .key("data.train")
            .in_file(given)
    })
}

fn layout_of(file: &Path) -> Result<FileLayout, InputError> {
    file.extension().and_then(|e| FileLayout::named(&e.to_string_lossy())).ok_or_else(|| {
        InputError::new("cannot tell the format from the extension: use .tsv, .csv, .jsonl or .parquet, or set data.format").in_file(file)
    })
}

/// Reads, labels and tokenizes the training and evaluation examples.
pub fn prepare(task: Task, data: &DataSection, vocab: &Vocab) -> Result<Labeled, InputError> {
    let source = source(task, data)?;
    let texts = source.columns.len() - 1;
    let (train_file, train_layout) = &source.train;
    let train = table::read(train_file, *train_layout, &source.columns).map_err(|e| e.key("data.train"))?;
    let labels = source.labels.unwrap_or_else(|| Labels::Classes(classes_of(&train.records, texts)));
    if let Labels::Classes(classes) = &labels {
        if classes.len() < 2 {
            return Err(InputError::new(format!("the labels take one value ({}): a classifier needs two or more", classes.join(", ")))
                .key("data.label_column")
                .in_file(train_file));
        }
    }
    let mut skipped = train.skipped;
    let train = encode(train_file, &train.records, texts, &labels, vocab, data.seq_len as usize, "")?;
    let mut evals = Vec::new();
    for (file, layout, suffix) in &source.evals {
        let read = table::read(file, *layout, &source.columns).map_err(|e| e.key("data.eval"))?;
        skipped += read.skipped;
        evals.push(encode(file, &read.records, texts, &labels, vocab, data.seq_len as usize, suffix)?);
    }
    Ok(Labeled { task: source.task, labels, metrics: source.metrics, train, evals, skipped })
}

/// The distinct labels of the training rows, in numeric order when they
/// are all integers (so `0`, `1`, `10` keep their meaning), else sorted.
fn classes_of(records: &[table::Record], label: usize) -> Vec<String> {
    let mut classes: Vec<String> = records.iter().map(|r| r.cells[label].trim().to_string()).collect();
    classes.sort();
    classes.dedup();
    if let Ok(mut numbers) = classes.iter().map(|c| c.parse::<i64>().map(|n| (n, c.clone()))).collect::<Result<Vec<_>, _>>() {
        numbers.sort();
        classes = numbers.into_iter().map(|(_, c)| c).collect();
    }
    classes
}

fn encode(file: &Path, records: &[table::Record], texts: usize, labels: &Labels, vocab: &Vocab, seq_len: usize, suffix: &'static str) -> Result<Split, InputError> {
    let at = |line: usize, message: String| InputError::new(message).in_file(file).at_line(Some(line));
    let values = records
        .iter()
        .map(|record| {
            let raw = record.cells[texts].trim();
            match labels {
                Labels::Values => raw.parse::<f64>().map_err(|_| at(record.line, format!("label `{raw}` is not a number"))),
                Labels::Classes(classes) => classes
                    .iter()
                    .position(|c| c == raw)
                    .map(|i| i as f64)
                    .ok_or_else(|| at(record.line, format!("label `{raw}` is not one of the classes ({})", classes.join(", ")))),
            }
        })
        .collect::<Result<Vec<f64>, InputError>>()?;
    let column = |i: usize| records.iter().map(|r| r.cells[i].clone()).collect::<Vec<String>>();
    let first = vocab.encode_all(&column(0))?;
    let mut second = if texts == 2 { Some(vocab.encode_all(&column(1))?.into_iter()) } else { None };
    let mut split = Split { suffix, ids: Vec::with_capacity(records.len()), b_start: Vec::with_capacity(records.len()), labels: values };
    for a in first {
        let (ids, b_start) = vocab.pair(a, second.as_mut().and_then(Iterator::next), seq_len);
        split.ids.push(ids);
        split.b_start.push(b_start);
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glue")
    }

    fn vocab() -> (tempfile::TempDir, Vocab) {
        let dir = tempfile::tempdir().unwrap();
        let vocab = crate::data::tokenizer::vocab_txt(dir.path(), &["the", "a", "is"]);
        (dir, vocab)
    }

    /// The label of each row and whether it is a pair, read the plain way:
    /// by column position, as Hugging Face's GLUE processors do.
    fn by_position(file: &Path, header: bool, texts: &[usize], label: Option<usize>) -> Vec<(String, bool)> {
        let text = std::fs::read_to_string(file).unwrap();
        text.lines()
            .skip(usize::from(header))
            .filter(|l| !l.is_empty())
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                let label = label.map_or(fields[fields.len() - 1], |i| fields[i]);
                (label.trim().to_string(), texts.len() == 2)
            })
            .collect()
    }

    #[test]
    fn every_glue_layout_parses_with_the_labels_hugging_face_reads() {
        let (_dir, vocab) = vocab();
        // Columns as `transformers`' GLUE processors index them; `None`: the last.
        let layouts: [(&str, bool, &[usize], Option<usize>); 9] = [
            ("CoLA", false, &[3], Some(1)),
            ("SST-2", true, &[0], Some(1)),
            ("MRPC", true, &[3, 4], Some(0)),
            ("STS-B", true, &[7, 8], None),
            ("QQP", true, &[3, 4], Some(5)),
            ("MNLI", true, &[8, 9], None),
            ("QNLI", true, &[1, 2], None),
            ("RTE", true, &[1, 2], None),
            ("WNLI", true, &[1, 2], None),
        ];
        for (name, header, texts, label) in layouts {
            let data = DataSection {
                format: Some(format!("glue/{}", name.to_lowercase())),
                train: Some(fixtures().display().to_string()),
                seq_len: 32,
                ..DataSection::default()
            };
            let labeled = prepare(Task::Classification, &data, &vocab).unwrap_or_else(|e| panic!("{name}: {e}"));
            let task = glue::find(name).unwrap();
            let files: Vec<(&str, &Split)> = std::iter::once(("train.tsv", &labeled.train)).chain(task.dev.iter().map(|d| d.0).zip(&labeled.evals)).collect();
            assert_eq!(labeled.evals.len(), task.dev.len(), "{name}");
            for (file, split) in files {
                let expected = by_position(&fixtures().join(name).join(file), header, texts, label);
                assert_eq!(split.len(), expected.len(), "{name}/{file}: every row is an example");
                for (i, (raw, pair)) in expected.iter().enumerate() {
                    let got = match &labeled.labels {
                        Labels::Values => split.labels[i],
                        Labels::Classes(classes) => classes.iter().position(|c| c == raw).unwrap() as f64,
                    };
                    let want = if labeled.labels == Labels::Values { raw.parse::<f64>().unwrap() } else { got };
                    assert_eq!(split.labels[i], want, "{name}/{file} row {i}");
                    let seps = split.ids[i].iter().filter(|&&t| t == vocab.sep).count();
                    assert_eq!(seps, if *pair { 2 } else { 1 }, "{name}/{file} row {i}: [SEP]s");
                    assert_eq!(split.ids[i][0], vocab.cls);
                    assert!(split.ids[i].len() <= 32);
                }
                if let Labels::Classes(classes) = &labeled.labels {
                    let seen: std::collections::HashSet<usize> = split.labels.iter().map(|&l| l as usize).collect();
                    assert!(seen.len() >= 2 && seen.iter().all(|&c| c < classes.len()), "{name}/{file}: {seen:?}");
                }
            }
            assert_eq!(labeled.labels == Labels::Values, name == "STS-B", "{name}");
        }
    }

    #[test]
    fn a_long_pair_loses_tokens_from_its_longer_text() {
        let (_dir, vocab) = vocab();
        let (ids, b_start) = vocab.pair(vec![5; 10], Some(vec![6; 4]), 12);
        // 12 = [CLS] + 5 + [SEP] + 4 + [SEP]: only the longer text was cut.
        assert_eq!(ids.len(), 12);
        assert_eq!(b_start, 7);
        assert_eq!(ids.iter().filter(|&&t| t == 6).count(), 4);
        // On a tie B loses the token, as in BERT's _truncate_seq_pair.
        let (ids, b_start) = vocab.pair(vec![5; 6], Some(vec![6; 6]), 12);
        assert_eq!((b_start, ids.iter().filter(|&&t| t == 6).count()), (7, 4));
    }

    #[test]
    fn a_label_outside_the_training_classes_names_its_file_and_line() {
        let (dir, vocab) = vocab();
        let train = dir.path().join("train.csv");
        let eval = dir.path().join("eval.jsonl");
        std::fs::write(&train, "text,label\n\"the, a\",pos\nthe,neg\n").unwrap();
        std::fs::write(&eval, "{\"text\": \"a\", \"label\": \"pos\"}\n{\"text\": \"the\", \"label\": \"meh\"}\n").unwrap();
        let data = DataSection {
            train: Some(train.display().to_string()),
            eval: Some(eval.display().to_string()),
            text_columns: vec!["text".into()],
            ..DataSection::default()
        };
        let err = prepare(Task::Classification, &data, &vocab).err().expect("refused");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("`meh` is not one of the classes (neg, pos)"), "{err}");
        assert!(err.source.as_deref().is_some_and(|s| s.ends_with("eval.jsonl")), "{err}");
    }
}
