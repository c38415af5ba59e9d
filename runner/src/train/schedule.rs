//! The learning-rate schedule: linear warm-up to the peak, then linear decay
//! to zero at the last step (BERT's schedule, and `transformers`'
//! `get_linear_schedule_with_warmup`).

/// Learning rate for update `step` (0-based) of `steps`.
pub fn linear_warmup_decay(peak: f64, step: i64, warmup: i64, steps: i64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        peak * (steps - step) as f64 / (steps - warmup).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::linear_warmup_decay as lr;

    #[test]
    fn warms_up_peaks_and_decays() {
        assert_eq!(lr(1.0, 0, 4, 10), 0.25);
        assert_eq!(lr(1.0, 3, 4, 10), 1.0);
        assert_eq!(lr(1.0, 4, 4, 10), 1.0);
        assert!((lr(1.0, 9, 4, 10) - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(lr(1.0, 0, 0, 10), 1.0);
    }
}
