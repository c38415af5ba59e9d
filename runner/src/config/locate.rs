//! Finds the line of a key in a TOML document, so errors found after parsing
//! (a range check, an unknown knob, a bad expression) can still point at the
//! line to fix.
use toml::de::{DeTable, DeValue};

/// Where a key path was found in a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// 1-based line of the deepest segment found.
    pub line: usize,
    /// Whether every segment was found (not just an enclosing table).
    pub exact: bool,
}

/// Looks up `path` (table names, array indices as decimal strings for
/// `[[sweep.zip]]`, then the key) in `text`. `None` if the document does not
/// parse or the first segment is absent.
pub fn find(text: &str, path: &[&str]) -> Option<Found> {
    let root = DeTable::parse(text).ok()?;
    let (first, rest) = path.split_first()?;
    let (key, mut value) = root.get_ref().iter().find(|(k, _)| k.get_ref().as_ref() == *first)?;
    let mut offset = key.span().start;
    let mut matched = 1;
    for segment in rest {
        let next = match value.get_ref() {
            DeValue::Table(table) => table.iter().find(|(k, _)| k.get_ref().as_ref() == *segment).map(|(k, v)| (k.span().start, v)),
            DeValue::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)).map(|v| (v.span().start, v)),
            _ => None,
        };
        let Some((start, inner)) = next else { break };
        offset = start;
        matched += 1;
        value = inner;
    }
    Some(Found { line: text[..offset].matches('\n').count() + 1, exact: matched == path.len() })
}

/// The line of `path`, or of the deepest enclosing table found.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    find(text, path).map(|f| f.line)
}

#[cfg(test)]
mod tests {
    use super::{find, line_of, Found};

    const DOC: &str = "[experiment]\nname = \"x\"\n\n[train]\nsteps = 0\n\n[sweep.grid]\n\"model.hidden\" = [1, 2]\n\n[[sweep.zip]]\n\"train.lr\" = [1, 2]\n\n[[sweep.zip]]\n\"train.steps\" = [1]\n";

    #[test]
    fn finds_keys_in_tables_and_quoted_dotted_keys() {
        assert_eq!(line_of(DOC, &["train", "steps"]), Some(5));
        assert_eq!(line_of(DOC, &["sweep", "grid", "model.hidden"]), Some(8));
    }

    #[test]
    fn finds_keys_in_arrays_of_tables() {
        assert_eq!(find(DOC, &["sweep", "zip", "1", "train.steps"]), Some(Found { line: 14, exact: true }));
        assert_eq!(line_of(DOC, &["sweep", "zip", "0", "train.lr"]), Some(11));
    }

    #[test]
    fn falls_back_to_the_enclosing_table() {
        assert_eq!(find(DOC, &["train", "lr"]), Some(Found { line: 4, exact: false }));
        assert_eq!(line_of(DOC, &["data", "corpus"]), None);
    }
}
