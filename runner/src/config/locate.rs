//! Finds the line of a key in a TOML document, so errors found after parsing
//! (a range check, an unknown knob) can still point at the line to fix.
use toml::de::{DeTable, DeValue};

/// The 1-based line where `path` (table names, then the key) is written in
/// `text`, or of the deepest enclosing table found. `None` if the document
/// does not parse or the first segment is absent.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found = None;
    for segment in path {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *segment) else {
            break;
        };
        found = Some(key.span().start);
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => break,
        }
    }
    found.map(|offset| text[..offset].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const DOC: &str = "[experiment]\nname = \"x\"\n\n[train]\nsteps = 0\n\n[sweep.grid]\n\"model.hidden\" = [1, 2]\n";

    #[test]
    fn finds_keys_in_tables_and_quoted_dotted_keys() {
        assert_eq!(line_of(DOC, &["train", "steps"]), Some(5));
        assert_eq!(line_of(DOC, &["sweep", "grid", "model.hidden"]), Some(8));
    }

    #[test]
    fn falls_back_to_the_enclosing_table() {
        assert_eq!(line_of(DOC, &["train", "lr"]), Some(4));
        assert_eq!(line_of(DOC, &["data", "corpus"]), None);
    }
}
