//! `extends = "base.toml"`: the chain of files an experiment is written on
//! top of, each resolved relative to the file that names it, base first.
use super::locate::line_of;
use crate::error::InputError;
use std::path::{Path, PathBuf};

/// One file of the chain, with its text kept for locating errors.
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    pub text: String,
}

/// The files `path` extends, then `path` itself. A missing target or a
/// cycle is an error at the `extends` line that names it.
pub fn chain(path: &Path) -> Result<Vec<Layer>, InputError> {
    let mut layers: Vec<Layer> = Vec::new();
    let mut next = Some(path.to_path_buf());
    while let Some(path) = next.take() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| InputError::new(format!("cannot read experiment file: {e}")).in_file(&path))?;
        let layer = Layer { path, text };
        if let Some(target) = target(&layer)? {
            let at = |message: String| InputError::new(message).key("extends").in_file(&layer.path).at_line(line_of(&layer.text, &["extends"]));
            if !target.is_file() {
                return Err(at(format!("`{}` does not exist", target.display())));
            }
            let same = |l: &Layer| same_file(&l.path, &target);
            if same(&layer) || layers.iter().any(same) {
                return Err(at(format!("`{}` extends itself through this chain", target.display())));
            }
            next = Some(target);
        }
        layers.push(layer);
    }
    layers.reverse();
    Ok(layers)
}

/// The file named by `extends`, relative to the layer's folder. A TOML
/// syntax error is reported here, as one line with its own line number.
fn target(layer: &Layer) -> Result<Option<PathBuf>, InputError> {
    let table = layer.text.parse::<toml::Table>().map_err(|e| {
        let line = e.span().map(|span| layer.text[..span.start].matches('\n').count() + 1);
        let message = e.message().trim().replace('\n', "; ");
        InputError::new(format!("TOML syntax: {message}")).in_file(&layer.path).at_line(line)
    })?;
    match table.get("extends") {
        None => Ok(None),
        Some(toml::Value::String(name)) => {
            let folder = layer.path.parent().unwrap_or(Path::new(""));
            Ok(Some(folder.join(name)))
        }
        Some(other) => Err(InputError::new(format!("expected a file name, got {other}"))
            .key("extends")
            .in_file(&layer.path)
            .at_line(line_of(&layer.text, &["extends"]))),
    }
}

/// Whether two paths name one file (figment may report a path in another
/// spelling than the one given).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[test]
    fn resolves_relative_to_each_file_base_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("recipes")).unwrap();
        std::fs::write(dir.path().join("base.toml"), "[train]\nsteps = 5\n").unwrap();
        std::fs::write(dir.path().join("recipes/mid.toml"), "extends = \"../base.toml\"\n").unwrap();
        std::fs::write(dir.path().join("top.toml"), "extends = \"recipes/mid.toml\"\n").unwrap();
        let names: Vec<String> = chain(&dir.path().join("top.toml"))
            .unwrap()
            .iter()
            .map(|l| l.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["base.toml", "mid.toml", "top.toml"]);
    }

    #[test]
    fn a_cycle_and_a_missing_target_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "# a\nextends = \"b.toml\"\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "extends = \"a.toml\"\n").unwrap();
        let err = chain(&dir.path().join("a.toml")).unwrap_err();
        assert_eq!((err.key.as_deref(), err.line), (Some("extends"), Some(1)), "{err}");
        assert!(err.message.contains("a.toml") && err.message.contains("itself"), "{err}");

        std::fs::write(dir.path().join("c.toml"), "\nextends = \"gone.toml\"\n").unwrap();
        let err = chain(&dir.path().join("c.toml")).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.to_string().contains("c.toml:2: extends: ") && err.message.contains("gone.toml"), "{err}");
    }
}
