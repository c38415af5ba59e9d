//! A trial's metric series thinned to a bounded size, for its record: the
//! reports draw curves from these, so neither a report nor the process
//! training the trial ever holds every point of a million-step trial. Each
//! key keeps the points at multiples of a stride that doubles whenever more
//! than [`MAX_POINTS`] are kept, and always its latest point: the values are
//! measured ones, not averages, and a short trial keeps all of them.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Points kept per key at most (between half and all of it after thinning).
pub const MAX_POINTS: usize = 1024;

/// One measured point: step, value, seconds since the trial started.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point(pub i64, pub f64, pub f64);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub stride: i64,
    pub points: Vec<Point>,
    /// The latest point, when it is not on the stride.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Point>,
}

impl Series {
    fn push(&mut self, point: Point) {
        self.stride = self.stride.max(1);
        if point.0 % self.stride == 0 {
            self.points.push(point);
            self.last = None;
            if self.points.len() > MAX_POINTS {
                self.stride *= 2;
                let stride = self.stride;
                self.points.retain(|p| p.0 % stride == 0);
            }
        } else {
            self.last = Some(point);
        }
    }

    /// The kept points in step order, the latest included.
    pub fn all(&self) -> impl Iterator<Item = &Point> {
        self.points.iter().chain(&self.last)
    }
}

/// Thinned series by metric key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Curves(pub BTreeMap<String, Series>);

impl Curves {
    pub fn push(&mut self, key: &str, point: Point) {
        match self.0.get_mut(key) {
            Some(series) => series.push(point),
            None => {
                let mut series = Series::default();
                series.push(point);
                self.0.insert(key.to_string(), series);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_stays_bounded_keeps_its_ends_and_only_measured_values() {
        let mut curves = Curves::default();
        for step in 1..=1_000_003 {
            curves.push("train/loss", Point(step, step as f64 * 0.5, 0.0));
        }
        let series = &curves.0["train/loss"];
        let kept: Vec<&Point> = series.all().collect();
        assert!(kept.len() <= MAX_POINTS + 1 && kept.len() > MAX_POINTS / 2, "{} points kept", kept.len());
        assert_eq!(kept.last().unwrap().0, 1_000_003, "the latest point is kept");
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0), "in step order");
        assert!(kept.iter().all(|p| p.1 == p.0 as f64 * 0.5), "values are the measured ones");
    }

    #[test]
    fn a_short_series_keeps_every_point() {
        let mut curves = Curves::default();
        for step in [0, 5, 10, 15, 20] {
            curves.push("eval/loss", Point(step, 1.0 / (step + 1) as f64, step as f64));
        }
        assert_eq!(curves.0["eval/loss"].all().count(), 5);
    }
}
