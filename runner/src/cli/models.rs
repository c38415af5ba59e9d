//! `bertlab models`: every plugin with its knobs, types, defaults and docs.
use anyhow::Result;

pub fn print() -> Result<()> {
    for plugin in models::registry::all() {
        println!("{} — {}", plugin.name(), plugin.summary());
        // A count users can check against published sizes and transformers.
        let defaults = serde_json::json!({"vocab_size": 30522});
        if let Ok(knobs) = plugin.resolve(defaults.as_object().expect("an object")) {
            if let Ok(params) = plugin.param_count(&knobs) {
                println!("  {params} parameters at the defaults with a 30,522-word vocabulary (what `params` counts: the MLM model, decoder tied)");
            }
        }
        let width = plugin.knobs().iter().map(|k| k.name.len()).max().unwrap_or(0);
        for knob in plugin.knobs() {
            println!(
                "  {:width$}  {:<18}  default {:<28}  {}",
                knob.name,
                knob.kind.describe(),
                knob.default.to_string(),
                knob.doc,
                width = width
            );
        }
        println!();
    }
    Ok(())
}
