//! The dotted keys a sweep, a derivation or a constraint may name: the
//! plugin's knobs under `model.`, the fields of `[data]` and `[train]`.
use crate::config::{fields, DataSection, TrainSection};
use models::knob::{closest, KnobDefault, KnobKind};
use models::Plugin;
use serde_json::Value;

pub const SECTIONS: [&str; 3] = ["model", "data", "train"];

pub struct Keys<'a> {
    plugin: &'a dyn Plugin,
    /// The experiment's sections with every default filled in.
    base: &'a Value,
}

impl<'a> Keys<'a> {
    pub fn new(plugin: &'a dyn Plugin, base: &'a Value) -> Self {
        Keys { plugin, base }
    }

    /// `Ok` if `key` names a setting; otherwise why not, with a suggestion.
    pub fn check(&self, key: &str) -> Result<(), String> {
        let (section, name) = key
            .split_once('.')
            .filter(|(s, _)| SECTIONS.contains(s))
            .ok_or_else(|| format!("`{key}` is not a `section.key` with section one of {}", SECTIONS.join(", ")))?;
        let known = self.names(section);
        if known.contains(&name) {
            return Ok(());
        }
        let hint = closest(name, &known).map(|s| format!(" (did you mean `{section}.{s}`?)")).unwrap_or_default();
        Err(format!("`{key}` is not a key of [{section}]{hint}"))
    }

    /// `Ok` if a sweep, a search or a derivation may set `key`: a setting
    /// that is part of what trials are, not of where one trains. Trials
    /// differing only in `train.devices` would be the same trial (its id
    /// leaves the devices out), so it is set for the whole run instead.
    pub fn check_settable(&self, key: &str) -> Result<(), String> {
        self.check(key)?;
        match key {
            "train.devices" => Err("is where each trial trains, not what it trains: trials differing only in it would be one trial. Set it for the whole run (in [train], or --set train.devices=N)".into()),
            _ => Ok(()),
        }
    }

    fn names(&self, section: &str) -> Vec<&'a str> {
        match section {
            // `init` sweeps starting weights (a glob in `model.init` is such a sweep).
            "model" => self.plugin.knobs().iter().map(|k| k.name).chain(["init"]).collect(),
            "data" => fields::of::<DataSection>().to_vec(),
            _ => fields::of::<TrainSection>().to_vec(),
        }
    }

    /// Whether the setting holds whole numbers (so `256.0` from an
    /// expression can be taken as `256`).
    pub fn is_integer(&self, key: &str) -> bool {
        let Some((section, name)) = key.split_once('.') else { return false };
        match section {
            "model" => self.plugin.knobs().iter().any(|k| k.name == name && matches!(k.kind, KnobKind::Int { .. })),
            _ => self.base[section][name].is_i64(),
        }
    }

    /// The value an expression sees for `key` in `config`: what the sweep
    /// or a derivation set, else what the file set (`config` may hold only
    /// the sections a sweep changes), else the plugin's fixed default.
    pub fn value(&self, config: &Value, key: &str) -> Result<Value, String> {
        let (section, name) = key.split_once('.').ok_or_else(|| format!("`{key}` is not a `section.key`"))?;
        let from = |root: &Value| root.get(section).and_then(|s| s.get(name)).cloned();
        if let Some(v) = config.get(section).map_or_else(|| from(self.base), |_| from(config)) {
            return Ok(v);
        }
        let knob = self.plugin.knobs().iter().find(|k| k.name == name).ok_or_else(|| format!("`{key}` has no value"))?;
        match knob.default {
            KnobDefault::Int(v) => Ok(v.into()),
            KnobDefault::Float(v) => Ok(v.into()),
            KnobDefault::Computed(how) => {
                Err(format!("`{key}` has no value yet (its default is computed: {how}); set it or derive it"))
            }
        }
    }
}
