//! Knob schemas: the names, types, ranges, defaults and one-line docs of a
//! plugin's configuration, and the checks that turn user-given values into a
//! complete, valid set.
use serde_json::{Map, Value};

/// Knob values by name, as they come from the `[model]` section.
pub type KnobValues = Map<String, Value>;

#[derive(Debug, Clone, Copy)]
pub enum KnobKind {
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// A float in `min..max` (or `min..=max` when `max_inclusive`).
    Float { min: f64, max: f64, max_inclusive: bool },
}

#[derive(Debug, Clone, Copy)]
pub enum KnobDefault {
    Int(i64),
    Float(f64),
    /// Filled in by the plugin (or the runner) from other values; the text
    /// says how, for `bertlab models`.
    Computed(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Knob {
    pub name: &'static str,
    pub kind: KnobKind,
    pub default: KnobDefault,
    pub doc: &'static str,
}

/// A knob value that was rejected, with the knob it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct KnobError {
    pub knob: String,
    pub message: String,
}

impl KnobError {
    pub fn new(knob: impl Into<String>, message: impl Into<String>) -> Self {
        KnobError { knob: knob.into(), message: message.into() }
    }
}

impl std::fmt::Display for KnobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.knob, self.message)
    }
}

impl std::error::Error for KnobError {}

impl KnobKind {
    /// The type and range in words, as `bertlab models` shows it.
    pub fn describe(&self) -> String {
        match *self {
            KnobKind::Int { min, max } if max == i64::MAX => format!("int >= {min}"),
            KnobKind::Int { min, max } => format!("int in [{min}, {max}]"),
            KnobKind::Float { min, max, max_inclusive } => {
                format!("float in [{min}, {max}{}", if max_inclusive { "]" } else { ")" })
            }
        }
    }

    /// Checks one value and normalises it: TOML writes `0` for a float knob
    /// just as readily as `0.0`, so integers are accepted there and stored as
    /// floats; the reverse (`2.0` layers) is refused rather than truncated.
    fn check(&self, value: &Value) -> Result<Value, String> {
        match *self {
            KnobKind::Int { min, max } => {
                let v = value.as_i64().ok_or_else(|| format!("expected an integer, got {value}"))?;
                if v < min || v > max {
                    return Err(format!("{v} is out of range: {}", self.describe()));
                }
                Ok(Value::from(v))
            }
            KnobKind::Float { min, max, max_inclusive } => {
                let v = value.as_f64().ok_or_else(|| format!("expected a number, got {value}"))?;
                let above = if max_inclusive { v > max } else { v >= max };
                if !v.is_finite() || v < min || above {
                    return Err(format!("{v} is out of range: {}", self.describe()));
                }
                Ok(Value::from(v))
            }
        }
    }
}

impl std::fmt::Display for KnobDefault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KnobDefault::Int(v) => write!(f, "{v}"),
            KnobDefault::Float(v) => write!(f, "{v:?}"),
            KnobDefault::Computed(how) => write!(f, "{how}"),
        }
    }
}

/// Checks `given` against `schema`: unknown names (with a suggestion), types
/// and ranges. Fills fixed defaults; `Computed` ones are left to the plugin.
pub fn check_against(schema: &[Knob], given: &KnobValues) -> Result<KnobValues, KnobError> {
    for name in given.keys() {
        if !schema.iter().any(|k| k.name == name) {
            let names: Vec<&str> = schema.iter().map(|k| k.name).collect();
            let hint = match closest(name, &names) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => String::new(),
            };
            return Err(KnobError::new(
                name.as_str(),
                format!("unknown knob{hint}; known: {}", names.join(", ")),
            ));
        }
    }
    let mut out = KnobValues::new();
    for knob in schema {
        let value = match (given.get(knob.name), knob.default) {
            (Some(v), _) => knob.kind.check(v).map_err(|m| KnobError::new(knob.name, m))?,
            (None, KnobDefault::Int(v)) => Value::from(v),
            (None, KnobDefault::Float(v)) => Value::from(v),
            (None, KnobDefault::Computed(_)) => continue,
        };
        out.insert(knob.name.to_string(), value);
    }
    Ok(out)
}

/// The candidate closest to `name` by edit distance, if it is plausibly a typo.
pub fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[Knob] = &[
        Knob { name: "layers", kind: KnobKind::Int { min: 1, max: i64::MAX }, default: KnobDefault::Int(2), doc: "" },
        Knob {
            name: "dropout",
            kind: KnobKind::Float { min: 0.0, max: 1.0, max_inclusive: false },
            default: KnobDefault::Float(0.1),
            doc: "",
        },
    ];

    fn values(json: &str) -> KnobValues {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn fills_defaults_and_widens_integers_for_float_knobs() {
        let out = check_against(SCHEMA, &values(r#"{"dropout": 0}"#)).unwrap();
        assert_eq!(out["layers"], 2);
        assert!(out["dropout"].is_f64());
    }

    #[test]
    fn rejects_unknown_names_with_a_suggestion() {
        let err = check_against(SCHEMA, &values(r#"{"layer": 3}"#)).unwrap_err();
        assert_eq!(err.knob, "layer");
        assert!(err.message.contains("did you mean `layers`"), "{}", err.message);
    }

    #[test]
    fn rejects_out_of_range_and_wrong_types() {
        assert_eq!(check_against(SCHEMA, &values(r#"{"dropout": 1.0}"#)).unwrap_err().knob, "dropout");
        assert_eq!(check_against(SCHEMA, &values(r#"{"layers": 0}"#)).unwrap_err().knob, "layers");
        assert_eq!(check_against(SCHEMA, &values(r#"{"layers": 2.5}"#)).unwrap_err().knob, "layers");
    }
}
