//! Results over time drawn as SVG on the server: no script, an accessible name and description,
//! a viewBox that scales to a 375 px screen and to paper. The chart is a picture of the table
//! beside it, which holds every reading in words; it draws only the readings it is given, so its
//! scale, its dates and its description are made from those alone.

use crate::kernel::display::long_date;
use caldicott_core::trends::{unit_words, Flag, Range, Reading, Series};
use chrono::NaiveDate;
use std::fmt::Write;

// A small drawing, so that its words stay readable when a phone shrinks it to 340 px.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 40.0;

/// A number as people write it: no trailing zeros, at most two decimals.
pub(crate) fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// About five round steps (1, 2 or 5 × 10ⁿ) from below `lo` to above `hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if (hi - lo).abs() < f64::EPSILON {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut v = start;
    while v < hi + step * 0.999 && out.len() < 12 {
        out.push((v / step).round() * step);
        v += step;
    }
    out
}

fn short_date(d: NaiveDate, span_days: i64) -> String {
    if span_days <= 120 {
        d.format("%-d %b %Y").to_string()
    } else {
        d.format("%b %Y").to_string()
    }
}

/// How one reading is said: "12 March 2026: 52 mmol/mol, above range".
pub(crate) fn reading_words(r: &Reading) -> String {
    let home = if r.patient_entered { " (a home reading, entered online)" } else { "" };
    format!("{}: {}{home}, {}", long_date(r.date), r.as_recorded, r.flag.words().to_lowercase())
}

/// The chart's description: how many readings, over what time, the latest, and the range.
pub(crate) fn description(s: &Series) -> String {
    let drawn: Vec<&Reading> = s.drawn().collect();
    let mut d = match (drawn.first(), drawn.last()) {
        (Some(first), Some(last)) if drawn.len() > 1 => format!(
            "{} readings from {} to {}. Latest: {}.",
            drawn.len(),
            long_date(first.date),
            long_date(last.date),
            reading_words(last)
        ),
        (Some(only), _) => format!("1 reading: {}.", reading_words(only)),
        _ => "No readings to draw.".into(),
    };
    let outside = drawn.iter().filter(|r| r.flag.is_outside()).count();
    if outside > 0 {
        let _ = write!(d, " {outside} of {} outside the range.", drawn.len());
    }
    if let Some(words) = range_words(s) {
        let _ = write!(d, " Range: {words}.");
    }
    let home = drawn.iter().filter(|r| r.patient_entered).count();
    if home > 0 {
        let _ = write!(d, " {home} of them home readings entered online, drawn hollow.");
    }
    let other = s.readings.len() - drawn.len();
    if other > 0 {
        let _ = write!(d, " {other} recorded in another unit, listed in the table but not drawn.");
    }
    d
}

/// The range the chart shades, in words: "20 to 41 mmol/mol", "below 5 mmol/L".
pub(crate) fn range_words(s: &Series) -> Option<String> {
    let words: Vec<String> = s
        .ranges
        .iter()
        .zip(&s.parts)
        .filter_map(|(r, part)| {
            let r = r.as_ref()?;
            let text = match (r.low, r.high) {
                (Some(l), Some(h)) => format!("{} to {}", number(l), number(h)),
                (Some(l), None) if r.strict => format!("above {}", number(l)),
                (None, Some(h)) if r.strict => format!("below {}", number(h)),
                (Some(l), None) => format!("{} or more", number(l)),
                (None, Some(h)) => format!("{} or less", number(h)),
                (None, None) => return None,
            };
            Some(if s.parts.len() > 1 { format!("{} {text}", part.to_lowercase()) } else { text })
        })
        .collect();
    (!words.is_empty()).then(|| format!("{} {}", words.join(", "), s.unit))
}

/// What the chart marks of the range, and where the range comes from, as a sentence.
pub(crate) fn range_sentence(s: &Series) -> Option<String> {
    let words = range_words(s)?;
    let mut out = if s.parts.len() == 1 {
        format!("The shaded band is the range: {words}")
    } else {
        format!("The dashed lines mark the top of the range: {words}")
    };
    if let Some(source) = s.range_source {
        let _ = write!(out, " ({source})");
    }
    out.push('.');
    Some(out)
}

/// The range in a table cell: "20 to 41", "90/60 to 139/89".
pub(crate) fn range_short(s: &Series) -> Option<String> {
    let ends = |f: fn(&Range) -> Option<f64>| -> Option<String> {
        let v: Option<Vec<String>> = s.ranges.iter().map(|r| r.as_ref().and_then(f).map(number)).collect();
        v.map(|v| v.join("/"))
    };
    let strict = s.ranges.iter().flatten().any(|r| r.strict);
    match (ends(|r| r.low), ends(|r| r.high)) {
        (Some(l), Some(h)) => Some(format!("{l} to {h}")),
        (Some(l), None) if strict => Some(format!("above {l}")),
        (None, Some(h)) if strict => Some(format!("below {h}")),
        (Some(l), None) => Some(format!("{l} or more")),
        (None, Some(h)) => Some(format!("{h} or less")),
        (None, None) => None,
    }
}

/// The unit, and what it means where that has words: "mmol/mol (millimoles per mole)".
pub(crate) fn unit_text(unit: &str) -> String {
    match unit_words(unit) {
        Some(w) => format!("{unit} ({w})"),
        None => unit.to_owned(),
    }
}

/// The chart of one series as an SVG element; `id` makes its title and description ids unique
/// on the page.
pub(crate) fn svg(s: &Series, id: &str) -> String {
    let drawn: Vec<&Reading> = s.drawn().collect();
    let title = format!("{} over time, in {}", s.label, s.unit);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="app-trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-title {id}-desc" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(&title),
        escape(&description(s)),
    );
    if drawn.is_empty() {
        out.push_str("</svg>");
        return out;
    }
    // The scale: the readings drawn and the range's ends, nothing else.
    let values = drawn.iter().flat_map(|r| r.values.iter().copied());
    let one_part = s.parts.len() == 1;
    let bounds =
        s.ranges.iter().flatten().flat_map(|r| if one_part { [r.low, r.high] } else { [None, r.high] }).flatten();
    let (lo, hi) = values.chain(bounds).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let ys = ticks(lo, hi);
    let (y0, y1) = (ys[0], *ys.last().unwrap_or(&ys[0]));
    let y_span = if y1 > y0 { y1 - y0 } else { 1.0 };
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let y_of = |v: f64| TOP + plot_h * (1.0 - (v - y0) / y_span);
    let (first, last) = (drawn[0].date, drawn[drawn.len() - 1].date);
    let days = (last - first).num_days();
    let x_of = |d: NaiveDate| {
        if days == 0 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + 12.0 + (plot_w - 24.0) * (d - first).num_days() as f64 / days as f64
        }
    };
    // The range, shaded for one number, dashed lines for two.
    for r in s.ranges.iter().flatten() {
        let top = r.high.map_or(TOP, y_of);
        let bottom = r.low.map_or(TOP + plot_h, y_of);
        if one_part {
            let _ = write!(
                out,
                r#"<rect class="app-trend__range" x="{LEFT}" y="{top:.1}" width="{plot_w}" height="{:.1}"/>"#,
                (bottom - top).max(0.0)
            );
        } else {
            // Two numbers: the upper limit of each, dashed (lines at both ends of both would
            // cross each other).
            if let Some(v) = r.high {
                let _ = write!(
                    out,
                    r#"<line class="app-trend__limit" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/>"#,
                    LEFT + plot_w,
                    y = y_of(v)
                );
            }
        }
    }
    // Axes and their labels.
    for v in &ys {
        let y = y_of(*v);
        let _ = write!(
            out,
            r#"<line class="app-trend__grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="app-trend__tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            number(*v)
        );
    }
    let mut label_days: Vec<NaiveDate> = vec![first];
    if days > 0 {
        label_days.push(first + chrono::Duration::days(days / 2));
        label_days.push(last);
    }
    let (first_label, last_label) = (label_days[0], label_days[label_days.len() - 1]);
    for d in label_days {
        // The ends' labels run inwards, so that none is cut at the edge.
        let anchor = match d {
            _ if days == 0 => "middle",
            d if d == first_label => "start",
            d if d == last_label => "end",
            _ => "middle",
        };
        let x = match anchor {
            "start" => x_of(d) - 12.0,
            "end" => x_of(d) + 12.0,
            _ => x_of(d),
        };
        let _ = write!(
            out,
            r#"<text class="app-trend__tick" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            x,
            HEIGHT - BOTTOM + 20.0,
            escape(&short_date(d, days))
        );
    }
    let _ = write!(out, r#"<text class="app-trend__tick" x="{LEFT}" y="{}">{}</text>"#, TOP - 26.0, escape(&s.unit));
    // A line for each number, then the readings; one outside the range is a red square, and
    // says so in its title.
    for (p, part) in s.parts.iter().enumerate() {
        let points: Vec<String> = drawn
            .iter()
            .filter_map(|r| r.values.get(p).map(|v| format!("{:.1},{:.1}", x_of(r.date), y_of(*v))))
            .collect();
        let _ =
            write!(out, r#"<polyline class="app-trend__line app-trend__line--{p}" points="{}"/>"#, points.join(" "));
        if s.parts.len() > 1 {
            let x = LEFT + 4.0 + 200.0 * p as f64;
            let _ = write!(
                out,
                r#"<line class="app-trend__line app-trend__line--{p}" x1="{x}" x2="{}" y1="{y}" y2="{y}"/><text class="app-trend__tick" x="{}" y="{}">{}</text>"#,
                x + 24.0,
                x + 30.0,
                TOP - 6.0,
                escape(part.split(" (").next().unwrap_or(part)),
                y = TOP - 10.0,
            );
        }
        for r in &drawn {
            let Some(v) = r.values.get(p) else { continue };
            let (x, y) = (x_of(r.date), y_of(*v));
            let words = escape(&reading_words(r));
            let hollow = if r.patient_entered { " app-trend__point--home" } else { "" };
            if r.flag.is_outside() {
                let _ = write!(
                    out,
                    r#"<rect class="app-trend__point app-trend__point--outside{hollow}" x="{:.1}" y="{:.1}" width="11" height="11"><title>{words}</title></rect>"#,
                    x - 5.5,
                    y - 5.5
                );
            } else {
                let _ = write!(
                    out,
                    r#"<circle class="app-trend__point{hollow}" cx="{x:.1}" cy="{y:.1}" r="5"><title>{words}</title></circle>"#
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

/// The style class of a reading's flag in the table.
pub(crate) fn flag_class(f: Flag) -> &'static str {
    if f.is_outside() {
        "app-flag app-flag--outside"
    } else {
        "app-flag"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_values() {
        let t = ticks(36.0, 58.0);
        assert!(t[0] <= 36.0 && *t.last().unwrap() >= 58.0, "{t:?}");
        assert!(t.windows(2).all(|w| (w[1] - w[0] - 5.0).abs() < 1e-9), "{t:?}");
        let t = ticks(4.3, 4.3);
        assert!(t[0] <= 4.3 && *t.last().unwrap() >= 4.3 && t.len() >= 2, "{t:?}");
        let t = ticks(0.27, 6.8);
        assert!(t.len() <= 12 && t[0] <= 0.27, "{t:?}");
        assert_eq!(number(5.0), "5");
        assert_eq!(number(0.27), "0.27");
        assert_eq!(number(24.90), "24.9");
    }
}
