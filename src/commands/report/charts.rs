//! The report's charts as inline SVG strings. Pure: numbers in, markup out.
//!
//! Plain SVG written here rather than a chart crate: the page must be one
//! self-contained file that prints and fits a 390 px phone. `plotters` renders
//! SVG too, but with absolute pixel sizes and its own text layout (and a font
//! stack it expects to find), so charts do not reflow to the page width, and it
//! brings a large dependency tree for five simple chart shapes; `charming` emits
//! ECharts options that need the ECharts JavaScript in the page (about 1 MB,
//! which must be inlined to stay offline) and draws nothing when printed
//! without scripts. These SVGs have a `viewBox` and scale with the page, use
//! the page's font, carry a `<title>` for screen readers, and need no script.
//!
//! Every chart is drawn in a 360-unit-wide coordinate system (about a phone's
//! width, so 1 unit ≈ 1 CSS px there) and scaled by CSS elsewhere.

use std::fmt::Write as _;

use super::units;

/// Width of every chart's coordinate system.
const WIDTH: f64 = 360.0;
/// Height of one bar of a booking chart, with its labels.
const ROW_HEIGHT: f64 = 40.0;
/// Plot area of the trend charts: left margin for y labels, bottom for x labels.
const PLOT_LEFT: f64 = 34.0;
const PLOT_TOP: f64 = 8.0;
const PLOT_HEIGHT: f64 = 120.0;
const TREND_HEIGHT: f64 = PLOT_TOP + PLOT_HEIGHT + 20.0;

/// One bar of a booking chart: a bucket's booking rate and its interval.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct BookingBar {
    pub label: String,
    pub booked: u64,
    pub eligible: u64,
}

/// A named line of a trend chart (`None` = no value that period).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Series {
    pub name: String,
    /// CSS class giving its colour (`s1`, `s2`).
    pub class: &'static str,
    pub points: Vec<Option<f64>>,
}

/// `&`, `<`, `>`, `"` escaped for text and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn open_svg(height: f64, title: &str) -> String {
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        escape(title)
    )
}

/// The upper end of a percentage axis: the largest interval end, rounded up to
/// 10%, at least 10%.
fn rate_scale(bars: &[BookingBar]) -> f64 {
    let top = bars
        .iter()
        .filter_map(|b| units::wilson_95(b.booked, b.eligible))
        .map(|(_, high)| high)
        .fold(0.0_f64, f64::max);
    ((top * 10.0).ceil() / 10.0).clamp(0.1, 1.0)
}

/// Horizontal bars of booking rate per bucket, each with its 95% Wilson
/// interval as a whisker and `rate · interval · n` beside its label.
pub(super) fn booking_bars(title: &str, bars: &[BookingBar]) -> String {
    let scale = rate_scale(bars);
    let x = |rate: f64| (rate / scale * WIDTH).clamp(0.0, WIDTH);
    let height = bars.len() as f64 * ROW_HEIGHT + 22.0;
    let mut svg = open_svg(height, title);
    for (i, bar) in bars.iter().enumerate() {
        let top = i as f64 * ROW_HEIGHT;
        let _ = write!(
            svg,
            "<text class=\"lbl\" x=\"0\" y=\"{:.1}\">{}</text>",
            top + 12.0,
            escape(&bar.label)
        );
        let detail = match units::wilson_95(bar.booked, bar.eligible) {
            None => "no eligible leads".to_string(),
            Some((low, high)) => format!(
                "{} ({}–{}) · n = {}",
                units::percent(bar.booked as f64 / bar.eligible as f64),
                units::percent(low),
                units::percent(high),
                bar.eligible
            ),
        };
        let _ = write!(
            svg,
            "<text class=\"val\" x=\"{WIDTH}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect class=\"track\" x=\"0\" y=\"{:.1}\" width=\"{WIDTH}\" height=\"12\"/>",
            top + 12.0,
            escape(&detail),
            top + 18.0
        );
        if let Some((low, high)) = units::wilson_95(bar.booked, bar.eligible) {
            let rate = bar.booked as f64 / bar.eligible as f64;
            let (x_low, x_high, mid) = (x(low), x(high), top + 24.0);
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"0\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\"/>\
                 <path class=\"ci\" d=\"M{x_low:.1} {mid:.1}H{x_high:.1}M{x_low:.1} {:.1}V{:.1}M{x_high:.1} {:.1}V{:.1}\"/>",
                top + 18.0,
                x(rate),
                mid - 5.0,
                mid + 5.0,
                mid - 5.0,
                mid + 5.0
            );
        }
    }
    let axis = bars.len() as f64 * ROW_HEIGHT + 14.0;
    let _ = write!(
        svg,
        "<text class=\"axis\" x=\"0\" y=\"{axis:.1}\">0%</text>\
         <text class=\"axis\" x=\"{:.1}\" y=\"{axis:.1}\" text-anchor=\"middle\">{}</text>\
         <text class=\"axis\" x=\"{WIDTH}\" y=\"{axis:.1}\" text-anchor=\"end\">{}</text></svg>",
        WIDTH / 2.0,
        units::percent(scale / 2.0),
        units::percent(scale)
    );
    svg
}

/// A round number at or above `max` for an axis: 1, 2 or 5 × 10^k.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

/// The x labels of a trend chart: first, middle and last period.
fn x_labels(svg: &mut String, labels: &[String], band: f64) {
    let n = labels.len();
    let mut picks = vec![0, n / 2, n.saturating_sub(1)];
    picks.dedup();
    for (k, i) in picks.into_iter().enumerate() {
        let Some(label) = labels.get(i) else { continue };
        let center = PLOT_LEFT + band * (i as f64 + 0.5);
        let anchor = match k {
            0 => "start",
            _ if i + 1 == n && n > 1 => "end",
            _ => "middle",
        };
        let x = match anchor {
            "start" => PLOT_LEFT,
            "end" => WIDTH,
            _ => center,
        };
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            PLOT_TOP + PLOT_HEIGHT + 14.0,
            escape(label)
        );
    }
}

/// The y axis: a baseline, a midline and their labels.
fn y_axis(svg: &mut String, top_label: &str, mid_label: &str) {
    let (base, mid) = (PLOT_TOP + PLOT_HEIGHT, PLOT_TOP + PLOT_HEIGHT / 2.0);
    let _ = write!(
        svg,
        "<path class=\"grid\" d=\"M{PLOT_LEFT} {PLOT_TOP}H{WIDTH}M{PLOT_LEFT} {mid}H{WIDTH}\"/>\
         <path class=\"base\" d=\"M{PLOT_LEFT} {base}H{WIDTH}\"/>\
         <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
         <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
         <text class=\"axis\" x=\"{:.1}\" y=\"{base:.1}\" text-anchor=\"end\">0</text>",
        PLOT_LEFT - 3.0,
        PLOT_TOP + 4.0,
        escape(top_label),
        PLOT_LEFT - 3.0,
        mid + 4.0,
        escape(mid_label),
        PLOT_LEFT - 3.0,
    );
}

/// Columns per period: the whole column is `total` (anchors), its darker lower
/// part `part` (answered).
pub(super) fn stacked_columns(
    title: &str,
    labels: &[String],
    total: &[u64],
    part: &[u64],
) -> String {
    let mut svg = open_svg(TREND_HEIGHT, title);
    let max = nice_ceiling(total.iter().copied().max().unwrap_or(0) as f64);
    y_axis(&mut svg, &format!("{max}"), &format!("{}", max / 2.0));
    let band = (WIDTH - PLOT_LEFT) / labels.len().max(1) as f64;
    let y = |v: u64| PLOT_TOP + PLOT_HEIGHT - v as f64 / max * PLOT_HEIGHT;
    for (i, (&all, &answered)) in total.iter().zip(part).enumerate() {
        let x = PLOT_LEFT + band * i as f64 + band * 0.15;
        let width = band * 0.7;
        let _ = write!(
            svg,
            "<rect class=\"col-all\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\"/>\
             <rect class=\"col-part\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\"/>",
            y(all),
            PLOT_TOP + PLOT_HEIGHT - y(all),
            y(answered),
            PLOT_TOP + PLOT_HEIGHT - y(answered),
        );
    }
    x_labels(&mut svg, labels, band);
    svg.push_str("</svg>");
    svg
}

/// Lines of durations (milliseconds) per period, one per series, broken where a
/// period has no value, with a dot on every value.
pub(super) fn duration_lines(title: &str, labels: &[String], series: &[Series]) -> String {
    let mut svg = open_svg(TREND_HEIGHT, title);
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b));
    let max = if max > 0.0 { max * 1.1 } else { 1000.0 };
    y_axis(
        &mut svg,
        &units::human_duration_ms(max),
        &units::human_duration_ms(max / 2.0),
    );
    let band = (WIDTH - PLOT_LEFT) / labels.len().max(1) as f64;
    let point = |i: usize, v: f64| {
        (
            PLOT_LEFT + band * (i as f64 + 0.5),
            PLOT_TOP + PLOT_HEIGHT - v.max(0.0) / max * PLOT_HEIGHT,
        )
    };
    for s in series {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, value) in s.points.iter().enumerate() {
            match value {
                Some(v) => {
                    let (x, y) = point(i, *v);
                    let _ = write!(path, "{}{x:.1} {y:.1}", if pen_down { "L" } else { "M" });
                    let _ = write!(
                        svg,
                        "<circle class=\"{}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\"/>",
                        s.class
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(svg, "<path class=\"line {}\" d=\"{path}\"/>", s.class);
        }
    }
    x_labels(&mut svg, labels, band);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, booked: u64, eligible: u64) -> BookingBar {
        BookingBar {
            label: label.into(),
            booked,
            eligible,
        }
    }

    #[test]
    fn booking_bars_show_rate_interval_and_count() {
        let svg = booking_bars("Setter", &[bar("< 5 min", 4, 13), bar(">= 24 h", 0, 0)]);
        assert!(svg.starts_with("<svg class=\"chart\" viewBox=\"0 0 360 102\""));
        assert!(svg.contains("<title>Setter</title>"));
        assert!(svg.contains("&lt; 5 min"), "labels are escaped");
        assert!(svg.contains("30.8% (12.7%–57.6%) · n = 13"), "{svg}");
        assert!(svg.contains("no eligible leads"));
        assert_eq!(svg.matches("class=\"bar\"").count(), 1);
        assert_eq!(svg.matches("class=\"ci\"").count(), 1);
        // Scale: the highest interval end (57.6%) rounded up to 60%.
        assert!(svg.contains(">60%</text></svg>"), "{svg}");
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn trend_charts_scale_to_their_data() {
        let labels: Vec<String> = (1..=31).map(|d| format!("03-{d:02}")).collect();
        let total: Vec<u64> = (0..31).map(|d| d % 7).collect();
        let part: Vec<u64> = total.iter().map(|t| t / 2).collect();
        let svg = stacked_columns("Anchors per day", &labels, &total, &part);
        assert_eq!(svg.matches("class=\"col-all\"").count(), 31);
        assert!(svg.contains(">10</text>"), "max 6 rounds up to 10: {svg}");
        assert!(svg.contains(">03-01</text>") && svg.contains(">03-31</text>"));

        let series = [Series {
            name: "setter".into(),
            class: "s1",
            points: vec![Some(60_000.0), None, Some(120_000.0), Some(90_000.0)],
        }];
        let svg = duration_lines("Median", &labels[..4], &series);
        assert_eq!(svg.matches("<circle").count(), 3);
        // The gap breaks the line: two move-tos.
        let path = svg.split("class=\"line s1\" d=\"").nth(1).unwrap();
        assert_eq!(path.split('"').next().unwrap().matches('M').count(), 2);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(6.0), 10.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        assert_eq!(nice_ceiling(420.0), 500.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
