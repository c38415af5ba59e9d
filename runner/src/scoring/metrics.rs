//! The GLUE evaluation metrics (accuracy, F1, Matthews, Pearson, Spearman) over plain slices, computed as
//! scikit-learn and scipy do so that scores compare with published ones.

/// Fraction of positions where the prediction equals the truth.
pub fn accuracy(predicted: &[i64], truth: &[i64]) -> f64 {
    assert_eq!(predicted.len(), truth.len(), "accuracy: predictions and truth differ in length");
    let right = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    right as f64 / truth.len() as f64
}

/// Binary F1 of the positive class 1 (sklearn's `f1_score`); 0 when there
/// are neither true nor predicted positives (its `zero_division=0`).
pub fn f1(predicted: &[i64], truth: &[i64]) -> f64 {
    let Confusion { tp, fp, fn_, .. } = Confusion::of(predicted, truth);
    // 2tp / (2tp + fp + fn) is the harmonic mean of precision and recall
    // without dividing by zero when one of them is undefined.
    let denominator = 2.0 * tp + fp + fn_;
    if denominator == 0.0 {
        0.0
    } else {
        2.0 * tp / denominator
    }
}

/// Matthews correlation coefficient of binary labels {0, 1} (sklearn's
/// `matthews_corrcoef`); 0 when a row or column of the confusion matrix is
/// empty, e.g. constant predictions.
pub fn matthews(predicted: &[i64], truth: &[i64]) -> f64 {
    let Confusion { tp, tn, fp, fn_ } = Confusion::of(predicted, truth);
    // f64 counts: the product of four counts passes i64::MAX beyond ~110k examples.
    let denominator = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    if denominator == 0.0 {
        0.0
    } else {
        (tp * tn - fp * fn_) / denominator
    }
}

/// Pearson correlation; NaN when either side is constant, as scipy's `pearsonr`.
pub fn pearson(predicted: &[f64], truth: &[f64]) -> f64 {
    assert_eq!(predicted.len(), truth.len(), "pearson: predictions and truth differ in length");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mp, mt) = (mean(predicted), mean(truth));
    // Centring first (two passes) keeps precision when the values sit far from zero.
    let (mut spt, mut spp, mut stt) = (0.0, 0.0, 0.0);
    for (p, t) in predicted.iter().zip(truth) {
        let (dp, dt) = (p - mp, t - mt);
        spt += dp * dt;
        spp += dp * dp;
        stt += dt * dt;
    }
    spt / (spp * stt).sqrt()
}

/// Spearman rank correlation: Pearson of the ranks, tied values sharing
/// their mean rank (scipy's `spearmanr`).
pub fn spearman(predicted: &[f64], truth: &[f64]) -> f64 {
    assert_eq!(predicted.len(), truth.len(), "spearman: predictions and truth differ in length");
    pearson(&ranks(predicted), &ranks(truth))
}

/// 1-based ranks, ties averaged (scipy's `rankdata(method="average")`).
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Counts of the binary confusion matrix, as f64 for the formulas above.
struct Confusion {
    tp: f64,
    tn: f64,
    fp: f64,
    fn_: f64,
}

impl Confusion {
    /// Panics unless both sides have the same length and only labels 0 and 1:
    /// with other labels these binary metrics would silently mean something else.
    fn of(predicted: &[i64], truth: &[i64]) -> Confusion {
        assert_eq!(predicted.len(), truth.len(), "predictions and truth differ in length");
        let mut c = Confusion { tp: 0.0, tn: 0.0, fp: 0.0, fn_: 0.0 };
        for (&p, &t) in predicted.iter().zip(truth) {
            match (p, t) {
                (1, 1) => c.tp += 1.0,
                (0, 0) => c.tn += 1.0,
                (1, 0) => c.fp += 1.0,
                (0, 1) => c.fn_ += 1.0,
                _ => panic!("binary metrics need labels 0 and 1, got prediction {p} for truth {t}"),
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn perfect_predictions_score_one() {
        let labels = [0, 1, 1, 0, 1];
        assert_eq!(accuracy(&labels, &labels), 1.0);
        assert_eq!(f1(&labels, &labels), 1.0);
        assert!(close(matthews(&labels, &labels), 1.0));
        let scores = [0.5, 3.0, 1.25, 4.0];
        assert!(close(pearson(&scores, &scores), 1.0));
        assert!(close(spearman(&scores, &scores), 1.0));
    }

    #[test]
    fn hand_counted_confusion() {
        // tp 2, fp 1, fn 0, tn 1
        let (predicted, truth) = ([1, 1, 1, 0], [1, 1, 0, 0]);
        assert_eq!(accuracy(&predicted, &truth), 0.75);
        assert!(close(f1(&predicted, &truth), 4.0 / 5.0));
        assert!(close(matthews(&predicted, &truth), 2.0 / 12f64.sqrt()));
        // Inverted predictions are perfectly anti-correlated.
        assert!(close(matthews(&[1, 0, 0, 1], &[0, 1, 1, 0]), -1.0));
    }

    #[test]
    fn degenerate_cases_score_zero_like_sklearn() {
        // No positives anywhere: F1 is undefined, sklearn's zero_division=0.
        assert_eq!(f1(&[0, 0, 0], &[0, 0, 0]), 0.0);
        // Constant predictions: an empty column of the confusion matrix.
        assert_eq!(matthews(&[1, 1, 1, 1], &[0, 1, 0, 1]), 0.0);
    }

    #[test]
    #[should_panic(expected = "labels 0 and 1")]
    fn other_labels_are_refused() {
        f1(&[2, 1], &[1, 1]);
    }

    #[test]
    fn pearson_by_hand() {
        // Centred: (-1, 0, 1) and (-1, 1, 0): 1 / sqrt(2 * 2).
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]), 0.5));
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn ties_share_their_mean_rank() {
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 2.0, 2.0, 0.5]), [6.0, 2.0, 4.0, 4.0, 4.0, 1.0]);
        // Monotone but not linear: Spearman is 1 where Pearson is not.
        let (x, y) = ([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0]);
        assert!(close(spearman(&x, &y), 1.0));
        assert!(pearson(&x, &y) < 1.0);
        // Ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5).
        assert!(close(spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]), 4.5 / (22.5f64).sqrt()));
    }
}
