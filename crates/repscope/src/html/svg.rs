//! Small, dependency-free SVG charts: line/scatter plots on linear or log axes, histograms and heatmaps.
//! Every data mark carries class "mark" (and a <title> with its value), so a test can count what was drawn.

/// A value as hover text: the shortest decimal that reads back as the same f64 (the exact value).
pub fn exact(v: f64) -> String {
    format!("{v}")
}

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    Log10,
}

/// One series of a plot.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw a line through the points.
    pub line: bool,
    /// Draw a marker at each point (counted as data marks).
    pub markers: bool,
    pub color: String,
    pub dashed: bool,
}

/// A plot with axes, ticks, labels and a legend.
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub series: Vec<Series>,
    /// Optional horizontal reference line (value, label).
    pub h_line: Option<(f64, String)>,
    /// Vertical reference lines (value, label), such as the PCA rules on a variance curve.
    pub v_lines: Vec<(f64, String)>,
    /// Draw the legend row above the plot (off when the page lists the series itself).
    pub legend: bool,
    /// Radius of the point markers.
    pub marker_r: f64,
}

impl Default for Plot {
    fn default() -> Self {
        Plot {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: Vec::new(),
            h_line: None,
            v_lines: Vec::new(),
            legend: true,
            marker_r: 3.5,
        }
    }
}

const W: f64 = 560.0;
const H: f64 = 340.0;
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 52.0;
const MB: f64 = 50.0;

fn tr(v: f64, s: Scale) -> Option<f64> {
    match s {
        Scale::Linear => v.is_finite().then_some(v),
        Scale::Log10 => (v > 0.0 && v.is_finite()).then(|| v.log10()),
    }
}

/// "Nice" tick positions covering [lo, hi].
fn ticks(lo: f64, hi: f64, s: Scale) -> Vec<f64> {
    if s == Scale::Log10 {
        let (a, b) = (lo.floor() as i32, hi.ceil() as i32);
        let step = ((b - a) as f64 / 6.0).ceil().max(1.0) as i32;
        let inside = |e: &f64| *e >= lo - 1e-9 && *e <= hi + 1e-9;
        let decades: Vec<f64> = (a..=b)
            .step_by(step as usize)
            .map(|e| e as f64)
            .filter(inside)
            .collect();
        if decades.len() >= 3 {
            return decades;
        }
        // A narrow range: 1, 2 and 5 times each power of ten, or plain nice values inside one decade.
        let t125: Vec<f64> = (a..=b)
            .flat_map(|e| [1.0f64, 2.0, 5.0].map(|m| e as f64 + m.log10()))
            .filter(inside)
            .collect();
        if t125.len() >= 3 {
            return t125;
        }
        return ticks(10f64.powf(lo), 10f64.powf(hi), Scale::Linear)
            .into_iter()
            .filter(|v| *v > 0.0)
            .map(f64::log10)
            .collect();
    }
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * step {
        out.push(if t.abs() < 1e-12 * step { 0.0 } else { t });
        t += step;
    }
    out
}

fn fmt_tick(v: f64, s: Scale) -> String {
    let x = if s == Scale::Log10 { 10f64.powf(v) } else { v };
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.0e}")
    } else if a >= 10.0 || (x - x.round()).abs() < 1e-9 {
        format!("{}", (x * 100.0).round() / 100.0)
    } else {
        format!("{x:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn bounds(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
        return Some((lo - pad, hi + pad));
    }
    let pad = (hi - lo) * 0.05;
    Some((lo - pad, hi + pad))
}

impl Plot {
    /// The plot as an SVG element, or a short note when there is nothing to draw.
    pub fn render(&self, id: &str) -> String {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| tr(p.0, self.x_scale)))
            .chain(self.v_lines.iter().filter_map(|v| tr(v.0, self.x_scale)));
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| tr(p.1, self.y_scale)))
            .chain(self.h_line.iter().filter_map(|h| tr(h.0, self.y_scale)));
        let (Some((x0, x1)), Some((y0, y1))) =
            (bounds(xs), bounds(ys.collect::<Vec<_>>().into_iter()))
        else {
            return format!(
                "<p class=\"note\">{}: no data to plot.</p>",
                esc(&self.title)
            );
        };
        let px = |x: f64| ML + (x - x0) / (x1 - x0) * (W - ML - MR);
        let py = |y: f64| H - MB - (y - y0) / (y1 - y0) * (H - MT - MB);
        let mut s = format!(
            "<svg id=\"{id}\" class=\"plot\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\">\n<title>{t}</title>\n<text x=\"{cx}\" y=\"20\" class=\"ptitle\" text-anchor=\"middle\">{t}</text>\n",
            t = esc(&self.title),
            cx = W / 2.0
        );
        // Axes, grid and ticks.
        s.push_str(&format!(
            "<rect x=\"{ML}\" y=\"{MT}\" width=\"{}\" height=\"{}\" class=\"frame\"/>\n",
            W - ML - MR,
            H - MT - MB
        ));
        for t in ticks(x0, x1, self.x_scale) {
            let x = px(t);
            s.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{MT}\" x2=\"{x:.1}\" y2=\"{}\" class=\"grid\"/><text x=\"{x:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>\n",
                H - MB,
                H - MB + 16.0,
                fmt_tick(t, self.x_scale)
            ));
        }
        for t in ticks(y0, y1, self.y_scale) {
            let y = py(t);
            s.push_str(&format!(
                "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\n",
                W - MR,
                ML - 6.0,
                y + 4.0,
                fmt_tick(t, self.y_scale)
            ));
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>\n<text x=\"16\" y=\"{}\" class=\"axis\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n",
            ML + (W - ML - MR) / 2.0,
            H - 10.0,
            esc(&self.x_label),
            MT + (H - MT - MB) / 2.0,
            MT + (H - MT - MB) / 2.0,
            esc(&self.y_label)
        ));
        if let Some((v, label)) = &self.h_line {
            if let Some(t) = tr(*v, self.y_scale) {
                let y = py(t);
                s.push_str(&format!(
                    "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" class=\"ref\"><title>{}</title></line><text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\n",
                    W - MR,
                    esc(label),
                    W - MR - 4.0,
                    y - 4.0,
                    esc(label)
                ));
            }
        }
        for (k, (v, label)) in self.v_lines.iter().enumerate() {
            if let Some(t) = tr(*v, self.x_scale) {
                let x = px(t);
                // Labels stack up from the bottom, on the side of the line with room.
                let right = x > W - MR - 90.0;
                s.push_str(&format!(
                    "<line x1=\"{x:.1}\" y1=\"{MT}\" x2=\"{x:.1}\" y2=\"{}\" class=\"vref\"><title>{}</title></line><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"{}\">{}</text>\n",
                    H - MB,
                    esc(label),
                    if right { x - 3.0 } else { x + 3.0 },
                    H - MB - 8.0 - 14.0 * k as f64,
                    if right { "end" } else { "start" },
                    esc(label)
                ));
            }
        }
        for se in &self.series {
            let pts: Vec<(f64, f64, f64, f64)> = se
                .points
                .iter()
                .filter_map(|&(x, y)| {
                    Some((px(tr(x, self.x_scale)?), py(tr(y, self.y_scale)?), x, y))
                })
                .collect();
            if se.line && pts.len() > 1 {
                let path: Vec<String> = pts
                    .iter()
                    .map(|p| format!("{:.1},{:.1}", p.0, p.1))
                    .collect();
                s.push_str(&format!(
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} class=\"series-line\"><title>{}</title></polyline>\n",
                    path.join(" "),
                    se.color,
                    if se.dashed { " stroke-dasharray=\"6 4\"" } else { "" },
                    esc(&se.name)
                ));
            }
            if se.markers {
                for p in &pts {
                    s.push_str(&format!(
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\" class=\"mark\"><title>{}: x = {}, y = {}</title></circle>\n",
                        p.0,
                        p.1,
                        self.marker_r,
                        se.color,
                        esc(&se.name),
                        exact(p.2),
                        exact(p.3)
                    ));
                }
            }
        }
        // Legend, in one row above the plot area.
        let mut lx = ML;
        for se in self.series.iter().filter(|_| self.legend) {
            let y = MT - 10.0;
            s.push_str(&format!(
                "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{y:.1}\" class=\"legend\">{}</text>\n",
                y - 9.0,
                se.color,
                lx + 14.0,
                esc(&se.name)
            ));
            lx += 24.0 + 6.5 * se.name.chars().count() as f64;
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A histogram of values with `bins` equal-width bins; `what` names the counted things (points, latents).
pub fn histogram(
    id: &str,
    title: &str,
    x_label: &str,
    what: &str,
    edges: &[f64],
    counts: &[u64],
) -> String {
    if counts.is_empty() || edges.len() != counts.len() + 1 {
        return format!("<p class=\"note\">{}: no data to plot.</p>", esc(title));
    }
    let (x0, x1) = (edges[0], edges[edges.len() - 1]);
    let ymax = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let px = |x: f64| ML + (x - x0) / (x1 - x0).max(1e-12) * (W - ML - MR);
    let py = |y: f64| H - MB - y / (ymax * 1.05) * (H - MT - MB);
    let mut s = format!(
        "<svg id=\"{id}\" class=\"plot\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\">\n<title>{t}</title>\n<text x=\"{cx}\" y=\"20\" class=\"ptitle\" text-anchor=\"middle\">{t}</text>\n<rect x=\"{ML}\" y=\"{MT}\" width=\"{}\" height=\"{}\" class=\"frame\"/>\n",
        W - ML - MR,
        H - MT - MB,
        t = esc(title),
        cx = W / 2.0
    );
    for t in ticks(x0, x1, Scale::Linear) {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"middle\">{}</text>\n",
            px(t),
            H - MB + 16.0,
            fmt_tick(t, Scale::Linear)
        ));
    }
    for t in ticks(0.0, ymax * 1.05, Scale::Linear) {
        let y = py(t);
        s.push_str(&format!(
            "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\n",
            W - MR,
            ML - 6.0,
            y + 4.0,
            fmt_tick(t, Scale::Linear)
        ));
    }
    for (i, &c) in counts.iter().enumerate() {
        let (a, b) = (px(edges[i]), px(edges[i + 1]));
        let y = py(c as f64);
        s.push_str(&format!(
            "<rect x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"mark bar\"><title>[{}, {}): {c} {}</title></rect>\n",
            (b - a - 1.0).max(0.5),
            (H - MB - y).max(0.0),
            exact(edges[i]),
            exact(edges[i + 1]),
            esc(what)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>\n<text x=\"16\" y=\"{}\" class=\"axis\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n</svg>\n",
        ML + (W - ML - MR) / 2.0,
        H - 10.0,
        esc(x_label),
        MT + (H - MT - MB) / 2.0,
        MT + (H - MT - MB) / 2.0,
        esc(what)
    ));
    s
}

/// A label cut to fit beside a heatmap row.
fn short(s: &str) -> String {
    if s.chars().count() <= 16 {
        s.to_string()
    } else {
        format!(
            "…{}",
            s.chars()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        )
    }
}

/// A heatmap of a square matrix with row/column labels, coloured on a linear or log10 scale between `lo`
/// and `hi` (in the values' own units); each cell has a <title> with its exact value.
#[allow(clippy::too_many_arguments)]
pub fn heatmap(
    id: &str,
    title: &str,
    labels: &[String],
    values: &[Vec<f64>],
    lo: f64,
    hi: f64,
    color_scale: Scale,
) -> String {
    let (lo, hi) = match color_scale {
        Scale::Linear => (lo, hi),
        Scale::Log10 => (
            lo.max(f64::MIN_POSITIVE).log10(),
            hi.max(f64::MIN_POSITIVE).log10(),
        ),
    };
    let n = labels.len();
    if n == 0 || values.len() != n {
        return format!("<p class=\"note\">{}: no data to plot.</p>", esc(title));
    }
    let cell = (300.0 / n as f64).clamp(14.0, 48.0);
    let left = 130.0;
    let top = 40.0;
    let size = cell * n as f64;
    let w = left + size + 90.0;
    let h = top + size + 20.0;
    let mut s = format!(
        "<svg id=\"{id}\" class=\"plot heatmap\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\">\n<title>{t}</title>\n<text x=\"{}\" y=\"20\" class=\"ptitle\" text-anchor=\"middle\">{t}</text>\n",
        w / 2.0,
        t = esc(title)
    );
    let color = |v: f64| {
        let v = match color_scale {
            Scale::Log10 if v > 0.0 => v.log10(),
            Scale::Log10 => f64::NAN,
            Scale::Linear => v,
        };
        if !v.is_finite() {
            return "#cccccc".to_string();
        }
        let t = ((v - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0);
        // White to dark blue.
        let r = (247.0 - t * (247.0 - 8.0)) as u8;
        let g = (251.0 - t * (251.0 - 48.0)) as u8;
        let b = (255.0 - t * (255.0 - 107.0)) as u8;
        format!("#{r:02x}{g:02x}{b:02x}")
    };
    for (i, row) in values.iter().enumerate() {
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\n",
            left - 4.0,
            top + cell * (i as f64 + 0.5) + 4.0,
            esc(&format!("#{i} {}", short(&labels[i])))
        ));
        for (j, &v) in row.iter().enumerate() {
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"{}\" class=\"mark cell\"><title>{} vs {}: {}</title></rect>\n",
                left + cell * j as f64,
                top + cell * i as f64,
                color(v),
                esc(&labels[i]),
                esc(&labels[j]),
                if v.is_finite() {
                    exact(v)
                } else {
                    "n/a".to_string()
                }
            ));
        }
    }
    for (j, _) in labels.iter().enumerate() {
        let l = format!("#{j}");
        let x = left + cell * (j as f64 + 0.5);
        let y = top + size + 12.0;
        s.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{y:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>\n",
            esc(&l)
        ));
    }
    // Colour bar.
    let unscale = |v: f64| match color_scale {
        Scale::Log10 => 10f64.powf(v),
        Scale::Linear => v,
    };
    for k in 0..10 {
        let v = unscale(lo + (hi - lo) * k as f64 / 9.0);
        s.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"14\" height=\"{:.1}\" fill=\"{}\"/>\n",
            left + size + 20.0,
            top + size - (k as f64 + 1.0) * size / 10.0,
            size / 10.0,
            color(v)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">{}</text>\n</svg>\n",
        left + size + 38.0,
        top + size,
        crate::fmt::num(unscale(lo)),
        left + size + 38.0,
        top + 10.0,
        crate::fmt::num(unscale(hi))
    ));
    s
}
