//! The Tree-structured Parzen Estimator (Bergstra et al. 2011), the model
//! behind `[sweep.search]`: from the points observed so far it suggests the
//! next one. It knows nothing of trials or files; [`super::search`] gives
//! it the observations and [`crate::launch::search`] the run folder's.
//!
//! The observations are split into the best `γ(n) = min(⌈n/10⌉, 25)`
//! ("below") and the rest ("above"); each group becomes a mixture of one
//! kernel per observation plus a prior kernel over the whole range, weighted
//! equally up to 25 observations and ramping down the oldest beyond. A
//! kernel is a product over the keys (so the keys are modelled jointly):
//! a truncated normal per number, centred on the observed value with a
//! width set by its neighbours (the gap to the farther one, clipped to
//! between range/min(100, kernels + 1) and the range), and for a `choice`
//! a distribution with one unit on the observed option and the prior's
//! weight spread over all. 24 candidates drawn from "below" compete, and the
//! one with the highest ratio below/above wins. Where the papers leave room,
//! these are the choices Optuna 5's `TPESampler` makes by default (joint
//! kernels, its widths, weights and γ), so the comparison with it
//! (`tests/tpe.rs`) compares like with like; and like it:
//!
//! - a trial stopped early ranks after every trial that reached its end,
//!   the one that went further first, then by its value there;
//! - a pending trial (still training) is a "constant liar": it counts in
//!   "above" only, so parallel workers are steered away from each other.
//!
//! Unlike it, a failed trial (its metric not a number: diverged) is not
//! ignored: it is always in "above", which tells the search where not to
//! look.
use super::random::Distribution;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Candidates drawn from "below" for each suggestion.
const CANDIDATES: usize = 24;
/// The prior kernel's weight, as one observation's.
const PRIOR_WEIGHT: f64 = 1.0;
/// Draws of a truncated kernel outside its bounds before it is clamped
/// (the bounds hold at least a fifth of any kernel's mass, see [`Numeric`]).
const KERNEL_TRIES: usize = 1000;

/// How far an observed trial got, and with what value (to be minimised:
/// a maximised metric is given negated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Reached its end with this value.
    Complete(f64),
    /// Stopped early at `step`, with this value there.
    Pruned { step: i64, value: f64 },
    /// Its value is not a number (diverged, or the trial failed).
    Failed,
    /// Still training: a constant liar.
    Pending,
}

/// One observed point: a value for each dimension of the space, in order.
#[derive(Debug, Clone)]
pub struct Observed {
    pub values: Vec<Value>,
    pub outcome: Outcome,
}

/// One key of the space as the estimator sees it.
#[derive(Debug, Clone)]
enum Dimension {
    Numeric(Numeric),
    Choice(Vec<Value>),
}

/// A number, in the space kernels live in (the log for `log_uniform`).
/// Kernels are centred inside `[low, high]` and no wider than `width`,
/// which is at most `high - low`, so at least Φ(1/2) − 1/2 ≈ 0.19 of a
/// kernel's mass lies inside: truncating by rejection is cheap.
#[derive(Debug, Clone)]
struct Numeric {
    /// Truncation bounds (infinite for an unbounded normal).
    low: f64,
    high: f64,
    /// The range kernel widths are measured against.
    width: f64,
    /// The prior kernel.
    prior: (f64, f64),
    log: bool,
    integer: bool,
}

impl Dimension {
    fn of(distribution: &Distribution) -> Dimension {
        let uniform = |low: f64, high: f64, log: bool, integer: bool| {
            Dimension::Numeric(Numeric { low, high, width: high - low, prior: ((low + high) / 2.0, high - low), log, integer })
        };
        match distribution {
            Distribution::Uniform { low, high } => uniform(*low, *high, false, false),
            Distribution::LogUniform { low, high } => uniform(low.ln(), high.ln(), true, false),
            // Whole numbers own the unit interval around them.
            Distribution::IntUniform { low, high } => uniform(*low as f64 - 0.5, *high as f64 + 0.5, false, true),
            Distribution::Normal { mean, std, min, max } => {
                // The prior is the normal itself; widths are measured
                // against its central six standard deviations.
                let (low, high) = ((mean - 3.0 * std).max(*min), (mean + 3.0 * std).min(*max));
                // Bounds in the far tail leave the band empty: then six
                // standard deviations.
                let width = if high > low { high - low } else { 6.0 * std };
                Dimension::Numeric(Numeric { low: *min, high: *max, width, prior: (*mean, *std), log: false, integer: false })
            }
            Distribution::Choice(options) => Dimension::Choice(options.clone()),
        }
    }

    /// A value in the estimator's space: a number, or a choice's index.
    fn internal(&self, value: &Value) -> f64 {
        match self {
            Dimension::Numeric(n) => {
                let x = value.as_f64().unwrap_or(f64::NAN);
                if n.log { x.ln() } else { x }
            }
            Dimension::Choice(options) => options.iter().position(|o| o == value).map_or(f64::NAN, |i| i as f64),
        }
    }

    fn external(&self, x: f64) -> Value {
        match self {
            Dimension::Numeric(n) if n.integer => Value::from(x.round() as i64),
            Dimension::Numeric(n) if n.log => Value::from(x.exp()),
            Dimension::Numeric(_) => Value::from(x),
            Dimension::Choice(options) => options[x as usize].clone(),
        }
    }

    /// The kernels of this dimension: one per observed value, then the prior.
    fn kernels(&self, observed: &[f64]) -> Kernels {
        match self {
            Dimension::Numeric(n) => {
                let mut mus: Vec<f64> = observed.to_vec();
                let mut sigmas = n.widths(observed);
                mus.push(n.prior.0);
                sigmas.push(n.prior.1);
                Kernels::Normal { mus, sigmas, low: n.low, high: n.high, integer: n.integer }
            }
            Dimension::Choice(options) => {
                let kernels = observed.len() + 1;
                let spread = PRIOR_WEIGHT / kernels as f64;
                let mut rows: Vec<Vec<f64>> = observed
                    .iter()
                    .map(|&i| {
                        let mut row = vec![spread; options.len()];
                        row[i as usize] += 1.0;
                        let total: f64 = row.iter().sum();
                        row.iter().map(|p| p / total).collect()
                    })
                    .collect();
                rows.push(vec![1.0 / options.len() as f64; options.len()]);
                Kernels::Choice(rows)
            }
        }
    }
}

impl Numeric {
    /// Each observation's kernel width: the gap to its farther neighbour
    /// (the range's ends count as neighbours, except that the lowest and
    /// highest observations look inwards only), clipped.
    fn widths(&self, observed: &[f64]) -> Vec<f64> {
        let (low, high) = (self.prior.0 - self.width / 2.0, self.prior.0 + self.width / 2.0);
        let (low, high) = if self.low.is_finite() && self.high.is_finite() { (self.low, self.high) } else { (low, high) };
        let mut order: Vec<usize> = (0..observed.len()).collect();
        order.sort_by(|&a, &b| observed[a].total_cmp(&observed[b]));
        let sorted: Vec<f64> = std::iter::once(low).chain(order.iter().map(|&i| observed[i])).chain(std::iter::once(high)).collect();
        let mut gaps: Vec<f64> = (1..sorted.len() - 1).map(|i| (sorted[i] - sorted[i - 1]).max(sorted[i + 1] - sorted[i])).collect();
        if gaps.len() >= 2 {
            let last = gaps.len() - 1;
            gaps[0] = sorted[2] - sorted[1];
            gaps[last] = sorted[last + 1] - sorted[last];
        }
        let narrowest = self.width / 100f64.min(observed.len() as f64 + 2.0);
        let mut widths = vec![0.0; observed.len()];
        for (gap, &i) in gaps.into_iter().zip(&order) {
            widths[i] = gap.clamp(narrowest, self.width);
        }
        widths
    }
}

/// One dimension's kernels, in the mixture's order.
enum Kernels {
    Normal { mus: Vec<f64>, sigmas: Vec<f64>, low: f64, high: f64, integer: bool },
    Choice(Vec<Vec<f64>>),
}

impl Kernels {
    fn sample(&self, k: usize, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Kernels::Normal { mus, sigmas, low, high, integer } => {
                let inside = (0..KERNEL_TRIES).map(|_| mus[k] + sigmas[k] * standard_normal(rng)).find(|x| (*low..=*high).contains(x));
                let x = inside.unwrap_or(mus[k]).clamp(*low, *high);
                if *integer { x.round().clamp(low.ceil(), high.floor()) } else { x }
            }
            Kernels::Choice(rows) => {
                let u: f64 = rng.random();
                let mut total = 0.0;
                rows[k].iter().position(|p| {
                    total += p;
                    u < total
                }).unwrap_or(rows[k].len() - 1) as f64
            }
        }
    }

    fn log_pdf(&self, k: usize, x: f64) -> f64 {
        match self {
            Kernels::Normal { mus, sigmas, low, high, .. } => {
                let (mu, sigma) = (mus[k], sigmas[k]);
                let z = (x - mu) / sigma;
                let mass = normal_cdf((high - mu) / sigma) - normal_cdf((low - mu) / sigma);
                -0.5 * z * z - (sigma * (std::f64::consts::TAU).sqrt()).ln() - mass.max(1e-300).ln()
            }
            Kernels::Choice(rows) => rows[k][x as usize].max(1e-300).ln(),
        }
    }
}

/// A mixture of product kernels over the space.
struct Estimator {
    weights: Vec<f64>,
    dimensions: Vec<Kernels>,
}

impl Estimator {
    /// `points[i][d]`: observation i's value in dimension d (internal).
    fn new(space: &[Dimension], points: &[Vec<f64>]) -> Estimator {
        let mut weights = ramp(points.len());
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let dimensions = space.iter().enumerate().map(|(d, dim)| dim.kernels(&points.iter().map(|p| p[d]).collect::<Vec<_>>())).collect();
        Estimator { weights, dimensions }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let u: f64 = rng.random();
        let mut total = 0.0;
        let k = self.weights.iter().position(|w| {
            total += w;
            u < total
        }).unwrap_or(self.weights.len() - 1);
        self.dimensions.iter().map(|d| d.sample(k, rng)).collect()
    }

    fn log_pdf(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = (0..self.weights.len())
            .map(|k| self.weights[k].ln() + self.dimensions.iter().zip(x).map(|(d, &v)| d.log_pdf(k, v)).sum::<f64>())
            .collect();
        let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()
    }
}

/// The observations' weights in the order they were made: equal up to
/// 25, beyond that the oldest ramp down (the newest 25 keep a full one).
fn ramp(n: usize) -> Vec<f64> {
    const FLAT: usize = 25;
    if n < FLAT {
        return vec![1.0; n];
    }
    let rising = n - FLAT;
    let step = if rising > 1 { (1.0 - 1.0 / n as f64) / (rising - 1) as f64 } else { 0.0 };
    (0..rising).map(|i| 1.0 / n as f64 + step * i as f64).chain(std::iter::repeat_n(1.0, FLAT)).collect()
}

/// How many of `n` finished observations make "below".
fn below_count(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// The space a search suggests in: one distribution per key, in order.
#[derive(Debug, Clone)]
pub struct Space {
    dimensions: Vec<Dimension>,
}

impl Space {
    pub fn new(distributions: &[Distribution]) -> Space {
        Space { dimensions: distributions.iter().map(Dimension::of).collect() }
    }

    /// The next point to try after `observed` (in the order they were
    /// suggested), drawing from `rng`.
    pub fn suggest(&self, observed: &[Observed], rng: &mut ChaCha8Rng) -> Vec<Value> {
        let (below, above) = split(observed);
        let internal = |group: &[&Observed]| -> Vec<Vec<f64>> {
            group.iter().map(|o| self.dimensions.iter().zip(&o.values).map(|(d, v)| d.internal(v)).collect()).collect()
        };
        let (below, above) = (Estimator::new(&self.dimensions, &internal(&below)), Estimator::new(&self.dimensions, &internal(&above)));
        let mut best: Option<(f64, Vec<f64>)> = None;
        for _ in 0..CANDIDATES {
            let candidate = below.sample(rng);
            let score = below.log_pdf(&candidate) - above.log_pdf(&candidate);
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, candidate));
            }
        }
        let (_, chosen) = best.expect("at least one candidate");
        self.dimensions.iter().zip(chosen).map(|(d, x)| d.external(x)).collect()
    }
}

/// The observations split into the best ("below") and the rest plus the
/// pending ("above"), each in the order they were made.
fn split(observed: &[Observed]) -> (Vec<&Observed>, Vec<&Observed>) {
    // Rank: reached the end, by value; stopped early, furthest first, then
    // by value; failed.
    let rank = |o: &Observed| match o.outcome {
        Outcome::Complete(v) => (0, 0, v),
        Outcome::Pruned { step, value } => (1, -step, value),
        _ => (2, 0, 0.0),
    };
    let mut finished: Vec<usize> = (0..observed.len()).filter(|&i| observed[i].outcome != Outcome::Pending).collect();
    let failed = finished.iter().filter(|&&i| observed[i].outcome == Outcome::Failed).count();
    finished.sort_by(|&a, &b| {
        let (x, y) = (rank(&observed[a]), rank(&observed[b]));
        (x.0, x.1).cmp(&(y.0, y.1)).then(x.2.total_cmp(&y.2)).then(a.cmp(&b))
    });
    let mut is_below = vec![false; observed.len()];
    // Failed trials rank last and are never among the best.
    for &i in finished.iter().take(below_count(finished.len()).min(finished.len() - failed)) {
        is_below[i] = true;
    }
    let below = observed.iter().zip(&is_below).filter(|(_, b)| **b).map(|(o, _)| o).collect();
    let above = observed.iter().zip(&is_below).filter(|(_, b)| !**b).map(|(o, _)| o).collect();
    (below, above)
}

/// Box–Muller: one standard normal from two uniforms.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u = 1.0 - rng.random::<f64>();
    let v = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Φ, through erfc (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere, which is far finer than any kernel's width).
fn normal_cdf(z: f64) -> f64 {
    if z == f64::INFINITY {
        return 1.0;
    }
    if z == f64::NEG_INFINITY {
        return 0.0;
    }
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    fn space() -> Space {
        Space::new(&[Distribution::LogUniform { low: 1e-5, high: 1e-1 }, Distribution::Choice(vec![json!(2), json!(4), json!(6)])])
    }

    fn objective(values: &[Value]) -> f64 {
        let lr = values[0].as_f64().unwrap();
        let offset = match values[1].as_i64().unwrap() { 2 => 0.5, 4 => 0.0, _ => 0.3 };
        (lr.log10() + 3.5).powi(2) + offset
    }

    fn run(seed: u64) -> Vec<Observed> {
        let space = space();
        let mut observed = Vec::new();
        for i in 0..30 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i);
            let values = space.suggest(&observed, &mut rng);
            let outcome = Outcome::Complete(objective(&values));
            observed.push(Observed { values, outcome });
        }
        observed
    }

    #[test]
    fn one_seed_gives_one_sequence() {
        let (a, b) = (run(7), run(7));
        assert_eq!(a.iter().map(|o| &o.values).collect::<Vec<_>>(), b.iter().map(|o| &o.values).collect::<Vec<_>>());
        assert_ne!(a[5].values, run(8)[5].values);
    }

    #[test]
    fn suggestions_stay_in_the_space_and_close_in_on_the_optimum() {
        let observed = run(1);
        for o in &observed {
            let lr = o.values[0].as_f64().unwrap();
            assert!((1e-5..=1e-1).contains(&lr), "{lr}");
            assert!([json!(2), json!(4), json!(6)].contains(&o.values[1]));
        }
        let best = |os: &[Observed]| os.iter().map(|o| objective(&o.values)).fold(f64::INFINITY, f64::min);
        // The last ten suggestions, made with the model, do better on
        // average than the first ten.
        let mean = |os: &[Observed]| os.iter().map(|o| objective(&o.values)).sum::<f64>() / os.len() as f64;
        assert!(mean(&observed[20..]) < mean(&observed[..10]), "{} {}", mean(&observed[20..]), mean(&observed[..10]));
        assert!(best(&observed) < 0.1, "{}", best(&observed));
    }

    #[test]
    fn pending_points_keep_parallel_suggestions_apart() {
        let space = Space::new(&[Distribution::Uniform { low: 0.0, high: 1.0 }]);
        let observed: Vec<Observed> = (0..10)
            .map(|i| {
                let x = i as f64 / 9.0;
                Observed { values: vec![json!(x)], outcome: Outcome::Complete((x - 0.5).abs()) }
            })
            .collect();
        // Four workers asking with the very same draws (the worst case):
        // without the liars they get one suggestion; with each earlier
        // one pending, four.
        let next = |observed: &[Observed]| space.suggest(observed, &mut ChaCha8Rng::seed_from_u64(3));
        let mut with_liars = observed.clone();
        let mut suggested = Vec::new();
        for _ in 0..4 {
            assert_eq!(next(&observed), next(&observed));
            let values = next(&with_liars);
            assert!(!suggested.contains(&values), "{values:?} twice");
            suggested.push(values.clone());
            with_liars.push(Observed { values, outcome: Outcome::Pending });
        }
    }

    #[test]
    fn early_stopped_and_failed_trials_rank_after_finished_ones() {
        let o = |x: f64, outcome| Observed { values: vec![json!(x)], outcome };
        let observed = vec![
            o(0.1, Outcome::Failed),
            o(0.2, Outcome::Pruned { step: 10, value: -5.0 }),
            o(0.3, Outcome::Complete(3.0)),
            o(0.4, Outcome::Pruned { step: 30, value: 9.0 }),
            o(0.5, Outcome::Pending),
        ];
        let mut ranked = observed[..4].to_vec();
        // 4 finished: below is the best 1, the completed one, whatever the
        // pruned values.
        let (below, above) = split(&ranked);
        assert_eq!(below.iter().map(|o| o.values[0].as_f64().unwrap()).collect::<Vec<_>>(), vec![0.3]);
        assert_eq!(above.len(), 3);
        ranked.retain(|o| o.outcome != Outcome::Complete(3.0));
        let (below, _) = split(&ranked);
        assert_eq!(below[0].values[0], json!(0.4), "the one that went furthest");
        let (below, above) = split(&observed);
        assert_eq!(below.len(), 1);
        assert!(above.iter().any(|o| o.outcome == Outcome::Pending));
        // Only failures so far: none of them is taken for the best.
        let (below, above) = split(&observed[..1]);
        assert!(below.is_empty() && above.len() == 1);
    }

    #[test]
    fn kernel_widths_follow_the_neighbours() {
        let Dimension::Numeric(n) = Dimension::of(&Distribution::Uniform { low: 0.0, high: 10.0 }) else { unreachable!() };
        // Gaps: 2 (to 4), then max(2, 4) = 4 for 4, then 4 for 8 (inwards).
        assert_eq!(n.widths(&[8.0, 2.0, 4.0]), vec![4.0, 2.0, 4.0]);
        // The narrowest width is range / (observations + 2).
        assert_eq!(n.widths(&[5.0, 5.0]), vec![2.5, 2.5]);
        assert!((normal_cdf(1.0) - 0.841344746).abs() < 1e-6);
    }
}
