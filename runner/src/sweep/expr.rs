//! Expressions of `[derive]` and `[constraints]`, on the `evalexpr` crate:
//! arithmetic (`/` of two integers is integer division), `%`, `min`/`max`,
//! `floor`/`round`/`ceil`, comparisons, `&&`/`||`, and `if(cond, a, b)`,
//! over dotted keys such as `model.hidden`.
use super::keys::Keys;
use evalexpr::{build_operator_tree, ContextWithMutableVariables, DefaultNumericTypes, HashMapContext, Node, Value as ExprValue};
use serde_json::Value;

pub struct Expr {
    pub source: String,
    tree: Node<DefaultNumericTypes>,
    /// The dotted keys it reads, each once.
    pub vars: Vec<String>,
}

impl Expr {
    /// Parses `source` and checks that every key it reads exists.
    pub fn parse(source: &str, keys: &Keys) -> Result<Expr, String> {
        if source.trim().is_empty() {
            return Err("an empty expression".into());
        }
        let tree = build_operator_tree::<DefaultNumericTypes>(source).map_err(|e| format!("cannot parse `{source}`: {e}"))?;
        let mut vars: Vec<String> = Vec::new();
        for var in tree.iter_variable_identifiers() {
            keys.check(var).map_err(|m| format!("in `{source}`: {m}"))?;
            if !vars.iter().any(|v| v == var) {
                vars.push(var.to_string());
            }
        }
        Ok(Expr { source: source.to_string(), tree, vars })
    }

    /// Evaluates against one trial's configuration.
    pub fn eval(&self, config: &Value, keys: &Keys) -> Result<Value, String> {
        let mut context = HashMapContext::<DefaultNumericTypes>::new();
        for var in &self.vars {
            let value = to_expr(var, &keys.value(config, var)?)?;
            context.set_value(var.clone(), value).map_err(|e| e.to_string())?;
        }
        let result = self.tree.eval_with_context(&context).map_err(|e| format!("`{}`: {e}", self.source))?;
        from_expr(&result).ok_or_else(|| format!("`{}` gives {result}, not a number, boolean or string", self.source))
    }
}

fn to_expr(key: &str, value: &Value) -> Result<ExprValue<DefaultNumericTypes>, String> {
    Ok(match value {
        Value::Bool(b) => ExprValue::Boolean(*b),
        Value::String(s) => ExprValue::String(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ExprValue::Int(i),
            None => ExprValue::Float(n.as_f64().expect("a JSON number is an f64")),
        },
        other => return Err(format!("`{key}` is {other}, which expressions cannot use")),
    })
}

fn from_expr(value: &ExprValue<DefaultNumericTypes>) -> Option<Value> {
    match value {
        ExprValue::Int(i) => Some(Value::from(*i)),
        ExprValue::Float(f) if f.is_finite() => Some(Value::from(*f)),
        ExprValue::Boolean(b) => Some(Value::from(*b)),
        ExprValue::String(s) => Some(Value::from(s.clone())),
        _ => None,
    }
}
