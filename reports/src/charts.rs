//! SVG charts drawn with plotters: lines (learning curves, scaling), a
//! categorical chart with error bars (marginal effects) and a heatmap.
//! Transparent background and mid-grey ink, so each chart reads on a light
//! page and a dark one; the series colours are mid-luminance for the same
//! reason.
use anyhow::{anyhow, Result};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 380;
const INK: RGBColor = RGBColor(0x8a, 0x8a, 0x8a);
/// Tableau 10: distinct, and legible on white and on near-black.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];

/// The colour of level `i` of `n`: the palette for up to ten levels, a
/// blue–green–yellow–red ramp beyond.
pub fn color(i: usize, n: usize) -> RGBColor {
    if n <= PALETTE.len() {
        return PALETTE[i];
    }
    ramp(i as f64 / (n - 1) as f64)
}

fn ramp(t: f64) -> RGBColor {
    const STOPS: [RGBColor; 4] = [PALETTE[0], PALETTE[4], PALETTE[5], PALETTE[2]];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let (i, f) = ((t.floor() as usize).min(STOPS.len() - 2), t - t.floor().min((STOPS.len() - 2) as f64));
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&INK)
}

/// Every chart's axes, grid and labels in the house style.
fn styled<'a, 'b, 'm, X: Ranged, Y: Ranged, DB: DrawingBackend>(mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.axis_style(INK)
        .bold_line_style(INK.mix(0.25))
        .light_line_style(INK.mix(0.08))
        .label_style(font(15))
        .axis_desc_style(font(16))
}

fn failed<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// A plotters SVG made to scale with the page (its `width`/`height`
/// become a maximum through CSS; the `viewBox` keeps proportions).
fn finish(svg: String, description: &str) -> String {
    let title = format!("<title>{}</title>", crate::format::escape(description));
    match svg.find('>') {
        Some(end) => format!("{}{title}{}", &svg[..=end], &svg[end + 1..]).replacen("<svg ", "<svg class=\"chart\" role=\"img\" ", 1),
        None => svg,
    }
}

/// A chart with its title and room for the axis labels.
fn framed<'a, 'b, DB: DrawingBackend>(root: &'a DrawingArea<DB, plotters::coord::Shift>, title: &str, title_size: u32) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, font(title_size)).margin(12).x_label_area_size(40).y_label_area_size(64);
    builder
}

pub struct Axis {
    pub label: String,
    /// Draw log10 of the values, labelled with the values.
    pub log: bool,
}

pub struct Line {
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

pub struct Lines {
    pub title: String,
    pub x: Axis,
    pub y: String,
    pub lines: Vec<Line>,
    pub legend: Vec<(String, RGBColor)>,
    pub marks: Marks,
}

/// How a line's points are drawn.
#[derive(Clone, Copy, PartialEq)]
pub enum Marks {
    /// Connected (curves).
    Line,
    /// Marked only (scatter).
    Points,
    /// Connected and marked (a trial's values at its rungs, one point or several).
    Both,
}

fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    lo - pad..hi + pad
}

pub fn lines(spec: &Lines) -> Result<String> {
    let x_of = |x: f64| if spec.x.log { x.log10() } else { x };
    let usable = |&(x, y): &(f64, f64)| y.is_finite() && x.is_finite() && (!spec.x.log || x > 0.0);
    let all = || spec.lines.iter().flat_map(|l| l.points.iter().copied().filter(usable));
    let x_range = padded(all().map(|(x, _)| x_of(x)));
    let y_range = padded(all().map(|(_, y)| y));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart = framed(&root, &spec.title, 19)
            .build_cartesian_2d(x_range, y_range)
            .map_err(failed)?;
        let x_label = |v: &f64| if spec.x.log { crate::format::si(10f64.powf(*v)) } else { crate::format::si(*v) };
        styled(&mut chart.configure_mesh())
            .x_desc(&spec.x.label)
            .y_desc(&spec.y)
            .x_label_formatter(&x_label)
            .y_label_formatter(&|v| format!("{v:.3}"))
            .draw()
            .map_err(failed)?;
        for line in &spec.lines {
            let points: Vec<(f64, f64)> = line.points.iter().copied().filter(usable).map(|(x, y)| (x_of(x), y)).collect();
            if spec.marks != Marks::Points {
                chart.draw_series(LineSeries::new(points.clone(), line.color.mix(0.85).stroke_width(2))).map_err(failed)?;
            }
            if spec.marks != Marks::Line {
                chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, line.color.filled()))).map_err(failed)?;
            }
        }
        legend(&mut chart, &spec.legend)?;
        root.present().map_err(failed)?;
    }
    Ok(finish(svg, &spec.title))
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(chart: &mut ChartContext<'a, DB, CT>, entries: &[(String, RGBColor)]) -> Result<()>
where
    CT::From: Clone + 'static,
{
    if entries.is_empty() {
        return Ok(());
    }
    for (label, color) in entries {
        let color = *color;
        chart
            .draw_series(std::iter::empty::<Circle<CT::From, i32>>())
            .map_err(failed)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(font(15))
        .border_style(INK.mix(0.4))
        .draw()
        .map_err(failed)?;
    Ok(())
}

/// Means with error bars at categorical positions: one point per level.
pub struct Categories {
    pub title: String,
    pub x: String,
    pub y: String,
    pub levels: Vec<String>,
    /// Mean and spread per level (`None` where no configuration has it).
    pub values: Vec<Option<(f64, f64)>>,
}

pub fn categories(spec: &Categories) -> Result<String> {
    let n = spec.levels.len() as i32;
    let bounds = spec.values.iter().flatten().flat_map(|&(m, s)| [m - s, m + s]);
    let y_range = padded(bounds);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH / 2, HEIGHT)).into_drawing_area();
        let mut chart = framed(&root, &spec.title, 17)
            .build_cartesian_2d((0..n - 1).into_segmented(), y_range)
            .map_err(failed)?;
        let name = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => spec.levels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        styled(chart.configure_mesh().disable_x_mesh())
            .x_desc(&spec.x)
            .y_desc(&spec.y)
            .x_label_formatter(&name)
            .y_label_formatter(&|v| format!("{v:.3}"))
            .draw()
            .map_err(failed)?;
        let at = |i: usize| SegmentValue::CenterOf(i as i32);
        let points: Vec<(SegmentValue<i32>, f64)> = spec.values.iter().enumerate().filter_map(|(i, v)| v.map(|(m, _)| (at(i), m))).collect();
        chart.draw_series(LineSeries::new(points.clone(), PALETTE[0].mix(0.6).stroke_width(2))).map_err(failed)?;
        let bars = spec.values.iter().enumerate().filter_map(|(i, v)| v.filter(|(_, s)| *s > 0.0).map(|(m, s)| PathElement::new(vec![(at(i), m - s), (at(i), m + s)], PALETTE[0].stroke_width(2))));
        chart.draw_series(bars).map_err(failed)?;
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 5, PALETTE[0].filled()))).map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(finish(svg, &spec.title))
}

/// A value per (row level, column level), coloured from best to worst.
pub struct Heatmap {
    pub title: String,
    pub x: String,
    pub y: String,
    pub x_levels: Vec<String>,
    pub y_levels: Vec<String>,
    /// `cells[row][column]`, rows along y.
    pub cells: Vec<Vec<Option<f64>>>,
    /// Whether larger values are better. The best cell is blue, the worst
    /// red.
    pub maximize: bool,
}

pub fn heatmap(spec: &Heatmap) -> Result<String> {
    let (nx, ny) = (spec.x_levels.len() as i32, spec.y_levels.len() as i32);
    let values: Vec<f64> = spec.cells.iter().flatten().flatten().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let goodness = |v: f64| {
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        if spec.maximize {
            t
        } else {
            1.0 - t
        }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart = framed(&root, &spec.title, 19)
            .build_cartesian_2d((0..nx - 1).into_segmented(), (0..ny - 1).into_segmented())
            .map_err(failed)?;
        let name = |levels: &[String], v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => levels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let x_name = |v: &SegmentValue<i32>| name(&spec.x_levels, v);
        let y_name = |v: &SegmentValue<i32>| name(&spec.y_levels, v);
        styled(chart.configure_mesh().disable_mesh())
            .x_desc(&spec.x)
            .y_desc(&spec.y)
            .x_label_formatter(&x_name)
            .y_label_formatter(&y_name)
            .draw()
            .map_err(failed)?;
        let exact = |i: usize| SegmentValue::Exact(i as i32);
        for (row, cells) in spec.cells.iter().enumerate() {
            for (column, cell) in cells.iter().enumerate() {
                let Some(v) = cell.filter(|v| v.is_finite()) else { continue };
                let fill = ramp(1.0 - goodness(v));
                let corners = [(exact(column), exact(row)), (exact(column + 1), exact(row + 1))];
                chart.draw_series(std::iter::once(Rectangle::new(corners, fill.filled()))).map_err(failed)?;
                let luminance = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
                let ink = if luminance > 140.0 { BLACK } else { WHITE };
                let style = ("sans-serif", 16).into_font().color(&ink).pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
                let center = (SegmentValue::CenterOf(column as i32), SegmentValue::CenterOf(row as i32));
                chart.draw_series(std::iter::once(Text::new(format!("{v:.4}"), center, style))).map_err(failed)?;
            }
        }
        root.present().map_err(failed)?;
    }
    Ok(finish(svg, &spec.title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_a_self_contained_svg_with_its_title() {
        let spec = Lines {
            title: "eval/loss against step".into(),
            x: Axis { label: "step".into(), log: false },
            y: "eval/loss".into(),
            lines: vec![Line { color: color(0, 2), points: vec![(0.0, 9.0), (10.0, 7.5), (20.0, 6.0)] }],
            legend: vec![("layers=2".into(), color(0, 2))],
            marks: Marks::Line,
        };
        let svg = lines(&spec).unwrap();
        assert!(svg.starts_with("<svg class=\"chart\""), "{}", &svg[..80]);
        assert!(svg.contains("<title>eval/loss against step</title>") && svg.contains("layers=2") && svg.contains("<polyline"));
        assert!(!svg.contains("http://") || svg.matches("http://").all(|_| svg.contains("xmlns=\"http://www.w3.org/2000/svg\"")));
    }

    #[test]
    fn heatmap_cells_carry_their_values() {
        let spec = Heatmap {
            title: "t".into(),
            x: "hidden".into(),
            y: "layers".into(),
            x_levels: vec!["32".into(), "64".into()],
            y_levels: vec!["2".into()],
            cells: vec![vec![Some(5.25), None]],
            maximize: false,
        };
        let svg = heatmap(&spec).unwrap();
        let text = svg.replace('\n', "");
        assert!(text.contains(">5.2500<") && text.contains(">64<") && text.contains(">32<"), "{svg}");
        // One label per level, no extra segment.
        assert_eq!(text.matches("text-anchor=\"middle\"").count(), 3 + 2 + 1, "title, two axis descriptions, two columns, one value");
    }

    #[test]
    fn many_levels_get_a_ramp_from_blue_to_red() {
        assert_eq!(color(0, 20), PALETTE[0]);
        assert_eq!(color(19, 20), PALETTE[2]);
    }
}
