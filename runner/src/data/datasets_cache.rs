//! Corpora that Hugging Face `datasets` prepared, found on disk and never
//! fetched: `hf:NAME[/CONFIG][:SPLIT]` in the local `datasets` cache, and
//! folders that `Dataset.save_to_disk` wrote. Both end as the Arrow files
//! that hold the split, in order.
//!
//! The cache is `HF_DATASETS_CACHE`, else `HF_HOME/datasets`, else
//! `~/.cache/huggingface/datasets`. A dataset `ORG/NAME` lives in
//! `ORG___NAME` (`NAME` without an organisation; the name's last part in
//! `datasets`' snake case), then `CONFIG/VERSION/HASH/`, whose
//! `dataset_info.json` names the split's files: `<name>-<split>.arrow`, or
//! `<name>-<split>-00000-of-00004.arrow` ... when sharded. Without a CONFIG,
//! the one configuration built without parameters; of several versions or
//! hashes, the newest, as `datasets` itself picks offline. Checked against
//! `datasets` 5.2's `packaged_modules/cache/cache.py` and `naming.py`.
use crate::error::InputError;
use serde_json::Value;
use std::path::{Path, PathBuf};

const KEY: &str = "data.corpus";

/// The split read when an id names none: pretraining reads the training text.
const DEFAULT_SPLIT: &str = "train";

/// The Arrow files of the split `spec` (`hf:...`) names in the cache.
pub fn split_files(spec: &str) -> Result<Vec<PathBuf>, InputError> {
    let id = spec.strip_prefix(crate::hub::PREFIX).unwrap_or(spec);
    let (path, split) = id.rsplit_once(':').unwrap_or((id, DEFAULT_SPLIT));
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.starts_with('.')) || !is_split_name(split) {
        return Err(fail(format!("`{spec}` is not a dataset id: write hf:NAME, hf:NAME/CONFIG or hf:ORG/NAME/CONFIG, then :SPLIT if not train")));
    }
    // `hf:a/b` is ORG/NAME or NAME/CONFIG: whichever the cache holds.
    let readings: Vec<(&[&str], Option<&str>)> = match parts.len() {
        1 => vec![(&parts[..], None)],
        2 => vec![(&parts[..], None), (&parts[..1], Some(parts[1]))],
        _ => vec![(&parts[..2], Some(parts[2]))],
    };
    let cache = cache_dir();
    let mut looked = Vec::new();
    for &(name, config) in &readings {
        let root = cache.join(folder_name(name));
        if root.is_dir() {
            let build = build_folder(spec, &root, config)?;
            return files_of_split(spec, &build, split);
        }
        looked.push(root.display().to_string());
    }
    // What would put each reading in the cache.
    let calls: Vec<String> = readings
        .iter()
        .map(|(name, config)| match config {
            Some(config) => format!("load_dataset('{}', '{config}')", name.join("/")),
            None => format!("load_dataset('{}')", name.join("/")),
        })
        .collect();
    Err(fail(format!(
        "`{spec}` is not in the datasets cache (looked in {}; set HF_DATASETS_CACHE or HF_HOME to use another cache). bertlab never downloads: prepare it in Python with `datasets.{}`",
        looked.join(", "),
        calls.join("` or `datasets.")
    )))
}

/// The files a `save_to_disk` folder of one split holds, in order, from its
/// `state.json`; `None` for a folder that is not one. A folder of several
/// splits (`dataset_dict.json`) is an error naming them.
pub fn saved_split_files(folder: &Path) -> Result<Option<Vec<PathBuf>>, InputError> {
    let dict = folder.join("dataset_dict.json");
    if dict.is_file() {
        let splits = read_json(&dict)?;
        let names: Vec<&str> = splits["splits"].as_array().map(|s| s.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let example = folder.join(names.first().copied().unwrap_or(DEFAULT_SPLIT));
        return Err(fail(format!("holds the splits {}: name one's folder, e.g. {}", names.join(", "), example.display())).in_file(folder));
    }
    let state = folder.join("state.json");
    if !state.is_file() {
        return Ok(None);
    }
    let files = read_json(&state)?["_data_files"]
        .as_array()
        .map(|files| files.iter().filter_map(|f| f["filename"].as_str()).map(|name| folder.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    if files.is_empty() {
        return Err(fail("lists no `_data_files`".into()).in_file(&state));
    }
    present(files).map(Some)
}

/// The `datasets` cache folder, as `datasets` finds it.
pub fn cache_dir() -> PathBuf {
    crate::hub::env_path("HF_DATASETS_CACHE").unwrap_or_else(|| crate::hub::hf_home().join("datasets"))
}

/// `ORG___NAME` or `NAME`, the name in `datasets`' snake case.
fn folder_name(name: &[&str]) -> String {
    let mut parts: Vec<String> = name.iter().map(|p| p.to_string()).collect();
    if let Some(last) = parts.last_mut() {
        *last = snake_case(last);
    }
    parts.join("___")
}

/// `datasets.naming.camelcase_to_snakecase`: an underscore before a capital
/// that follows a small letter or a digit, or that starts a word after a
/// run of capitals (`SQuADv2` -> `s_quadv2`), then all in small letters.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let before = chars[i - 1];
            let after_run = before.is_ascii_uppercase() && chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if before.is_ascii_lowercase() || before.is_ascii_digit() || after_run {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `datasets`' split names: words joined by dots.
fn is_split_name(split: &str) -> bool {
    !split.is_empty() && split.split('.').all(|w| !w.is_empty() && w.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

/// The `CONFIG/VERSION/HASH` folder to read: of `config`, or of the one
/// configuration built without parameters; the newest when there are several.
fn build_folder(spec: &str, root: &Path, config: Option<&str>) -> Result<PathBuf, InputError> {
    let configs = subfolders(root);
    let config_names = || configs.iter().map(|c| name_of(c)).collect::<Vec<_>>().join(", ");
    let builds: Vec<PathBuf> = match config {
        Some(config) => {
            let folder = root.join(config);
            if !folder.is_dir() {
                return Err(fail(format!("`{spec}`: no configuration `{config}` in {} (it has: {})", root.display(), config_names())));
            }
            builds_of(&folder)
        }
        None => {
            // As `datasets`: a build whose info names its folder's
            // configuration (one without extra parameters).
            let mut plain: Vec<(&PathBuf, Vec<PathBuf>)> = configs
                .iter()
                .map(|c| (c, builds_of(c).into_iter().filter(|b| info_config(b).as_deref() == Some(&*name_of(c))).collect::<Vec<_>>()))
                .filter(|(_, builds)| !builds.is_empty())
                .collect();
            match plain.len() {
                1 => plain.remove(0).1,
                0 => return Err(fail(format!("`{spec}`: name a configuration, hf:NAME/CONFIG (the cache has: {})", config_names()))),
                _ => {
                    let names: Vec<String> = plain.iter().map(|(c, _)| name_of(c)).collect();
                    return Err(fail(format!("`{spec}`: the cache holds several configurations ({}); name one, hf:NAME/CONFIG", names.join(", "))));
                }
            }
        }
    };
    builds
        .into_iter()
        .max_by_key(|b| b.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| fail(format!("`{spec}`: no finished build under {} (an interrupted download leaves only `.incomplete` folders)", root.display())))
}

/// The `VERSION/HASH` folders of a configuration that hold a finished build.
fn builds_of(config: &Path) -> Vec<PathBuf> {
    subfolders(config).iter().flat_map(|version| subfolders(version)).filter(|b| b.join("dataset_info.json").is_file()).collect()
}

/// Sub-folders, except the `.incomplete` ones of a build in progress.
fn subfolders(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut folders: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir() && !name_of(p).ends_with(".incomplete")).collect();
    folders.sort();
    folders
}

fn name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn info_config(build: &Path) -> Option<String> {
    read_json(&build.join("dataset_info.json")).ok()?["config_name"].as_str().map(str::to_owned)
}

/// The split's Arrow files in `build`, as `datasets.naming` names them.
fn files_of_split(spec: &str, build: &Path, split: &str) -> Result<Vec<PathBuf>, InputError> {
    let info_file = build.join("dataset_info.json");
    let info = read_json(&info_file)?;
    let Some(entry) = info["splits"].get(split) else {
        let splits: Vec<&String> = info["splits"].as_object().map(|s| s.keys().collect()).unwrap_or_default();
        let names: Vec<&str> = splits.iter().map(|s| s.as_str()).collect();
        return Err(fail(format!("`{spec}`: no split `{split}` (it has: {}); write hf:...:SPLIT", names.join(", "))).in_file(&info_file));
    };
    let name = info["dataset_name"].as_str().or(info["builder_name"].as_str()).ok_or_else(|| fail("names no dataset".into()).in_file(&info_file))?;
    let prefix = format!("{}-{split}", snake_case(name));
    let shards = entry["shard_lengths"].as_array().map_or(0, Vec::len);
    let files = if shards > 1 {
        (0..shards).map(|i| build.join(format!("{prefix}-{i:05}-of-{shards:05}.arrow"))).collect()
    } else {
        vec![build.join(format!("{prefix}.arrow"))]
    };
    present(files)
}

fn present(files: Vec<PathBuf>) -> Result<Vec<PathBuf>, InputError> {
    match files.iter().find(|f| !f.is_file()) {
        Some(missing) => Err(fail("is missing: the dataset on disk is incomplete".into()).in_file(missing)),
        None => Ok(files),
    }
}

fn read_json(file: &Path) -> Result<Value, InputError> {
    let text = std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read: {e}")).in_file(file))?;
    serde_json::from_str(&text).map_err(|e| fail(format!("invalid JSON: {e}")).in_file(file))
}

fn fail(message: String) -> InputError {
    InputError::new(message).key(KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_cased_as_datasets_does() {
        for (name, snake) in [("wikitext", "wikitext"), ("SQuAD", "s_qu_ad"), ("BookCorpus", "book_corpus"), ("ABCDef", "abc_def"), ("c4", "c4"), ("Wiki40B", "wiki40_b")] {
            assert_eq!(snake_case(name), snake, "{name}");
        }
        assert_eq!(folder_name(&["Salesforce", "WikiText"]), "Salesforce___wiki_text");
    }

    #[test]
    fn split_names_are_dotted_words() {
        assert!(is_split_name("train") && is_split_name("validation.v2"));
        assert!(!is_split_name("") && !is_split_name("a/b") && !is_split_name("train[:10%]"));
    }
}
