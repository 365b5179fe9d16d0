//! Server-side SVG plots: the one component every admin page that shows figures over time uses (the node
//! dashboard, the tenant overview; the store and backup pages later). No script, no external asset.
//!
//! A `Plot` is a title, a unit, labels for the x axis (times) and one or more `Series` of points, where `None`
//! means "no sample" and leaves a gap. `Plot::html()` is a `<figure>` with a caption, the SVG (`role="img"`, a
//! `<title>` and a `<desc>` that says what the picture shows: the largest and the latest value of each series)
//! and the same figures as a table in a `<details>` for those who read rather than look.
//!
//! Invariant: every piece of text that reaches the markup goes through `escape`, and everything else in it is
//! a number formatted here, so templates print `Plot::html()` with `|safe` although labels may come from
//! tenants. Colours are CSS classes (`s-accent`, `s-ok`, `s-warn`, `s-danger`) resolved by
//! `static/admin.css` to the palette's variables, so dark mode follows; marks fall back to `currentColor`.

use std::fmt::Write;

/// The SVG's coordinate system; it scales to the width of its box (`width="100%"`), so phones get it smaller.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 220.0;
/// The plotting area inside it: room on the left for the y tick labels, above for the legend, below for the
/// x tick labels.
const LEFT: f64 = 46.0;
const RIGHT: f64 = 472.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 186.0;
/// The most x tick labels drawn (the table has every label).
const X_TICKS: usize = 5;

/// How the points are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connected points; a gap where a point is `None`, a dot where a point has no neighbour.
    Line,
    /// One bar per point and series, grouped by x.
    Bars,
}

/// A series' colour (and, for lines, its dash pattern, so colour is not the only difference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Accent,
    Ok,
    Warn,
    Danger,
}

impl Style {
    fn class(self) -> &'static str {
        match self {
            Style::Accent => "s-accent",
            Style::Ok => "s-ok",
            Style::Warn => "s-warn",
            Style::Danger => "s-danger",
        }
    }
}

/// One line (or one set of bars) of a plot.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// One per x label; `None` is "no sample" (a gap), not zero.
    pub points: Vec<Option<f64>>,
    pub style: Style,
}

/// A plot, ready to render.
#[derive(Debug, Clone)]
pub struct Plot {
    /// Unique on its page: the figure is `plot-{id}`, its table `plot-{id}-data`.
    pub id: String,
    pub title: String,
    /// What the y axis counts: `per second`, `ms`, `per 10 s`.
    pub unit: String,
    /// What the x axis spans, for the description: `last hour`.
    pub span: String,
    /// One per point, oldest first (UTC times, as the table's header says).
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
    pub kind: Kind,
}

/// XML-escapes `text` for an element's content or an attribute value, and drops the control characters
/// XML 1.0 does not allow.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// `HH:MM` of a unix time in UTC, or `HH:MM:SS` with `seconds`.
pub fn clock_label(unix: i64, seconds: bool) -> String {
    let text = crate::format_time(unix);
    let end = if seconds { 19 } else { 16 };
    text.get(11..end).unwrap_or_default().to_owned()
}

/// `YYYY-MM-DD` of a unix time in UTC.
pub fn date_label(unix: i64) -> String {
    crate::format_time(unix).get(..10).unwrap_or_default().to_owned()
}

/// A number for a tick label: short (`1.2k`), at most two decimals.
fn tick_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim_zeros(format!("{:.1}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim_zeros(format!("{:.1}", v / 1e3)))
    } else {
        exact_number(v)
    }
}

/// A number for the table and the description: whole numbers as such, others to a useful precision.
fn exact_number(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let a = v.abs();
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zeros(format!("{v:.2}"))
    } else {
        trim_zeros(format!("{v:.3}"))
    }
}

/// `2.50` → `2.5`, `3.00` → `3`.
fn trim_zeros(text: String) -> String {
    if !text.contains('.') {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The step of a tick grid covering `range` in about four steps: 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(range: f64) -> f64 {
    let raw = range / 4.0;
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    let norm = raw / magnitude;
    let mult = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    mult * magnitude
}

/// The y axis: from `bottom` to `top` in steps of `step`; always includes zero.
struct Scale {
    bottom: f64,
    top: f64,
    step: f64,
}

impl Scale {
    /// A scale for values from `min` to `max`; all zeros get 0 to 1.
    fn new(min: f64, max: f64) -> Scale {
        let lo = min.min(0.0);
        let mut hi = max.max(0.0);
        if hi - lo <= 0.0 {
            hi = lo + 1.0;
        }
        let step = nice_step(hi - lo);
        let bottom = (lo / step).floor() * step;
        let mut top = (hi / step).ceil() * step;
        if top <= bottom {
            top = bottom + step;
        }
        Scale { bottom, top, step }
    }

    fn y(&self, v: f64) -> f64 {
        BOTTOM - (v - self.bottom) / (self.top - self.bottom) * (BOTTOM - TOP)
    }

    fn ticks(&self) -> Vec<f64> {
        let count = ((self.top - self.bottom) / self.step).round() as usize;
        (0..=count.min(10)).map(|k| self.bottom + k as f64 * self.step).collect()
    }
}

impl Plot {
    /// The number of x positions.
    fn slots(&self) -> usize {
        self.x_labels.len()
    }

    /// Point `i` of `series`, when it is a finite number.
    fn point(series: &Series, i: usize) -> Option<f64> {
        series.points.get(i).copied().flatten().filter(|v| v.is_finite())
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let n = self.slots();
        self.series.iter().flat_map(move |s| (0..n).filter_map(move |i| Self::point(s, i)))
    }

    /// No x position or no sample at all: the "No data yet" state.
    pub fn is_empty(&self) -> bool {
        self.values().next().is_none()
    }

    fn x(&self, i: usize) -> f64 {
        LEFT + (i as f64 + 0.5) * (RIGHT - LEFT) / self.slots().max(1) as f64
    }

    /// The figure: caption, SVG and the data table. Built from escaped text and numbers only.
    pub fn html(&self) -> String {
        let id = escape(&self.id);
        let mut out = String::with_capacity(8192);
        let _ = write!(
            out,
            r#"<figure class="plot" id="plot-{id}"><figcaption>{title} <span class="muted">({unit})</span></figcaption>"#,
            title = escape(&self.title),
            unit = escape(&self.unit),
        );
        out.push_str(&self.svg());
        out.push_str(&self.table());
        out.push_str("</figure>");
        out
    }

    /// The text of the SVG's `<desc>`: per series, its largest and its latest value.
    pub fn description(&self) -> String {
        let head = format!("{} ({}), {}", self.title, self.unit, self.span);
        if self.is_empty() {
            return format!("{head}: no data yet");
        }
        let n = self.slots();
        let parts: Vec<String> = self
            .series
            .iter()
            .map(|s| {
                let points: Vec<f64> = (0..n).filter_map(|i| Self::point(s, i)).collect();
                match points.last() {
                    None => format!("{}: no data", s.label),
                    Some(latest) => {
                        let max = points.iter().copied().fold(f64::MIN, f64::max);
                        format!("{}: max {}, latest {}", s.label, exact_number(max), exact_number(*latest))
                    }
                }
            })
            .collect();
        format!("{head}: {}", parts.join("; "))
    }

    /// The SVG alone.
    pub fn svg(&self) -> String {
        let id = escape(&self.id);
        let mut out = String::with_capacity(8192);
        let _ = write!(
            out,
            r#"<svg class="plot-svg" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMidYMid meet" aria-labelledby="plot-{id}-title plot-{id}-desc" xmlns="http://www.w3.org/2000/svg"><title id="plot-{id}-title">{title}</title><desc id="plot-{id}-desc">{desc}</desc>"#,
            title = escape(&self.title),
            desc = escape(&self.description()),
        );
        if self.is_empty() {
            let _ = write!(
                out,
                r#"<line class="axis" x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="currentColor"/><text class="empty-note" x="{x:.1}" y="{y:.1}" text-anchor="middle">No data yet</text></svg>"#,
                x = (LEFT + RIGHT) / 2.0,
                y = (TOP + BOTTOM) / 2.0,
            );
            return out;
        }
        let (min, max) = self.values().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let scale = Scale::new(min, max);
        self.grid(&mut out, &scale);
        self.x_ticks(&mut out);
        match self.kind {
            Kind::Line => self.lines(&mut out, &scale),
            Kind::Bars => self.bars(&mut out, &scale),
        }
        self.legend(&mut out);
        out.push_str("</svg>");
        out
    }

    fn grid(&self, out: &mut String, scale: &Scale) {
        for tick in scale.ticks() {
            let y = scale.y(tick);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
                tx = LEFT - 6.0,
                ty = y + 4.0,
                label = escape(&tick_number(tick)),
            );
        }
        let zero = scale.y(0.0);
        let _ = write!(
            out,
            r#"<line class="axis" x1="{LEFT}" y1="{zero:.1}" x2="{RIGHT}" y2="{zero:.1}" stroke="currentColor"/>"#
        );
    }

    /// Up to `X_TICKS` labels spread evenly, the first and the last included.
    fn x_ticks(&self, out: &mut String) {
        let n = self.slots();
        let mut picked: Vec<usize> = if n <= X_TICKS {
            (0..n).collect()
        } else {
            (0..X_TICKS).map(|k| (k * (n - 1) + (X_TICKS - 1) / 2) / (X_TICKS - 1)).collect()
        };
        picked.dedup();
        let y = BOTTOM + 18.0;
        for &i in &picked {
            let anchor = if n > 1 && i == 0 {
                "start"
            } else if n > 1 && i == n - 1 {
                "end"
            } else {
                "middle"
            };
            let x = if anchor == "start" {
                LEFT
            } else if anchor == "end" {
                RIGHT
            } else {
                self.x(i)
            };
            let label = self.x_labels.get(i).map(String::as_str).unwrap_or_default();
            let _ = write!(
                out,
                r#"<text class="tick" x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{label}</text>"#,
                label = escape(label),
            );
        }
    }

    fn lines(&self, out: &mut String, scale: &Scale) {
        let n = self.slots();
        for s in &self.series {
            let class = s.style.class();
            let mut d = String::new();
            let mut dots: Vec<(f64, f64)> = Vec::new();
            let mut last: Option<(f64, f64)> = None;
            for i in 0..n {
                let Some(v) = Self::point(s, i) else { continue };
                let (x, y) = (self.x(i), scale.y(v));
                let before = i > 0 && Self::point(s, i - 1).is_some();
                let after = Self::point(s, i + 1).is_some() && i + 1 < n;
                let _ = write!(d, "{}{x:.1} {y:.1}", if before { " L" } else { " M" });
                if !before && !after {
                    dots.push((x, y));
                }
                last = Some((x, y));
            }
            if let Some(point) = last
                && !dots.contains(&point)
            {
                dots.push(point);
            }
            if !d.is_empty() {
                let _ = write!(
                    out,
                    r#"<path class="line {class}" d="{d}" fill="none" stroke="currentColor" stroke-width="2"/>"#,
                    d = d.trim_start(),
                );
            }
            for (x, y) in dots {
                let _ =
                    write!(out, r#"<circle class="dot {class}" cx="{x:.1}" cy="{y:.1}" r="3" fill="currentColor"/>"#);
            }
        }
    }

    fn bars(&self, out: &mut String, scale: &Scale) {
        let n = self.slots();
        let count = self.series.len().max(1);
        let group = (RIGHT - LEFT) / n.max(1) as f64 * 0.8;
        let width = group / count as f64;
        let zero = scale.y(0.0);
        for (j, s) in self.series.iter().enumerate() {
            let class = s.style.class();
            for i in 0..n {
                let Some(v) = Self::point(s, i) else { continue };
                if v == 0.0 {
                    continue;
                }
                let y = scale.y(v);
                let (top, height) = if y < zero { (y, zero - y) } else { (zero, y - zero) };
                let x = self.x(i) - group / 2.0 + j as f64 * width;
                let _ = write!(
                    out,
                    r#"<rect class="bar {class}" x="{x:.1}" y="{top:.1}" width="{w:.2}" height="{h:.1}" fill="currentColor"/>"#,
                    w = width.max(0.5),
                    h = height.max(0.5),
                );
            }
        }
    }

    /// One swatch and label per series, in a row above the plotting area.
    fn legend(&self, out: &mut String) {
        let mut x = LEFT;
        let y = 16.0;
        for s in &self.series {
            let class = s.style.class();
            match self.kind {
                Kind::Line => {
                    let _ = write!(
                        out,
                        r#"<line class="line {class}" x1="{x:.1}" y1="{sy:.1}" x2="{x2:.1}" y2="{sy:.1}" stroke="currentColor" stroke-width="2"/>"#,
                        sy = y - 4.0,
                        x2 = x + 16.0,
                    );
                }
                Kind::Bars => {
                    let _ = write!(
                        out,
                        r#"<rect class="bar {class}" x="{x:.1}" y="{sy:.1}" width="12" height="10" fill="currentColor"/>"#,
                        sy = y - 9.0,
                    );
                }
            }
            let _ = write!(
                out,
                r#"<text class="legend" x="{tx:.1}" y="{y:.1}">{label}</text>"#,
                tx = x + 20.0,
                label = escape(&s.label),
            );
            x += 20.0 + 6.5 * s.label.chars().count() as f64 + 14.0;
        }
    }

    /// The same figures as a table in a closed `<details>`; rows where every series lacks a sample are left out.
    pub fn table(&self) -> String {
        let id = escape(&self.id);
        let mut out = String::with_capacity(4096);
        out.push_str(r#"<details class="plot-data"><summary>Data</summary>"#);
        if self.is_empty() {
            out.push_str(r#"<p class="empty">No data yet.</p></details>"#);
            return out;
        }
        let _ = write!(
            out,
            r#"<div class="table-wrap"><table id="plot-{id}-data"><caption>{title} ({unit})</caption><thead><tr><th scope="col">Time (UTC)</th>"#,
            title = escape(&self.title),
            unit = escape(&self.unit),
        );
        for s in &self.series {
            let _ = write!(out, r#"<th scope="col">{}</th>"#, escape(&s.label));
        }
        out.push_str("</tr></thead><tbody>");
        for (i, label) in self.x_labels.iter().enumerate() {
            if self.series.iter().all(|s| Self::point(s, i).is_none()) {
                continue;
            }
            let _ = write!(out, r#"<tr><th scope="row">{}</th>"#, escape(label));
            for s in &self.series {
                let cell = Self::point(s, i).map_or_else(|| "–".to_owned(), exact_number);
                let _ = write!(out, "<td>{}</td>", escape(&cell));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div></details>");
        out
    }
}

#[cfg(test)]
#[path = "plot_tests.rs"]
mod tests;
