//! Hugging Face hub ids, read from the local hub cache and never from the
//! network: `hf:ORG/NAME` or `hf:ORG/NAME@REVISION` names the snapshot folder
//! that `huggingface_hub` would use offline. The cache is `HF_HUB_CACHE`,
//! else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub` (default `~/.cache/huggingface/hub`);
//! the repository's folder is `models--ORG--NAME`; a revision that is a
//! 40-hex commit names `snapshots/<commit>`, any other (default `main`) is a
//! branch or tag whose `refs/<revision>` file holds the commit. Checked
//! against `huggingface_hub` 2.4's `constants.py` and `snapshot_download`.
use crate::error::InputError;
use std::path::{Path, PathBuf};

/// What starts a hub id.
pub const PREFIX: &str = "hf:";

pub fn is_hub_id(spec: &str) -> bool {
    spec.starts_with(PREFIX)
}

/// The folder `spec` names: a hub id resolved in the cache, else `spec`
/// itself as a path.
pub fn folder(spec: &str) -> Result<PathBuf, InputError> {
    let Some(id) = spec.strip_prefix(PREFIX) else { return Ok(PathBuf::from(spec)) };
    let (repo, revision) = id.split_once('@').unwrap_or((id, "main"));
    if repo.split('/').count() > 2 || repo.split('/').any(str::is_empty) || revision.is_empty() || revision.contains("..") {
        return Err(InputError::new(format!("`{spec}` is not a hub id: write hf:ORG/NAME or hf:ORG/NAME@REVISION")));
    }
    let cache = cache_dir();
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let missing = |looked: &[&Path], why: &str| {
        let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
        InputError::new(format!(
            "`{spec}`: {why} in the Hugging Face cache (looked in {}; set HF_HUB_CACHE or HF_HOME to use another cache). bertlab never downloads: fetch it with `huggingface-cli download {repo}{}`",
            looked.join(", "),
            if revision == "main" { String::new() } else { format!(" --revision {revision}") }
        ))
    };
    if !repo_dir.is_dir() {
        return Err(missing(&[&repo_dir], "not"));
    }
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        let reference = repo_dir.join("refs").join(revision);
        match std::fs::read_to_string(&reference) {
            Ok(text) => text.trim().to_string(),
            Err(_) => return Err(missing(&[&reference], &format!("no revision `{revision}`"))),
        }
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(missing(&[&snapshot], &format!("no snapshot of revision `{revision}`")));
    }
    Ok(snapshot)
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hub cache folder, as `huggingface_hub` finds it.
pub fn cache_dir() -> PathBuf {
    if let Some(cache) = env_path("HF_HUB_CACHE").or_else(|| env_path("HUGGINGFACE_HUB_CACHE")) {
        return cache;
    }
    hf_home().join("hub")
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface` (default
/// `~/.cache/huggingface`): where Hugging Face's libraries keep their caches.
pub fn hf_home() -> PathBuf {
    env_path("HF_HOME").unwrap_or_else(|| env_path("XDG_CACHE_HOME").unwrap_or_else(|| expand_home("~/.cache")).join("huggingface"))
}

/// A path from environment variable `name`, `~/` expanded; `None` when
/// unset or empty.
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).map(|v| expand_home(&v))
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache with `models--org--tiny`: `main` and `v2` refs, two snapshots.
    fn cache() -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--org--tiny");
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        for commit in [&a, &b] {
            std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), &a).unwrap();
        std::fs::write(repo.join("refs/v2"), format!("{b}\n")).unwrap();
        (dir, a, b)
    }

    #[test]
    fn ids_resolve_by_branch_tag_or_commit_and_paths_pass_through() {
        let (dir, a, b) = cache();
        // One test sets the variable, so no other test races it.
        std::env::set_var("HF_HUB_CACHE", dir.path());
        let snapshot = |c: &str| dir.path().join("models--org--tiny/snapshots").join(c);
        assert_eq!(folder("hf:org/tiny").unwrap(), snapshot(&a));
        assert_eq!(folder("hf:org/tiny@v2").unwrap(), snapshot(&b));
        assert_eq!(folder(&format!("hf:org/tiny@{b}")).unwrap(), snapshot(&b));
        assert_eq!(folder("checkpoints/x").unwrap(), PathBuf::from("checkpoints/x"));
        let missing = folder("hf:org/absent").unwrap_err().message;
        assert!(missing.contains("models--org--absent") && missing.contains("huggingface-cli download org/absent"), "{missing}");
        let no_ref = folder("hf:org/tiny@v3").unwrap_err().message;
        assert!(no_ref.contains("refs/v3") && no_ref.contains("--revision v3"), "{no_ref}");
        assert!(folder("hf:/tiny").is_err());
        std::env::remove_var("HF_HUB_CACHE");
    }
}
