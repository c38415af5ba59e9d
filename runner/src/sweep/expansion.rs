//! From points to trials: a sweep point applied to the base configuration,
//! derived values computed, constraints applied, the result checked by the
//! sections and the model plugin, then once per seed a [`Trial`].
use super::axes::Space;
use super::constraints::Constraints;
use super::derive::Derivations;
use super::keys::{Keys, SECTIONS};
use super::search::Search;
use crate::config::{DataSection, Loaded, TrainSection};
use crate::error::InputError;
use crate::model_dir::{self, ModelDir};
use crate::trial::{id_with_seed, short, Point, Trial, TrialConfig};
use models::{knob::closest, KnobValues, Plugin};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// What one (point, seed) of a sweep becomes.
pub enum Planned {
    Run(Trial),
    /// Dropped by the constraint quoted.
    Dropped { swept: Point, derived: Point, seed: u64, constraint: String },
}

/// An experiment's sweep, checked and ready to be walked point by point.
pub struct Expansion<'a> {
    loaded: &'a Loaded,
    plugin: &'static dyn Plugin,
    /// The sections with their defaults, before any sweep value.
    base: Value,
    space: Space,
    /// `[sweep.search]`: the points come from its suggestions instead.
    search: Option<Search>,
    derivations: Derivations,
    constraints: Constraints,
    fixed: Fixed,
}

/// The sections no sweep value or derivation touches: the same in every
/// trial, so checked once rather than per point.
#[derive(Default)]
struct Fixed {
    model: Option<(KnobValues, Option<String>)>,
    data: Option<DataSection>,
    train: Option<TrainSection>,
}

impl Fixed {
    fn has(&self, section: &str) -> bool {
        match section {
            "model" => self.model.is_some(),
            "data" => self.data.is_some(),
            _ => self.train.is_some(),
        }
    }
}

/// `[[baseline]]` rows must match on real keys and carry numbers; the
/// heatmap's two keys must be swept or derived.
fn check_report_keys(loaded: &Loaded, keys: &Keys, set: &[String]) -> Result<(), InputError> {
    for (i, baseline) in loaded.experiment.baseline.iter().enumerate() {
        let index = i.to_string();
        for key in baseline.matches.keys() {
            keys.check(key).map_err(|m| loaded.entry_error(&["baseline", &index, "match"], key, m))?;
        }
        if baseline.metrics.is_empty() {
            return Err(loaded.error_at(&format!("baseline.{index}.name"), format!("baseline `{}` has no metrics: add metrics = {{ \"eval/loss\" = ... }}", baseline.name)));
        }
    }
    if let Some(heatmap) = &loaded.experiment.report.heatmap {
        if heatmap.len() != 2 {
            return Err(loaded.error_at("report.heatmap", format!("names the heatmap's two axes, e.g. [\"model.layers\", \"model.hidden\"]; got {} keys", heatmap.len())));
        }
        for key in heatmap {
            if !set.contains(key) {
                return Err(loaded.error_at("report.heatmap", format!("`{key}` is not swept or derived (those are: {})", set.join(", "))));
            }
        }
    }
    Ok(())
}

/// A point after derivation and constraints, before the seeds.
enum Resolved {
    Kept { config: TrialConfig, identity: Sha256, derived: Point },
    Dropped { derived: Point, constraint: String },
}

impl<'a> Expansion<'a> {
    /// Checks the whole sweep definition: axes, derivations, constraints.
    pub fn new(loaded: &'a Loaded) -> Result<Self, InputError> {
        let plugin = find_plugin(loaded)?;
        let base = serde_json::to_value(&loaded.experiment).expect("experiment serialises");
        let keys = Keys::new(plugin, &base);
        let space = Space::build(loaded, &|key| keys.check_settable(key))?;
        let search = search(loaded, &space, &keys)?;
        let swept: Vec<&str> = space.keys().chain(search.iter().flat_map(Search::keys)).collect();
        let derivations = Derivations::build(loaded, &keys, &swept)?;
        let constraints = Constraints::build(loaded, &keys)?;
        let set: Vec<String> = swept.iter().copied().chain(derivations.keys()).map(String::from).collect();
        check_report_keys(loaded, &keys, &set)?;
        let touched = |section: &str| set.iter().any(|k| k.split_once('.').map(|(s, _)| s) == Some(section));
        let (model_touched, data_touched, train_touched) = (touched("model"), touched("data"), touched("train"));
        if search.is_some() && data_touched {
            let key = set.iter().find(|k| k.starts_with("data.")).expect("touched");
            let message = format!("`{key}` is a [data] key: a search's trials share one prepared corpus, so it searches model.* and train.* keys only");
            return Err(loaded.error_at("sweep.search", message));
        }
        let mut expansion = Expansion { loaded, plugin, base, space, search, derivations, constraints, fixed: Fixed::default() };
        let none = Point::new();
        let fixed = Fixed {
            model: (!model_touched).then(|| expansion.model(expansion.base["model"].clone(), &none, &none)).transpose()?,
            data: (!data_touched).then(|| expansion.section(&expansion.base, "data", DataSection::check, &none, &none)).transpose()?,
            train: (!train_touched).then(|| expansion.section(&expansion.base, "train", TrainSection::check, &none, &none)).transpose()?,
        };
        expansion.fixed = fixed;
        if let Some(search) = &expansion.search {
            // A value the search may draw that breaks the trial is found
            // now, not after the trials before it trained.
            for (key, value) in search.extremes() {
                expansion.resolve(&vec![(key, value)])?;
            }
        }
        Ok(expansion)
    }

    pub fn loaded(&self) -> &'a Loaded {
        self.loaded
    }

    pub fn plugin(&self) -> &'static dyn Plugin {
        self.plugin
    }

    pub fn space(&self) -> &Space {
        &self.space
    }

    /// The keys each point sets: the axes', or the search's.
    pub fn swept_keys(&self) -> impl Iterator<Item = &str> {
        self.space.keys().chain(self.search.iter().flat_map(Search::keys))
    }

    pub fn search(&self) -> Option<&Search> {
        self.search.as_ref()
    }

    /// `[data]` when no sweep value touches it (always, for a search).
    pub fn fixed_data(&self) -> Option<&DataSection> {
        self.fixed.data.as_ref()
    }

    /// The first trial of the first point the constraints keep: for a
    /// search, its base configuration (no search key set).
    pub fn base_trial(&self) -> Result<Option<Trial>, InputError> {
        for planned in self.iter() {
            if let Planned::Run(trial) = planned? {
                return Ok(Some(trial));
            }
        }
        Ok(None)
    }

    /// A search's suggestion once per seed (or dropped by a constraint).
    pub fn suggestion(&self, point: Point) -> Result<Vec<Planned>, InputError> {
        let resolved = self.resolve(&point)?;
        Ok(self.seeded(resolved, point))
    }

    pub fn seeds(&self) -> &[u64] {
        &self.loaded.experiment.experiment.seeds
    }

    /// Points times seeds, before constraints drop any (a search's:
    /// its suggestions times seeds).
    pub fn len(&self) -> u64 {
        let points = self.search.as_ref().map_or(self.space.len(), |s| s.trials);
        points.saturating_mul(self.seeds().len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The derived keys, in evaluation order.
    pub fn derived_keys(&self) -> Vec<&str> {
        self.derivations.keys().collect()
    }

    /// Every (point, seed) in order, seeds varying fastest. Nothing is held
    /// beyond the point at hand.
    pub fn iter(&self) -> impl Iterator<Item = Result<Planned, InputError>> + '_ {
        self.points(0..self.space.len())
    }

    /// Like [`Expansion::iter`] for the points in `range` only, so parts of
    /// a large sweep can be walked on several threads.
    pub fn points(&self, range: std::ops::Range<u64>) -> impl Iterator<Item = Result<Planned, InputError>> + '_ {
        range.flat_map(move |index| {
            let per_seed: Vec<Result<Planned, InputError>> = match self.space.point(index, self.loaded).and_then(|p| Ok((self.resolve(&p)?, p))) {
                Err(e) => vec![Err(e)],
                Ok((resolved, point)) => self.seeded(resolved, point).into_iter().map(Ok).collect(),
            };
            per_seed
        })
    }

    /// The point once per seed; the last seed takes the values, the others
    /// copies.
    fn seeded(&self, resolved: Resolved, point: Point) -> Vec<Planned> {
        let seeds = self.seeds();
        let mut planned = Vec::with_capacity(seeds.len());
        match resolved {
            Resolved::Kept { mut config, identity, derived } => {
                for &seed in &seeds[..seeds.len() - 1] {
                    let config = TrialConfig { seed, ..config.clone() };
                    let id = id_with_seed(identity.clone(), seed);
                    planned.push(Planned::Run(Trial { id, swept: point.clone(), derived: derived.clone(), config, task: None }));
                }
                config.seed = seeds[seeds.len() - 1];
                let id = id_with_seed(identity, config.seed);
                planned.push(Planned::Run(Trial { id, swept: point, derived, config, task: None }));
            }
            Resolved::Dropped { derived, constraint } => {
                for &seed in seeds {
                    planned.push(Planned::Dropped { swept: point.clone(), derived: derived.clone(), seed, constraint: constraint.clone() });
                }
            }
        }
        planned
    }

    fn resolve(&self, point: &Point) -> Result<Resolved, InputError> {
        let keys = Keys::new(self.plugin, &self.base);
        // Only the sections a point can change; expressions read the others
        // from the base through `keys`.
        let mut config = Value::Object(Default::default());
        for section in SECTIONS.iter().filter(|s| !self.fixed.has(s)) {
            config[*section] = self.base[*section].clone();
        }
        for (key, value) in point {
            let (section, name) = key.split_once('.').expect("checked by Space::build");
            config[section][name] = value.clone();
        }
        let derived = self.derivations.apply(&mut config, &keys).map_err(|e| {
            let key = e.key.unwrap_or_default();
            self.loaded.entry_error(&["derive"], &key, format!("{}{}", e.message, in_trial(point)))
        })?;
        if let Some(constraint) = self.constraints.first_failed(&config, &keys).map_err(|(i, m)| {
            self.loaded.item_error("constraints.require", i, format!("{m}{}", in_trial(point)))
        })? {
            return Ok(Resolved::Dropped { derived, constraint: constraint.to_string() });
        }
        let config = self.check(config, point, &derived)?;
        let identity = config.identity();
        Ok(Resolved::Kept { config, identity, derived })
    }

    /// Types and ranges of the resolved sections and knobs; sections no
    /// sweep value touches were checked once, in [`Expansion::new`].
    fn check(&self, mut config: Value, point: &Point, derived: &Point) -> Result<TrialConfig, InputError> {
        let mut data = match &self.fixed.data {
            Some(data) => data.clone(),
            None => self.section(&config, "data", DataSection::check, point, derived)?,
        };
        let train = match &self.fixed.train {
            Some(train) => train.clone(),
            None => self.section(&config, "train", TrainSection::check, point, derived)?,
        };
        let (model, init) = match &self.fixed.model {
            Some(model) => model.clone(),
            None => self.model(config["model"].take(), point, derived)?,
        };
        if let Some(folder) = &init {
            // A model started from a folder reads text with that folder's tokenizer.
            if data.trains_tokenizer() {
                let resolved = crate::hub::folder(folder).map_err(|e| self.blame("model.init", e.message, point, derived))?;
                let file = model_dir::tokenizer_file(&resolved)
                    .ok_or_else(|| self.blame("model.init", format!("`{folder}` has no tokenizer.json or vocab.txt: set data.tokenizer"), point, derived))?;
                // A hub id stays one, so the trial id does not depend on
                // where this machine keeps its cache.
                data.tokenizer = if crate::hub::is_hub_id(folder) { folder.clone() } else { file.display().to_string() };
            }
        }
        if let Some(max_position) = model.get("max_position").and_then(Value::as_i64) {
            if max_position < data.seq_len {
                let message = format!("{max_position} is less than data.seq_len ({})", data.seq_len);
                return Err(self.blame("model.max_position", message, point, derived));
            }
        }
        let task = self.loaded.experiment.experiment.task;
        Ok(TrialConfig { plugin: self.plugin.name().to_string(), task, seed: 0, model, init, data, train })
    }

    /// `[data]` or `[train]` typed and range-checked. A type error is blamed
    /// on the first key the point or a derivation set there.
    fn section<T: for<'de> Deserialize<'de>>(
        &self,
        config: &Value,
        name: &str,
        check: fn(&T) -> Result<(), InputError>,
        point: &Point,
        derived: &Point,
    ) -> Result<T, InputError> {
        let typed = T::deserialize(&config[name]).map_err(|e| {
            let key = point.iter().chain(derived).map(|(k, _)| k.as_str()).find(|k| k.starts_with(&format!("{name}.")));
            self.blame(key.unwrap_or(name), e.to_string(), point, derived)
        })?;
        check(&typed).map_err(|e| self.blame_keyed(e, point, derived))?;
        Ok(typed)
    }

    /// The resolved knobs and, with `init`, the folder they start from.
    fn model(&self, given: Value, point: &Point, derived: &Point) -> Result<(KnobValues, Option<String>), InputError> {
        let mut given = match given {
            Value::Object(given) => given,
            _ => KnobValues::new(),
        };
        let blame = |key: &str, message: String| self.blame(key, message, point, derived);
        let init = match given.remove("init") {
            None => None,
            Some(Value::String(folder)) => Some(folder),
            Some(other) => return Err(blame("model.init", format!("expected a folder path, got {other}"))),
        };
        if let Some(folder) = &init {
            given = self.knobs_from(folder, given).map_err(|e| self.blame_keyed(e, point, derived))?;
        }
        let knobs = self.plugin.resolve(&given).map_err(|e| blame(&format!("model.{}", e.knob), e.message))?;
        Ok((knobs, init))
    }

    /// The knobs of the model in `folder`, with the regularisation knobs
    /// the experiment sets; any other knob the experiment sets must agree
    /// with the folder, since the weights fix the architecture.
    fn knobs_from(&self, folder: &str, given: KnobValues) -> Result<KnobValues, InputError> {
        let dir = ModelDir::find(folder).map_err(|e| InputError::at_key("model.init", e.to_string()))?;
        if dir.plugin.name() != self.plugin.name() {
            let message = format!("`{folder}` holds a `{}` model; set [experiment] model = \"{}\"", dir.plugin.name(), dir.plugin.name());
            return Err(InputError::at_key("model.init", message));
        }
        let mut knobs = dir.knobs;
        for (name, value) in given {
            let same = knobs.get(&name).is_some_and(|v| v.as_f64().is_some() && v.as_f64() == value.as_f64());
            if REGULARISATION.contains(&name.as_str()) || same {
                knobs.insert(name, value);
            } else {
                let theirs = knobs.get(&name).map_or("no such knob".to_string(), |v| v.to_string());
                let message = format!("{value} differs from the init folder's {theirs}: the weights fix the architecture (only {} may change)", REGULARISATION.join(", "));
                return Err(InputError::at_key(format!("model.{name}"), message));
            }
        }
        Ok(knobs)
    }

    /// An error about `key`, blamed on the sweep axis or derivation that set
    /// the bad value; a key set in the file names the trial, since a swept
    /// value may be the other half of the problem (hidden swept, heads fixed).
    fn blame(&self, key: &str, message: String, point: &Point, derived: &Point) -> InputError {
        if let Some((k, v)) = derived.iter().find(|(k, _)| k == key) {
            return self.loaded.entry_error(&["derive"], k, format!("value {v}: {message}{}", in_trial(point)));
        }
        match point.iter().find(|(k, _)| k == key) {
            Some((k, v)) => self.sweep_error(k, format!("value {v}: {message}")),
            None => self.loaded.error_at(key, format!("{message}{}", in_trial(point))),
        }
    }

    /// [`Expansion::blame`] for an error a check keyed but did not locate.
    fn blame_keyed(&self, err: InputError, point: &Point, derived: &Point) -> InputError {
        self.blame(err.key.as_deref().unwrap_or_default(), err.message, point, derived)
    }

    /// An error about a swept key, at the axis that sweeps it.
    fn sweep_error(&self, key: &str, message: String) -> InputError {
        let sweep = &self.loaded.experiment.sweep;
        if sweep.grid.contains_key(key) {
            return self.loaded.entry_error(&["sweep", "grid"], key, message);
        }
        if let Some(group) = sweep.zip.iter().position(|z| z.contains_key(key)) {
            return self.loaded.entry_error(&["sweep", "zip", &group.to_string()], key, message);
        }
        if sweep.search.contains_key(key) {
            return self.loaded.entry_error(&["sweep", "search"], key, message);
        }
        self.loaded.entry_error(&["sweep", "random"], key, message)
    }
}

/// `[sweep.search]`, checked; a search makes every point, so it takes no
/// other axis.
fn search(loaded: &Loaded, space: &Space, keys: &Keys) -> Result<Option<Search>, InputError> {
    let table = ["sweep", "search"];
    let search = Search::parse(&loaded.experiment.sweep.search, |key| keys.check_settable(key)).map_err(|e| match e.key {
        Some(key) if Search::is_setting(&key) => loaded.error_at(&format!("sweep.search.{key}"), e.message),
        Some(key) => loaded.entry_error(&table, &key, e.message),
        None => loaded.error_at("sweep.search", e.message),
    })?;
    if let (Some(_), Some(key)) = (&search, space.keys().next()) {
        let message = format!("a search suggests every swept value, so `{key}` cannot be on another axis too: give it to [sweep.search] (a list as {{ choice = [...] }})");
        return Err(loaded.error_at("sweep.search", message));
    }
    Ok(search)
}

/// Knobs a model started from a folder may change: they do not touch the
/// weights' shapes.
const REGULARISATION: [&str; 2] = ["dropout", "attention_dropout"];

/// ` (in the trial with a=1, b=2)`, or nothing for the base configuration.
fn in_trial(point: &Point) -> String {
    if point.is_empty() {
        return String::new();
    }
    let swept: Vec<String> = point.iter().map(|(k, v)| format!("{k}={}", short(v))).collect();
    format!(" (in the trial with {})", swept.join(", "))
}

/// The trials `run` trains (none for a search: it suggests them as it
/// goes), how many the constraints dropped, and how many repeated an
/// earlier trial exactly (a `choice` drawing the same value twice) and so
/// run once.
pub struct Expanded {
    pub trials: Vec<Trial>,
    pub dropped: usize,
    pub duplicates: usize,
}

/// Expands the experiment into its trials. Any invalid trial rejects the
/// whole experiment before anything trains; so does a sweep whose every
/// trial the constraints drop.
pub fn expand(loaded: &Loaded) -> Result<Expanded, InputError> {
    let expansion = Expansion::new(loaded)?;
    let mut expanded = Expanded { trials: Vec::new(), dropped: 0, duplicates: 0 };
    if expansion.search().is_some() {
        // Its trials come from its suggestions, as it runs.
        return Ok(expanded);
    }
    let mut seen = std::collections::HashSet::new();
    for planned in expansion.iter() {
        match planned? {
            Planned::Run(trial) if !seen.insert(trial.id.clone()) => expanded.duplicates += 1,
            Planned::Run(trial) => expanded.trials.push(trial),
            Planned::Dropped { .. } => expanded.dropped += 1,
        }
    }
    if expanded.trials.is_empty() {
        return Err(loaded.error_at("constraints.require", format!("the constraints drop all {} trials", expanded.dropped)));
    }
    Ok(expanded)
}

fn find_plugin(loaded: &Loaded) -> Result<&'static dyn Plugin, InputError> {
    let name = &loaded.experiment.experiment.model;
    models::registry::find(name).ok_or_else(|| {
        let names = models::registry::names();
        let hint = closest(name, &names).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        loaded.error_at("experiment.model", format!("unknown model plugin `{name}`{hint}; known: {}", names.join(", ")))
    })
}
