//! `[sweep.search]`: an adaptive search over per-key distributions. It
//! makes `trials` suggestions, one at a time: the first `startup` are
//! `[sweep.random]`'s draws with the same seed, the rest come from the
//! [`tpe`] model of what was observed so far.
//!
//! Suggestions are numbered by draw: draw `d` uses stream `d` of the
//! generators, whatever was drawn before it, so a suggestion depends only
//! on (seed, draw, the observations) and a resumed search draws exactly
//! what an uninterrupted one would. A suggestion the constraints drop, or
//! that repeats an earlier one, is drawn again with the next draw
//! ([`crate::launch::search`]).
use super::random::{key_seed, Distribution, RandomAxis};
use super::tpe::{self, Observed};
use crate::error::InputError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

pub use crate::trial::Point;

/// The entries of `[sweep.search]` that are not keys to search.
const SETTINGS: [&str; 3] = ["method", "trials", "startup"];
/// Random suggestions before the model is used, unless `startup` says.
const DEFAULT_STARTUP: u64 = 10;

#[derive(Debug, Clone)]
pub struct Search {
    /// Suggestions to make (each trained once per seed).
    pub trials: u64,
    /// Random suggestions before the model is used.
    pub startup: u64,
    seed: u64,
    /// The keys and their distributions; also the start-up draws.
    random: RandomAxis,
    space: tpe::Space,
}

impl Search {
    /// Reads the table; `None` when it is empty (no search). An error is
    /// keyed by the entry it is about, unkeyed when about the table.
    pub fn parse(table: &Map<String, Value>, check_key: impl Fn(&str) -> Result<(), String>) -> Result<Option<Search>, InputError> {
        if table.is_empty() {
            return Ok(None);
        }
        match table.get("method") {
            None => return Err(InputError::new("`method` is missing: method = \"tpe\" (the Tree-structured Parzen Estimator)")),
            Some(Value::String(m)) if m == "tpe" => {}
            Some(other) => return Err(InputError::at_key("method", format!("unknown search method {other}: the one there is, is \"tpe\""))),
        }
        let count = |name: &str, least: u64, default: Option<u64>| match (table.get(name), default) {
            (None, Some(default)) => Ok(default),
            (None, None) => Err(InputError::new(format!("`{name}` is missing: how many configurations to try"))),
            (Some(v), _) => v.as_u64().filter(|n| *n >= least).ok_or_else(|| InputError::at_key(name, format!("expected a whole number >= {least}, got {v}"))),
        };
        let trials = count("trials", 1, None)?;
        let startup = count("startup", 1, Some(DEFAULT_STARTUP))?;
        let (seed, draws) = RandomAxis::draws(table, &SETTINGS, check_key)?;
        // A space of only choices and whole numbers has so many points: a
        // search never suggests one twice, so it cannot make more.
        let sizes: Option<Vec<u64>> = draws.iter().map(|(_, d, _)| match d {
            Distribution::Choice(options) => Some(options.len() as u64),
            Distribution::IntUniform { low, high } => Some((high - low) as u64 + 1),
            _ => None,
        }).collect();
        if let Some(points) = sizes.and_then(|s| s.into_iter().try_fold(1u64, u64::checked_mul)).filter(|&n| n < trials) {
            return Err(InputError::at_key("trials", format!("{trials} suggestions from a space of {points} configurations: a search suggests each at most once (a grid would try them all)")));
        }
        let random = RandomAxis::new(trials, draws);
        let distributions: Vec<Distribution> = random.distributions().map(|(_, d)| d.clone()).collect();
        Ok(Some(Search { trials, startup, seed, random, space: tpe::Space::new(&distributions) }))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.random.keys()
    }

    /// Whether `entry` of the table is a setting rather than a key to search.
    pub fn is_setting(entry: &str) -> bool {
        SETTINGS.contains(&entry) || entry == "seed"
    }

    /// Values worth trying before the search starts, one key at a time:
    /// each option of a `choice`, the ends of a range.
    pub fn extremes(&self) -> Vec<(String, Value)> {
        let mut values = Vec::new();
        for (key, distribution) in self.random.distributions() {
            let ends: Vec<Value> = match distribution {
                Distribution::Choice(options) => options.clone(),
                Distribution::Uniform { low, high } | Distribution::LogUniform { low, high } => vec![Value::from(*low), Value::from(*high)],
                Distribution::IntUniform { low, high } => vec![Value::from(*low), Value::from(*high)],
                Distribution::Normal { .. } => Vec::new(),
            };
            values.extend(ends.into_iter().map(|v| (key.to_string(), v)));
        }
        values
    }

    /// The point of draw `draw`, after `observed` (the suggestions kept so
    /// far, in order: the model is used once `startup` of them finished,
    /// as Optuna counts, so parallel workers draw at random until then).
    pub fn suggest(&self, draw: u64, observed: &[Observed]) -> Result<Point, InputError> {
        let mut point = Point::new();
        let finished = observed.iter().filter(|o| o.outcome != tpe::Outcome::Pending).count();
        if (finished as u64) < self.startup {
            self.random.sample(draw, &mut point)?;
            return Ok(point);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(key_seed(self.seed, "tpe"));
        rng.set_stream(draw);
        let values = self.space.suggest(observed, &mut rng);
        Ok(self.keys().map(String::from).zip(values).collect())
    }

    /// The values of `point` in the space's key order (what [`Observed`]
    /// holds).
    pub fn values(&self, point: &Point) -> Vec<Value> {
        self.keys().map(|k| point.iter().find(|(key, _)| key == k).map_or(Value::Null, |(_, v)| v.clone())).collect()
    }

    /// `tpe over train.lr log_uniform [1e-05, 0.01], model.layers choice
    /// [2,4,6]: 40 suggestions, the first 10 random (seed 0)`.
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self.random.distributions().map(|(k, d)| format!("{k} {}", d.describe())).collect();
        format!("tpe over {}: {} suggestions, the first {} random (seed {})", keys.join(", "), self.trials, self.startup.min(self.trials), self.seed)
    }
}
