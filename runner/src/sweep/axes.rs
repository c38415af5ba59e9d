//! The sweep space: grid keys, zip groups and the random draws, each one
//! axis of a cartesian product. Points are computed from their index, so a
//! sweep of a million points is walked without being held in memory.
use super::random::RandomAxis;
use crate::config::Loaded;
use crate::error::InputError;
use serde_json::{Map, Value};

pub use crate::trial::Point;

#[derive(Debug, Clone)]
enum Axis {
    /// One `[sweep.grid]` key and its values.
    Grid { key: String, values: Vec<Value> },
    /// One `[[sweep.zip]]` group: keys whose lists advance together.
    Zip { columns: Vec<(String, Vec<Value>)> },
    Random(RandomAxis),
}

impl Axis {
    fn len(&self) -> u64 {
        match self {
            Axis::Grid { values, .. } => values.len() as u64,
            Axis::Zip { columns } => columns[0].1.len() as u64,
            Axis::Random(random) => random.samples,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Space {
    axes: Vec<Axis>,
    /// The product of the axis lengths.
    points: u64,
}

impl Space {
    /// Reads and checks `[sweep]`: every key exists (`check_key`), appears
    /// on one axis only, and every list is non-empty; zipped lists have
    /// equal lengths.
    pub fn build(loaded: &Loaded, check_key: &dyn Fn(&str) -> Result<(), String>) -> Result<Space, InputError> {
        let sweep = &loaded.experiment.sweep;
        let mut axes = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut claim = |key: &str, table: &[&str]| -> Result<(), InputError> {
            check_key(key).map_err(|m| loaded.entry_error(table, key, m))?;
            if seen.iter().any(|k| k == key) {
                return Err(loaded.entry_error(table, key, format!("`{key}` is swept twice: give it one axis")));
            }
            seen.push(key.to_string());
            Ok(())
        };

        for (key, values) in &sweep.grid {
            let table = ["sweep", "grid"];
            claim(key, &table)?;
            axes.push(Axis::Grid { key: key.clone(), values: list(values).map_err(|m| loaded.entry_error(&table, key, m))? });
        }
        for (group, zip) in sweep.zip.iter().enumerate() {
            let index = group.to_string();
            let table = ["sweep", "zip", index.as_str()];
            axes.push(zip_axis(loaded, zip, &table, &mut claim)?);
        }
        let random_table = ["sweep", "random"];
        let random = RandomAxis::parse(&sweep.random, check_key).map_err(|e| match e.key {
            Some(key) => loaded.entry_error(&random_table, &key, e.message),
            None => loaded.error_at("sweep.random", e.message),
        })?;
        if let Some(random) = random {
            for key in random.keys() {
                claim(key, &random_table)?;
            }
            axes.push(Axis::Random(random));
        }

        let points = axes
            .iter()
            .try_fold(1u64, |n, axis| n.checked_mul(axis.len()))
            .ok_or_else(|| loaded.error_at("sweep", "the sweep has more than 2^64 points"))?;
        Ok(Space { axes, points })
    }

    pub fn len(&self) -> u64 {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Every swept key, in axis order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.axes.iter().flat_map(|axis| -> Box<dyn Iterator<Item = &str> + '_> {
            match axis {
                Axis::Grid { key, .. } => Box::new(std::iter::once(key.as_str())),
                Axis::Zip { columns } => Box::new(columns.iter().map(|(k, _)| k.as_str())),
                Axis::Random(random) => Box::new(random.keys()),
            }
        })
    }

    /// The axes in words for `plan`: `model.layers (3) × zip[train.lr, train.batch_size] (2) × random (8)`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .axes
            .iter()
            .map(|axis| match axis {
                Axis::Grid { key, values } => format!("{key} ({})", values.len()),
                Axis::Zip { columns } => {
                    let keys: Vec<&str> = columns.iter().map(|(k, _)| k.as_str()).collect();
                    format!("zip[{}] ({})", keys.join(", "), axis.len())
                }
                Axis::Random(random) => format!("random[{}] ({})", random.keys().collect::<Vec<_>>().join(", "), random.samples),
            })
            .collect();
        if parts.is_empty() {
            "no sweep axes (one point)".into()
        } else {
            parts.join(" × ")
        }
    }

    /// Point `index` (< `len()`), the last axis varying fastest. A random
    /// draw can fail (bounds in a distribution's far tail): the error names
    /// the key.
    pub fn point(&self, index: u64, loaded: &Loaded) -> Result<Point, InputError> {
        let mut digits = vec![0; self.axes.len()];
        let mut rest = index;
        for (digit, axis) in digits.iter_mut().zip(&self.axes).rev() {
            *digit = rest % axis.len();
            rest /= axis.len();
        }
        let mut point = Point::new();
        for (axis, &i) in self.axes.iter().zip(&digits) {
            match axis {
                Axis::Grid { key, values } => point.push((key.clone(), values[i as usize].clone())),
                Axis::Zip { columns } => point.extend(columns.iter().map(|(k, v)| (k.clone(), v[i as usize].clone()))),
                Axis::Random(random) => random
                    .sample(i, &mut point)
                    .map_err(|e| loaded.entry_error(&["sweep", "random"], e.key.as_deref().unwrap_or_default(), e.message))?,
            }
        }
        Ok(point)
    }
}

fn list(values: &Value) -> Result<Vec<Value>, String> {
    match values {
        Value::Array(list) if !list.is_empty() => Ok(list.clone()),
        Value::Array(_) => Err("an axis needs at least one value".into()),
        other => Err(format!("an axis is a list of values, got {other}")),
    }
}

fn zip_axis(
    loaded: &Loaded,
    zip: &Map<String, Value>,
    table: &[&str],
    claim: &mut dyn FnMut(&str, &[&str]) -> Result<(), InputError>,
) -> Result<Axis, InputError> {
    let mut columns: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, values) in zip {
        claim(key, table)?;
        let values = list(values).map_err(|m| loaded.entry_error(table, key, m))?;
        if let Some((first, first_values)) = columns.first() {
            if first_values.len() != values.len() {
                let message = format!(
                    "zipped lists advance together and need equal lengths: `{key}` has {}, `{first}` has {}",
                    values.len(),
                    first_values.len()
                );
                return Err(loaded.entry_error(table, key, message));
            }
        }
        columns.push((key.clone(), values));
    }
    if columns.is_empty() {
        return Err(loaded.error_at(&table.join("."), "an empty [[sweep.zip]] group: give it lists of equal length"));
    }
    Ok(Axis::Zip { columns })
}
