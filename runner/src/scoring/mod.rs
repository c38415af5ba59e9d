//! GLUE's metrics by name ([`Metric`]), computed from a fine-tuned model's
//! predictions (classes or values) against the labels by the formulas in
//! [`metrics`]. At the bottom of the pipeline: the data layer names a GLUE
//! task's metrics, training computes them.
pub mod metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    F1,
    /// Matthews correlation (CoLA).
    Matthews,
    Pearson,
    Spearman,
}

impl Metric {
    /// The name after `eval/`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Matthews => "mcc",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
        }
    }

    /// `predicted` holds class indices or, for regression, values.
    pub fn compute(self, predicted: &[f64], truth: &[f64]) -> f64 {
        let classes = |values: &[f64]| values.iter().map(|&v| v as i64).collect::<Vec<i64>>();
        match self {
            Metric::Accuracy => metrics::accuracy(&classes(predicted), &classes(truth)),
            Metric::F1 => metrics::f1(&classes(predicted), &classes(truth)),
            Metric::Matthews => metrics::matthews(&classes(predicted), &classes(truth)),
            Metric::Pearson => metrics::pearson(predicted, truth),
            Metric::Spearman => metrics::spearman(predicted, truth),
        }
    }
}
