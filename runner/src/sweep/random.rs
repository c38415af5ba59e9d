//! `[sweep.random]`: `samples` draws from per-key distributions.
//!
//! Each key draws from its own generator, seeded by the sweep's `seed` and
//! the key's name, and sample `i` uses stream `i` of it. So a draw depends
//! only on (seed, key, i): adding an axis or another random key leaves the
//! draws alone, more `samples` extend the list without changing its start,
//! and any sample can be drawn without drawing the ones before it.
use crate::error::InputError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    Uniform { low: f64, high: f64 },
    LogUniform { low: f64, high: f64 },
    /// Both ends included.
    IntUniform { low: i64, high: i64 },
    Choice(Vec<Value>),
    /// Truncated to `[min, max]` when given.
    Normal { mean: f64, std: f64, min: f64, max: f64 },
}

/// Draws of a truncated normal that land outside its bounds are redrawn up
/// to this many times; bounds that leave less than about 1% of the mass
/// are rejected rather than looped on.
const NORMAL_TRIES: usize = 1000;

pub const FORMS: &str = "{ uniform = [low, high] }, { log_uniform = [low, high] }, { int_uniform = [low, high] }, \
                         { choice = [a, b, ...] }, { normal = [mean, std], min = ..., max = ... }";

impl Distribution {
    pub fn parse(value: &Value) -> Result<Distribution, String> {
        let table = value.as_object().ok_or_else(|| format!("expected a distribution, one of {FORMS}; got {value}"))?;
        let kinds = ["uniform", "log_uniform", "int_uniform", "choice", "normal"];
        let named: Vec<&str> = kinds.iter().copied().filter(|k| table.contains_key(*k)).collect();
        let [kind] = named.as_slice() else {
            return Err(format!("name exactly one distribution, one of {FORMS}; got {value}"));
        };
        let allowed: &[&str] = if *kind == "normal" { &["normal", "min", "max"] } else { &[kind] };
        if let Some(extra) = table.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("`{extra}` does not belong in a `{kind}` distribution"));
        }
        let args = &table[*kind];
        match *kind {
            "uniform" => {
                let (low, high) = pair(args, kind)?;
                ordered(low, high, kind)?;
                Ok(Distribution::Uniform { low, high })
            }
            "log_uniform" => {
                let (low, high) = pair(args, kind)?;
                if low <= 0.0 {
                    return Err(format!("log_uniform bounds must be > 0, got [{low}, {high}]"));
                }
                ordered(low, high, kind)?;
                Ok(Distribution::LogUniform { low, high })
            }
            "int_uniform" => {
                let ints = args.as_array().filter(|a| a.len() == 2).and_then(|a| Some((a[0].as_i64()?, a[1].as_i64()?)));
                let (low, high) = ints.ok_or_else(|| format!("int_uniform takes two integers [low, high], got {args}"))?;
                if low > high {
                    return Err(format!("int_uniform needs low <= high, got [{low}, {high}]"));
                }
                Ok(Distribution::IntUniform { low, high })
            }
            "choice" => match args.as_array() {
                Some(options) if !options.is_empty() => Ok(Distribution::Choice(options.clone())),
                _ => Err(format!("choice takes a non-empty list of values, got {args}")),
            },
            _ => normal(table),
        }
    }

    /// `log_uniform [1e-05, 0.01]`, as written in the file.
    pub fn describe(&self) -> String {
        match self {
            Distribution::Uniform { low, high } => format!("uniform [{low}, {high}]"),
            Distribution::LogUniform { low, high } => format!("log_uniform [{low}, {high}]"),
            Distribution::IntUniform { low, high } => format!("int_uniform [{low}, {high}]"),
            Distribution::Choice(options) => format!("choice {}", Value::Array(options.clone())),
            Distribution::Normal { mean, std, min, max } => format!("normal [{mean}, {std}] in [{min}, {max}]"),
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> Result<Value, String> {
        Ok(match self {
            Distribution::Uniform { low, high } => Value::from(low + (high - low) * rng.random::<f64>()),
            Distribution::LogUniform { low, high } => Value::from((low.ln() + (high.ln() - low.ln()) * rng.random::<f64>()).exp()),
            Distribution::IntUniform { low, high } => Value::from(rng.random_range(*low..=*high)),
            Distribution::Choice(options) => options[rng.random_range(0..options.len())].clone(),
            Distribution::Normal { mean, std, min, max } => {
                let inside = (0..NORMAL_TRIES).map(|_| mean + std * standard_normal(rng)).find(|x| (*min..=*max).contains(x));
                Value::from(inside.ok_or_else(|| {
                    format!("normal({mean}, {std}) almost never falls in [{min}, {max}]: widen the bounds")
                })?)
            }
        })
    }
}

fn pair(args: &Value, kind: &str) -> Result<(f64, f64), String> {
    let nums = args.as_array().filter(|a| a.len() == 2).and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
    nums.filter(|(a, b)| a.is_finite() && b.is_finite()).ok_or_else(|| format!("{kind} takes two numbers [low, high], got {args}"))
}

fn ordered(low: f64, high: f64, kind: &str) -> Result<(), String> {
    if low < high {
        Ok(())
    } else {
        Err(format!("{kind} needs low < high, got [{low}, {high}]"))
    }
}

fn normal(table: &Map<String, Value>) -> Result<Distribution, String> {
    let (mean, std) = pair(&table["normal"], "normal").map_err(|_| format!("normal takes [mean, std], got {}", table["normal"]))?;
    if std <= 0.0 {
        return Err(format!("normal needs std > 0, got {std}"));
    }
    let bound = |name: &str, missing: f64| match table.get(name) {
        None => Ok(missing),
        Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| format!("normal's `{name}` must be a number, got {v}")),
    };
    let (min, max) = (bound("min", f64::NEG_INFINITY)?, bound("max", f64::INFINITY)?);
    if min >= max {
        return Err(format!("normal needs min < max, got min = {min}, max = {max}"));
    }
    Ok(Distribution::Normal { mean, std, min, max })
}

/// Box–Muller: one standard normal from two uniforms.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u = 1.0 - rng.random::<f64>(); // in (0, 1], so the log is finite
    let v = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The random axis: `samples` points, each a draw of every key.
#[derive(Debug, Clone)]
pub struct RandomAxis {
    pub samples: u64,
    /// Key, its distribution and its generator's seed, in key order.
    draws: Vec<(String, Distribution, u64)>,
}

impl RandomAxis {
    /// Reads the table; `None` when it is empty (no random axis). An error
    /// is keyed by the entry it is about, unkeyed when about the table.
    pub fn parse(table: &Map<String, Value>, check_key: impl Fn(&str) -> Result<(), String>) -> Result<Option<RandomAxis>, InputError> {
        if table.is_empty() {
            return Ok(None);
        }
        let samples = match table.get("samples") {
            None => return Err(InputError::new("`samples` is missing: how many draws to make")),
            Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| InputError::at_key("samples", format!("expected a whole number >= 1, got {v}")))?,
        };
        let (_, draws) = RandomAxis::draws(table, &["samples"], check_key)?;
        Ok(Some(RandomAxis { samples, draws }))
    }

    /// A table's `seed` (default 0), and its other entries but `settings`
    /// as keys and distributions, each key's generator seeded from both.
    #[allow(clippy::type_complexity)]
    pub fn draws(table: &Map<String, Value>, settings: &[&str], check_key: impl Fn(&str) -> Result<(), String>) -> Result<(u64, Vec<(String, Distribution, u64)>), InputError> {
        fn entry(key: &str) -> impl Fn(String) -> InputError + '_ {
            move |message| InputError::at_key(key, message)
        }
        let seed = match table.get("seed") {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| entry("seed")(format!("expected a whole number >= 0, got {v}")))?,
        };
        let mut draws = Vec::new();
        for (key, value) in table.iter().filter(|(k, _)| *k != "seed" && !settings.contains(&k.as_str())) {
            check_key(key).map_err(entry(key))?;
            let distribution = Distribution::parse(value).map_err(entry(key))?;
            draws.push((key.clone(), distribution, key_seed(seed, key)));
        }
        if draws.is_empty() {
            return Err(InputError::new("no keys to draw: add e.g. \"train.lr\" = { log_uniform = [1e-5, 1e-3] }"));
        }
        Ok((seed, draws))
    }

    /// The axis of `samples` draws of `draws` (from [`RandomAxis::draws`]).
    pub fn new(samples: u64, draws: Vec<(String, Distribution, u64)>) -> RandomAxis {
        RandomAxis { samples, draws }
    }

    pub fn distributions(&self) -> impl Iterator<Item = (&str, &Distribution)> {
        self.draws.iter().map(|(k, d, _)| (k.as_str(), d))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.draws.iter().map(|(k, _, _)| k.as_str())
    }

    /// Sample `index`: one value per key, or an error keyed by the key that
    /// could not be drawn.
    pub fn sample(&self, index: u64, point: &mut Vec<(String, Value)>) -> Result<(), InputError> {
        for (key, distribution, seed) in &self.draws {
            let mut rng = ChaCha8Rng::seed_from_u64(*seed);
            rng.set_stream(index);
            let value = distribution.draw(&mut rng).map_err(|m| InputError::at_key(key, m))?;
            point.push((key.clone(), value));
        }
        Ok(())
    }
}

/// A generator seed for `key` under the table's `seed`.
pub fn key_seed(seed: u64, key: &str) -> u64 {
    let digest = Sha256::digest(format!("{seed}/{key}").as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("a digest has 8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn axis(table: Value) -> RandomAxis {
        RandomAxis::parse(table.as_object().unwrap(), |_| Ok(())).unwrap().unwrap()
    }

    fn draws(axis: &RandomAxis, n: u64) -> Vec<Vec<(String, Value)>> {
        (0..n)
            .map(|i| {
                let mut point = Vec::new();
                axis.sample(i, &mut point).unwrap();
                point
            })
            .collect()
    }

    #[test]
    fn a_draw_depends_only_on_seed_key_and_index() {
        let one = axis(json!({"samples": 5, "seed": 3, "train.lr": {"log_uniform": [1e-5, 1e-3]}}));
        let two = axis(json!({"samples": 8, "seed": 3, "train.lr": {"log_uniform": [1e-5, 1e-3]}, "model.dropout": {"uniform": [0, 0.2]}}));
        let lr = |points: Vec<Vec<(String, Value)>>| -> Vec<Value> {
            points.into_iter().map(|p| p.into_iter().find(|(k, _)| k == "train.lr").unwrap().1).collect()
        };
        assert_eq!(lr(draws(&one, 5)), lr(draws(&two, 5)));
        let other_seed = axis(json!({"samples": 5, "seed": 4, "train.lr": {"log_uniform": [1e-5, 1e-3]}}));
        assert_ne!(lr(draws(&one, 5)), lr(draws(&other_seed, 5)));
    }

    #[test]
    fn truncated_normal_stays_in_bounds_and_tail_bounds_are_refused() {
        let bounded = axis(json!({"samples": 200, "x.y": {"normal": [0.1, 0.1], "min": 0.0, "max": 0.15}}));
        for point in draws(&bounded, 200) {
            let x = point[0].1.as_f64().unwrap();
            assert!((0.0..=0.15).contains(&x), "{x}");
        }
        let tail = axis(json!({"samples": 1, "x.y": {"normal": [0, 1], "min": 8.0}}));
        assert!(tail.sample(0, &mut Vec::new()).unwrap_err().message.contains("widen"));
    }

    #[test]
    fn malformed_distributions_say_what_is_expected() {
        for (bad, says) in [
            (json!({"log_uniform": [0, 1]}), "> 0"),
            (json!({"uniform": [1, 0]}), "low < high"),
            (json!({"uniform": [0, 1], "choice": [1]}), "exactly one"),
            (json!({"choice": []}), "non-empty"),
            (json!({"int_uniform": [0.5, 2]}), "two integers"),
            (json!({"normal": [0, -1]}), "std > 0"),
            (json!({"uniform": [0, 1], "min": 0}), "does not belong"),
            (json!([0, 1]), "expected a distribution"),
        ] {
            let err = Distribution::parse(&bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
