//! Numbers as the report shows them: swept values as written in an
//! experiment file, metrics to four decimals, counts with SI prefixes.
use runfolder::names::column;

/// A swept value: `256`, `0.1`, `5e-4`.
pub fn level(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if (1e-3..1e5).contains(&v.abs()) {
        let text = format!("{v:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        // Six significant digits at most: a drawn value (`[sweep.random]`,
        // a search) is not shown to seventeen.
        let text = format!("{v:.5e}");
        let (mantissa, exponent) = text.split_once('e').expect("an exponent");
        format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// A result in the unit its column is recorded in.
pub fn result(column: &str, v: f64) -> String {
    match column {
        "perf/tokens_per_s" => thousands(v.round() as i64),
        column::WALL_S => format!("{v:.1}"),
        column::PARAMS | column::FLOPS => si(v),
        _ => format!("{v:.4}"),
    }
}

/// `mean ± std`, or the mean alone for a single trial.
pub fn mean_std(column: &str, mean: f64, std: Option<f64>) -> String {
    match std {
        Some(s) => format!("{} ± {}", result(column, mean), result(column, s)),
        None => result(column, mean),
    }
}

/// `12.3M`, `4.56T`: counts of parameters and FLOPs.
pub fn si(v: f64) -> String {
    const PREFIXES: [(f64, &str); 6] = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    match PREFIXES.iter().find(|(scale, _)| v.abs() >= *scale) {
        Some((scale, prefix)) => format!("{}{prefix}", significant(v / scale)),
        None => format!("{v:.0}"),
    }
}

/// Three significant digits for a value in [1, 1000): `182`, `9.82`, `11.2`.
fn significant(v: f64) -> String {
    let decimals = if v.abs() >= 100.0 { 0 } else if v.abs() >= 10.0 { 1 } else { 2 };
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

pub fn thousands(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 {
        out.insert(0, '-');
    }
    out
}

/// Text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_read_as_written_in_a_file() {
        assert_eq!(level(256.0), "256");
        assert_eq!(level(0.1), "0.1");
        assert_eq!(level(0.0005), "5e-4");
        assert_eq!(level(0.002), "0.002");
        assert_eq!(level(3e-5), "3e-5");
    }

    #[test]
    fn counts_take_si_prefixes() {
        assert_eq!(si(11_170_000.0), "11.2M");
        assert_eq!(si(181_760.0), "182k");
        assert_eq!(si(9.825e9), "9.82G");
        assert_eq!(si(4e15), "4P");
        assert_eq!(si(512.0), "512");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(mean_std("eval/loss", 5.0, Some(0.25)), "5.0000 ± 0.2500");
    }
}
