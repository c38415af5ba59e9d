//! A resolved configuration as dotted keys and text values: `{"model":
//! {"hidden": 64}}` is `model.hidden = 64`, a string is its text, a list
//! its JSON. What MLflow's params are, and how two configurations are told
//! apart key by key.
use serde_json::Value;

pub fn flatten(config: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk("", config, &mut out);
    out
}

fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                walk(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
