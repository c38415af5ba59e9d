//! `[derive]`: settings computed per trial from other settings
//! (`"model.heads" = "model.hidden / 64"`), after the sweep values and
//! before validation. A derivation may read other derived keys; they are
//! evaluated in dependency order, and a cycle is an error.
use super::axes::Point;
use super::expr::Expr;
use super::keys::Keys;
use crate::config::Loaded;
use crate::error::InputError;
use serde_json::Value;

pub struct Derivations {
    /// Target key and its expression, each after the ones it reads.
    ordered: Vec<(String, Expr)>,
}

impl Derivations {
    pub fn build(loaded: &Loaded, keys: &Keys, swept: &[&str]) -> Result<Derivations, InputError> {
        let table = ["derive"];
        let mut parsed: Vec<(String, Expr)> = Vec::new();
        for (key, source) in &loaded.experiment.derive {
            let fail = |m: String| loaded.entry_error(&table, key, m);
            keys.check_settable(key).map_err(fail)?;
            if swept.contains(&key.as_str()) {
                return Err(fail(format!("`{key}` is both swept and derived: keep one")));
            }
            let source = source.as_str().ok_or_else(|| fail(format!("an expression is a string, e.g. \"model.hidden / 64\"; got {source}")))?;
            parsed.push((key.clone(), Expr::parse(source, keys).map_err(fail)?));
        }
        let ordered = order(parsed).map_err(|cycle| {
            let message = format!("derived values depend on each other in a cycle: {}", cycle.join(" -> "));
            loaded.entry_error(&table, &cycle[0], message)
        })?;
        Ok(Derivations { ordered })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.ordered.iter().map(|(k, _)| k.as_str())
    }

    /// Sets every derived key in `config` and returns the values set. The
    /// error is keyed by the derived key whose expression failed.
    pub fn apply(&self, config: &mut Value, keys: &Keys) -> Result<Point, InputError> {
        let mut derived = Point::new();
        for (key, expr) in &self.ordered {
            let fail = |m: String| InputError::at_key(key, m);
            let mut value = expr.eval(config, keys).map_err(fail)?;
            if keys.is_integer(key) {
                value = whole(&value).ok_or_else(|| {
                    fail(format!("`{}` gives {value}, but `{key}` is a whole number (use integer division or round())", expr.source))
                })?;
            }
            let (section, name) = key.split_once('.').expect("checked by Keys");
            config[section][name] = value.clone();
            derived.push((key.clone(), value));
        }
        Ok(derived)
    }
}

/// `256.0` as `256`; integers as they are; anything else `None`.
fn whole(value: &Value) -> Option<Value> {
    if value.is_i64() {
        return Some(value.clone());
    }
    let x = value.as_f64()?;
    (x.fract() == 0.0 && x.abs() < 2f64.powi(53)).then(|| Value::from(x as i64))
}

/// Orders derivations so each comes after the derived keys it reads
/// (depth-first, otherwise in key order). On a cycle, returns its
/// keys, first repeated at the end.
fn order(parsed: Vec<(String, Expr)>) -> Result<Vec<(String, Expr)>, Vec<String>> {
    let index_of = |key: &str| parsed.iter().position(|(k, _)| k == key);
    let mut state = vec![0u8; parsed.len()]; // 0 new, 1 on the path, 2 placed
    let mut placed = Vec::new();
    fn visit(
        i: usize,
        parsed: &[(String, Expr)],
        index_of: &dyn Fn(&str) -> Option<usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
        placed: &mut Vec<usize>,
    ) -> Result<(), Vec<String>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = path.iter().position(|&p| p == i).expect("on the path");
                let mut cycle: Vec<String> = path[start..].iter().map(|&p| parsed[p].0.clone()).collect();
                cycle.push(parsed[i].0.clone());
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for var in &parsed[i].1.vars {
            if let Some(j) = index_of(var) {
                visit(j, parsed, index_of, state, path, placed)?;
            }
        }
        path.pop();
        state[i] = 2;
        placed.push(i);
        Ok(())
    }
    for i in 0..parsed.len() {
        visit(i, &parsed, &index_of, &mut state, &mut Vec::new(), &mut placed)?;
    }
    let mut slots: Vec<Option<(String, Expr)>> = parsed.into_iter().map(Some).collect();
    Ok(placed.into_iter().map(|i| slots[i].take().expect("each placed once")).collect())
}
