//! `bertlab models`: every plugin with its knobs, types, defaults and docs.
use anyhow::Result;

pub fn print() -> Result<()> {
    for plugin in models::registry::all() {
        println!("{} — {}", plugin.name(), plugin.summary());
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
