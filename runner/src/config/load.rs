//! Reads an experiment with its layers, later wins: built-in defaults, the
//! files it `extends` (base first), the experiment file,
//! `BERTLAB_<SECTION>__<KEY>` environment variables, then `--set key=value`
//! flags. Remembers where each value came from so that errors found later
//! can name the file and line, or the variable or flag.
use super::extends::{self, Layer};
use super::locate::{find, line_of};
use super::schema::ExperimentFile;
use crate::error::InputError;
use models::knob::closest;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map as FigmentMap, Value as FigmentValue};
use figment::{Figment, Metadata, Profile, Provider, Source};
use std::path::{Path, PathBuf};

/// An experiment read and type-checked, with its provenance.
pub struct Loaded {
    /// The file named on the command line (the last layer).
    pub path: PathBuf,
    pub experiment: ExperimentFile,
    figment: Figment,
    /// The files merged, base first.
    layers: Vec<Layer>,
}

pub fn load(path: &Path, sets: &[String]) -> Result<Loaded, InputError> {
    let layers = extends::chain(path)?;
    let files = layers.iter().fold(Figment::new(), |f, layer| f.merge(Toml::file_exact(&layer.path)));
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "experiment".into());
    let mut loaded = layered(files, path.to_owned(), layers, sets, &name)?;
    sweep_init_glob(&mut loaded)?;
    let data = &loaded.experiment.data;
    if loaded.experiment.experiment.task.is_mlm() && data.corpus.is_empty() {
        return Err(loaded.error_at("data.corpus", "no corpus given: add glob patterns, e.g. [\"data/*.txt\"]"));
    }
    if !loaded.experiment.experiment.task.is_mlm() && data.train.is_none() && !loaded.experiment.sweep.sets("data.train") {
        return Err(loaded.error_at("data.train", "fine-tuning needs labelled training examples: a .tsv, .csv, .jsonl or .parquet file, or a GLUE folder with data.format = \"glue/<task>\""));
    }
    if loaded.experiment.experiment.task.is_mlm() && loaded.experiment.train.epochs.is_some() {
        return Err(loaded.error_at("train.epochs", "counts passes over labelled examples (fine-tuning); pretraining runs train.steps"));
    }
    Ok(loaded)
}

/// `model.init` with glob characters sweeps over the folders it matches,
/// and a list of folders or hub ids over those: it becomes the grid axis
/// `model.init`, one trial per folder (a glob's in sorted order), so one
/// experiment fine-tunes every checkpoint of a pretraining sweep or every
/// published one.
fn sweep_init_glob(loaded: &mut Loaded) -> Result<(), InputError> {
    let folders: Vec<serde_json::Value> = match loaded.experiment.model.get("init") {
        Some(serde_json::Value::String(pattern)) if pattern.contains(['*', '?', '[']) => {
            let folders: Vec<serde_json::Value> = glob::glob(pattern)
                .map_err(|e| loaded.error_at("model.init", format!("`{pattern}` is not a glob pattern: {e}")))?
                .filter_map(Result::ok)
                .filter(|path| path.is_dir())
                .map(|path| path.display().to_string().into())
                .collect();
            if folders.is_empty() {
                return Err(loaded.error_at("model.init", format!("`{pattern}` matches no folder")));
            }
            folders
        }
        Some(serde_json::Value::Array(list)) => {
            if list.is_empty() || !list.iter().all(serde_json::Value::is_string) {
                return Err(loaded.error_at("model.init", "a list sweeps starting points: give folders or hub ids, at least one"));
            }
            list.clone()
        }
        _ => return Ok(()),
    };
    if loaded.experiment.sweep.grid.contains_key("model.init") {
        return Err(loaded.error_at("model.init", "sweeps (a glob or a list) and is also swept in [sweep.grid]: use one or the other"));
    }
    loaded.experiment.model.remove("init");
    loaded.experiment.sweep.grid.insert("model.init".into(), serde_json::Value::Array(folders));
    Ok(())
}

/// The built-in defaults with environment variables and `--set` flags on
/// top, for commands that need a configuration but no corpus (`bench`).
pub fn load_defaults(sets: &[String], name: &str) -> Result<Loaded, InputError> {
    layered(Figment::new(), PathBuf::from("(built-in defaults)"), Vec::new(), sets, name)
}

fn layered(files: Figment, path: PathBuf, layers: Vec<Layer>, sets: &[String], default_name: &str) -> Result<Loaded, InputError> {
    let figment = files
        // Only double-underscore names are keys (BERTLAB_TRAIN__STEPS): other
        // BERTLAB_ variables (BERTLAB_CACHE_DIR) configure the tool itself.
        .merge(Env::prefixed("BERTLAB_").filter(|k| k.as_str().contains("__")).split("__"))
        .merge(SetFlags::parse(sets)?);
    let experiment = figment.extract().map_err(|e| figment_error(e, &layers))?;
    let mut loaded = Loaded { path, experiment, figment, layers };
    if loaded.experiment.experiment.name.is_empty() {
        loaded.experiment.experiment.name = default_name.into();
    }
    loaded.experiment.data.check().and_then(|()| loaded.experiment.train.check()).and_then(|()| loaded.experiment.launch.check())
        .and_then(|()| loaded.experiment.sweep.early_stop.as_ref().map_or(Ok(()), |e| e.check(&loaded.experiment)))
        .map_err(|e| loaded.locate(e))?;
    if loaded.experiment.experiment.seeds.is_empty() {
        return Err(loaded.error_at("experiment.seeds", "needs at least one seed"));
    }
    Ok(loaded)
}

impl Loaded {
    /// The files merged, base first, the experiment file last.
    pub fn files(&self) -> Vec<&Path> {
        self.layers.iter().map(|l| l.path.as_path()).collect()
    }

    /// An error about the value at dotted `key`, located where that value
    /// was given: file and line, or the environment variable or flag.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> InputError {
        self.locate(InputError::at_key(key, message))
    }

    /// `err`, keyed by a check that did not know the files, located at its
    /// dotted key as [`Loaded::error_at`] does.
    pub fn locate(&self, err: InputError) -> InputError {
        let key = err.key.clone().unwrap_or_default();
        let segments: Vec<&str> = key.split('.').collect();
        self.located(err, &segments)
    }

    /// Like [`Loaded::error_at`] for a key inside a table whose own keys
    /// are dotted (`[sweep.grid]`, `[derive]`): `table` is the path to the
    /// table (`["sweep", "zip", "0"]`), `key` the dotted key in it.
    pub fn entry_error(&self, table: &[&str], key: &str, message: impl Into<String>) -> InputError {
        let err = InputError::new(message).key(format!("{}.\"{key}\"", table.join(".")));
        let mut segments = table.to_vec();
        segments.push(key);
        self.located(err, &segments)
    }

    /// An error about item `index` of the list at dotted `key`
    /// (`constraints.require[1]`).
    pub fn item_error(&self, key: &str, index: usize, message: impl Into<String>) -> InputError {
        let position = index.to_string();
        let mut segments: Vec<&str> = key.split('.').collect();
        segments.push(&position);
        self.located(InputError::new(message).key(format!("{key}[{index}]")), &segments)
    }

    fn located(&self, err: InputError, segments: &[&str]) -> InputError {
        // The deepest prefix of the path that some provider supplied.
        let metadata = (1..=segments.len())
            .rev()
            .find_map(|n| self.figment.find_metadata(&segments[..n].join(".")));
        if let Some(m) = metadata.filter(|m| !matches!(m.source, Some(Source::File(_)))) {
            return err.from_source(describe(m, segments));
        }
        // The last file that writes the key itself wins, as in the merge;
        // failing that, the experiment file at the enclosing table.
        let exact = self.layers.iter().rev().find_map(|l| find(&l.text, segments).filter(|f| f.exact).map(|f| (l, f.line)));
        match exact {
            Some((layer, line)) => err.in_file(&layer.path).at_line(Some(line)),
            None => {
                let top = self.layers.last().expect("a chain has the experiment file");
                err.in_file(&top.path).at_line(line_of(&top.text, segments))
            }
        }
    }
}

/// Where a value that did not come from the file came from, as the user
/// would write it: `BERTLAB_TRAIN__LR` or `--set train.lr`.
fn describe(metadata: &Metadata, segments: &[&str]) -> String {
    if metadata.name.contains("environment") {
        format!("BERTLAB_{}", segments.join("__").to_uppercase())
    } else {
        metadata.interpolate(&Profile::Default, segments)
    }
}

/// A figment error (TOML syntax, wrong type, unknown key) as one located line.
fn figment_error(error: figment::Error, layers: &[Layer]) -> InputError {
    let segments: Vec<&str> = error.path.iter().map(String::as_str).collect();
    let mut message = error.kind.to_string();
    if let figment::error::Kind::UnknownField(field, expected) = &error.kind {
        let hint = closest(field, expected).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
        message = format!("unknown field `{field}`{hint}; expected one of: {}", expected.join(", "));
        if field == "extends" {
            message = "`extends` belongs at the top of the file, before any [section]".into();
        }
    }
    let mut err = InputError::new(message);
    if !segments.is_empty() {
        err = err.key(segments.join("."));
    }
    let file = match error.metadata.as_ref().map(|m| &m.source) {
        Some(Some(Source::File(file))) => Some(file),
        Some(_) => return err.from_source(describe(error.metadata.as_ref().expect("matched"), &segments)),
        None => None,
    };
    let layer = file.and_then(|f| layers.iter().find(|l| extends::same_file(&l.path, f))).unwrap_or_else(|| layers.last().expect("a chain has the experiment file"));
    // A TOML syntax error has no key path and carries its line in the message.
    err.in_file(&layer.path).at_line(if segments.is_empty() { None } else { line_of(&layer.text, &segments) })
}

/// `--set key=value` flags as a figment provider. Values are TOML
/// (`--set train.lr=3e-4`, `--set data.tokenizer=vocab.txt` as a bare
/// string); a list is refused because a list of values is a sweep.
struct SetFlags(Dict);

impl SetFlags {
    fn parse(sets: &[String]) -> Result<Self, InputError> {
        let mut dict = Dict::new();
        for set in sets {
            let flag = || InputError::new("").from_source(format!("--set {set}"));
            let (key, raw) = set.split_once('=').ok_or_else(|| InputError {
                message: "expected key=value, e.g. --set train.lr=3e-4".into(),
                ..flag()
            })?;
            let key = key.trim();
            let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
                Ok(mut table) => table.remove("v").expect("parsed table has v"),
                Err(_) => toml::Value::String(raw.to_string()),
            };
            if value.is_array() && !is_list_key(key) {
                return Err(InputError {
                    key: Some(key.to_string()),
                    message: format!("a list is a sweep: put it under [sweep.grid] as \"{key}\" = {raw}"),
                    ..flag()
                });
            }
            let value = FigmentValue::serialize(&value).map_err(|e| InputError { message: e.to_string(), ..flag() })?;
            merge_into(&mut dict, figment::util::nest(key, value));
        }
        Ok(SetFlags(dict))
    }
}

/// Whether `key` holds a list in the schema (`data.corpus`,
/// `experiment.seeds`), judged from the built-in defaults.
fn is_list_key(key: &str) -> bool {
    let defaults = serde_json::to_value(ExperimentFile::default()).expect("defaults serialise");
    key.split('.').try_fold(&defaults, |v, k| v.get(k)).is_some_and(|v| v.is_array())
}

fn merge_into(dict: &mut Dict, nested: FigmentValue) {
    let FigmentValue::Dict(_, incoming) = nested else { return };
    for (k, v) in incoming {
        match (dict.get_mut(&k), v) {
            (Some(FigmentValue::Dict(_, existing)), FigmentValue::Dict(tag, inner)) => {
                let mut sub = std::mem::take(existing);
                merge_into(&mut sub, FigmentValue::Dict(tag, inner));
                *existing = sub;
            }
            (_, v) => {
                dict.insert(k, v);
            }
        }
    }
}

impl Provider for SetFlags {
    fn metadata(&self) -> Metadata {
        Metadata::named("--set").interpolater(|_, keys| format!("--set {}", keys.join(".")))
    }

    fn data(&self) -> Result<FigmentMap<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}
