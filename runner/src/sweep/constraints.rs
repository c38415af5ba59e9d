//! `[constraints] require = [...]`: boolean expressions over a trial's
//! settings, evaluated after derivation; a trial for which one is false is
//! dropped (and `plan` says which one dropped it).
use super::expr::Expr;
use super::keys::Keys;
use crate::config::Loaded;
use crate::error::InputError;
use serde_json::Value;

pub struct Constraints(Vec<Expr>);

impl Constraints {
    pub fn build(loaded: &Loaded, keys: &Keys) -> Result<Constraints, InputError> {
        let require = &loaded.experiment.constraints.require;
        let parsed = require.iter().enumerate().map(|(i, source)| {
            Expr::parse(source, keys).map_err(|m| loaded.item_error("constraints.require", i, m))
        });
        Ok(Constraints(parsed.collect::<Result<_, _>>()?))
    }

    /// The first constraint `config` fails, if any. An expression that
    /// cannot be evaluated or is not true/false is an error with its index.
    pub fn first_failed(&self, config: &Value, keys: &Keys) -> Result<Option<&str>, (usize, String)> {
        for (i, expr) in self.0.iter().enumerate() {
            match expr.eval(config, keys).map_err(|m| (i, m))? {
                Value::Bool(true) => {}
                Value::Bool(false) => return Ok(Some(&expr.source)),
                other => return Err((i, format!("`{}` gives {other}; a constraint must be true or false", expr.source))),
            }
        }
        Ok(None)
    }
}
