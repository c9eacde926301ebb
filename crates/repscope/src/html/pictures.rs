//! The parts of the page that answer first and show rather than list: the summary, the map of the points,
//! the per-class bars and the class heatmap, the cumulative variance curve and the benchmark's overview.
//! Each reads the typed structs the engine wrote (deserialized from the document), so a renamed field
//! shows as a missing picture with a note, never as a silently wrong one.
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::svg::{esc, heatmap, Plot, Scale, Series};
use crate::classes::{ClassReport, ClassStats};
use crate::fmt::num;
use crate::intrinsic::suite::IdReport;
use crate::report::map::PointMap;
use crate::report::summary::{three_digits, Piece, Summary};
use crate::report::Benchmark;
use crate::search::study::StudyReport;
use crate::spectrum::SpectrumReport;

/// A typed value from the document, or a note saying what is missing.
pub fn typed<T: DeserializeOwned>(v: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{what}: cannot be read ({e})"))
}

/// Colour of class `k` of `c`: the Tableau 10 palette up to 10 classes, else hues a golden angle apart,
/// with three lightness levels so that neighbouring hues differ.
pub fn class_color(k: usize, c: usize) -> String {
    const T10: [&str; 10] = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];
    if c <= T10.len() {
        return T10[k % T10.len()].to_string();
    }
    let h = (k as f64 * 137.507_764) % 360.0;
    let l = [0.42, 0.58, 0.32][k % 3];
    let s = 0.68;
    // HSL to RGB.
    let q = if l < 0.5 {
        l * (1.0 + s)
    } else {
        l + s - l * s
    };
    let p = 2.0 * l - q;
    let hue = |t: f64| {
        let t = t.rem_euclid(1.0);
        if t < 1.0 / 6.0 {
            p + (q - p) * 6.0 * t
        } else if t < 0.5 {
            q
        } else if t < 2.0 / 3.0 {
            p + (q - p) * (2.0 / 3.0 - t) * 6.0
        } else {
            p
        }
    };
    let hh = h / 360.0;
    let to = |v: f64| (v * 255.0).round().clamp(0.0, 255.0) as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        to(hue(hh + 1.0 / 3.0)),
        to(hue(hh)),
        to(hue(hh - 1.0 / 3.0))
    )
}

/// The summary: each sentence with its numbers marked by the JSON pointer they come from, then warnings.
pub fn summary_block(idx: usize, inp: &Value) -> String {
    let s: Summary = match typed(&inp["summary"], "summary") {
        Ok(s) => s,
        Err(e) => return format!("<p class=\"note failed\">{}</p>\n", esc(&e)),
    };
    let line = |l: &crate::report::summary::Line| {
        let mut h = String::new();
        for piece in l.pieces() {
            match piece {
                Piece::Text(t) => h.push_str(&esc(t)),
                Piece::Fact(i) => {
                    let f = &l.facts[i];
                    h.push_str(&format!(
                        "<span class=\"num\" data-pointer=\"/inputs/{idx}{}\" data-scale=\"{}\">{}</span>",
                        esc(&f.pointer),
                        f.scale,
                        esc(&f.shown())
                    ));
                }
            }
        }
        h
    };
    let mut h = format!("<div class=\"summary block\" id=\"summary-{idx}\">\n");
    for l in &s.lines {
        h.push_str(&format!(
            "<p class=\"answer\" data-topic=\"{}\">{}</p>\n",
            esc(&l.topic),
            line(l)
        ));
    }
    if !s.warnings.is_empty() {
        h.push_str("<ul class=\"warnings\">\n");
        for l in &s.warnings {
            h.push_str(&format!("<li class=\"warning\">{}</li>\n", line(l)));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</div>\n");
    h
}

/// A list of coloured swatches naming the classes.
fn legend(names: &[String], present: &[bool]) -> String {
    let c = names.len();
    let mut h = String::from("<div class=\"legend-list\">");
    for (k, n) in names.iter().enumerate().filter(|(k, _)| present[*k]) {
        h.push_str(&format!(
            "<span class=\"swatch\"><i style=\"background:{}\"></i>{}</span>",
            class_color(k, c),
            esc(n)
        ));
    }
    h.push_str("</div>\n");
    h
}

/// The map of the points, coloured by class when there are labels.
pub fn map_block(idx: usize, inp: &Value, class_names: Option<&[String]>) -> String {
    if inp.get("map").is_none() {
        return String::new();
    }
    let m: PointMap = match typed(&inp["map"], "map") {
        Ok(m) => m,
        Err(e) => return format!("<p class=\"note failed\">{}</p>\n", esc(&e)),
    };
    let mut h =
        format!("<div class=\"block\" id=\"map-block-{idx}\">\n<h3>Map of the points</h3>\n");
    let pct = |v: f64| format!("{}%", three_digits(100.0 * v));
    let drawn = if m.rows.len() < m.of_rows {
        format!(
            "a seeded sample of {} of the {} rows (seed {})",
            m.rows.len(),
            m.of_rows,
            m.seed
        )
    } else {
        format!("all {} rows", m.of_rows)
    };
    h.push_str(&format!(
        "<p>{}: {drawn}. The axes carry {} and {} of the variance.</p>\n",
        esc(&m.method),
        pct(m.explained[0]),
        pct(m.explained[1])
    ));
    let mut series = Vec::new();
    let mut legend_html = String::new();
    match (&m.classes, class_names) {
        (Some(cls), Some(names)) if !names.is_empty() => {
            let c = names.len();
            let mut present = vec![false; c];
            let mut pts: Vec<Vec<(f64, f64)>> = vec![Vec::new(); c];
            for ((&k, &x), &y) in cls.iter().zip(&m.x).zip(&m.y) {
                let k = (k as usize).min(c - 1);
                present[k] = true;
                pts[k].push((x, y));
            }
            for (k, p) in pts.into_iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                series.push(Series {
                    name: names[k].clone(),
                    points: p,
                    line: false,
                    markers: true,
                    color: class_color(k, c),
                    dashed: false,
                });
            }
            legend_html = legend(names, &present);
        }
        _ => series.push(Series {
            name: "row".into(),
            points: m.x.iter().copied().zip(m.y.iter().copied()).collect(),
            line: false,
            markers: true,
            color: "#0969da".into(),
            dashed: false,
        }),
    }
    let plot = Plot {
        title: "The points on their top two principal directions".into(),
        x_label: format!("principal direction 1 ({})", pct(m.explained[0])),
        y_label: format!("principal direction 2 ({})", pct(m.explained[1])),
        series,
        legend: false,
        marker_r: 2.2,
        ..Plot::default()
    };
    h.push_str(&plot.render(&format!("map-{idx}")));
    h.push_str(&legend_html);
    h.push_str("</div>\n");
    h
}

/// Horizontal bars, one per class in the given order; each bar is a data mark with its exact value.
fn bars(id: &str, title: &str, names: &[String], values: &[Option<f64>], color: &str) -> String {
    let (w, left, row, top) = (270.0, 116.0, 13.0, 34.0);
    let n = names.len();
    let max = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let scale = if max > 0.0 {
        (w - left - 40.0) / max
    } else {
        0.0
    };
    let h = top + row * n as f64 + 24.0;
    let mut s = format!(
        "<svg id=\"{id}\" class=\"plot bars\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\">\n<title>{t}</title>\n<text x=\"{}\" y=\"18\" class=\"ptitle\" text-anchor=\"middle\">{t}</text>\n",
        w / 2.0,
        t = esc(title)
    );
    for (i, (name, v)) in names.iter().zip(values).enumerate() {
        let y = top + row * i as f64;
        let short: String = if name.chars().count() > 18 {
            format!("{}…", name.chars().take(17).collect::<String>())
        } else {
            name.clone()
        };
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\n",
            left - 4.0,
            y + 10.0,
            esc(&short)
        ));
        match v.filter(|v| v.is_finite()) {
            Some(v) => s.push_str(&format!(
                "<rect x=\"{left}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\" class=\"mark bar\"><title>{}: {}</title></rect>\n",
                (v * scale).max(0.5),
                row - 3.0,
                esc(name),
                super::svg::exact(v)
            )),
            None => s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">n/a</text>\n",
                left + 2.0,
                y + 10.0
            )),
        }
    }
    // The value axis: 0 and the largest value.
    let axis_y = top + row * n as f64 + 14.0;
    s.push_str(&format!(
        "<text x=\"{left}\" y=\"{axis_y:.1}\" class=\"tick\" text-anchor=\"middle\">0</text><text x=\"{:.1}\" y=\"{axis_y:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>\n</svg>\n",
        left + max * scale,
        num(max)
    ));
    s
}

/// Class bars (size, NCC and kNN accuracy, within-class variance; classes by size, largest first), the
/// CDNV heatmap in clustering order, and the per-class table.
pub fn class_pictures(idx: usize, c: &ClassReport) -> String {
    let mut h = String::new();
    let per: &[ClassStats] = &c.per_class;
    let mut order: Vec<usize> = (0..per.len()).collect();
    order.sort_by(|&a, &b| per[b].rows.cmp(&per[a].rows).then(a.cmp(&b)));
    const BARS: usize = 50;
    let shown: Vec<usize> = order.iter().copied().take(BARS).collect();
    if per.len() > BARS {
        h.push_str(&format!(
            "<p class=\"note\">The bars show the {BARS} largest of the {} classes; the table lists every class.</p>\n",
            per.len()
        ));
    }
    let names: Vec<String> = shown.iter().map(|&k| per[k].name.clone()).collect();
    let col = |f: &dyn Fn(&ClassStats) -> Option<f64>| -> Vec<Option<f64>> {
        shown.iter().map(|&k| f(&per[k])).collect()
    };
    h.push_str("<div class=\"plots\">\n");
    h.push_str(&bars(
        &format!("class-size-{idx}"),
        "Rows per class",
        &names,
        &col(&|s| Some(s.rows as f64)),
        "#0969da",
    ));
    h.push_str(&bars(
        &format!("class-ncc-{idx}"),
        "Nearest-class-centre accuracy",
        &names,
        &col(&|s| Some(s.ncc_accuracy)),
        "#1a7f37",
    ));
    h.push_str(&bars(
        &format!("class-knn-{idx}"),
        "Leave-one-out kNN accuracy",
        &names,
        &col(&|s| s.knn_accuracy),
        "#8250df",
    ));
    h.push_str(&bars(
        &format!("class-var-{idx}"),
        "Within-class variance σ²",
        &names,
        &col(&|s| Some(s.within_variance)),
        "#bc4c00",
    ));
    h.push_str("</div>\n");
    match &c.pairs {
        p if p.classes.len() >= 2 => {
            let labels: Vec<String> = p
                .classes
                .iter()
                .map(|&k| per.get(k).map(|s| s.name.clone()).unwrap_or_default())
                .collect();
            let vals: Vec<Vec<f64>> = p
                .cdnv
                .iter()
                .map(|r| r.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
                .collect();
            let finite = vals
                .iter()
                .flatten()
                .copied()
                .filter(|v| *v > 0.0 && v.is_finite());
            let (lo, hi) = finite.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) = if lo.is_finite() && hi > lo {
                (lo, hi)
            } else {
                (0.01, 1.0)
            };
            if let Some(n) = &p.note {
                h.push_str(&format!("<p class=\"note\">{}.</p>\n", esc(n)));
            }
            h.push_str(&format!(
                "<p>Which classes overlap: the CDNV of each pair (high means overlapping; colour on a log scale), classes ordered by {}.</p>\n",
                esc(&p.linkage)
            ));
            h.push_str(&heatmap(
                &format!("class-cdnv-{idx}"),
                "CDNV between classes",
                &labels,
                &vals,
                lo,
                hi,
                Scale::Log10,
            ));
        }
        _ => h.push_str("<p class=\"note\">No class heatmap: it needs two classes or more.</p>\n"),
    }
    h.push_str("<table class=\"sortable\"><tr><th class=\"t\">class</th><th>rows</th><th>NCC accuracy</th><th>kNN accuracy</th><th>within-class variance</th></tr>\n");
    for k in order {
        let s = &per[k];
        h.push_str(&format!(
            "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&s.name),
            s.rows,
            num(s.ncc_accuracy),
            s.knn_accuracy.map(num).unwrap_or_else(|| "–".into()),
            num(s.within_variance)
        ));
    }
    h.push_str("</table>\n");
    h
}

/// The cumulative explained variance, with the PCA rules of the ID section marked where they cut it.
pub fn cumulative_plot(idx: usize, sp: &SpectrumReport, id: Option<&IdReport>) -> String {
    let mut acc = 0.0;
    let pts: Vec<(f64, f64)> = sp
        .explained_variance_ratio
        .iter()
        .enumerate()
        .map(|(i, v)| {
            acc += v;
            ((i + 1) as f64, acc.min(1.0))
        })
        .collect();
    let rules: Vec<(f64, String)> = id
        .map(|id| id.estimates.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e.estimator.starts_with("pca_") && e.value.is_finite())
        .map(|e| {
            (
                e.value,
                format!("{} = {}", e.estimator, three_digits(e.value)),
            )
        })
        .collect();
    let plot = Plot {
        title: "Cumulative explained variance".into(),
        x_label: "components (log scale)".into(),
        y_label: "share of the variance".into(),
        x_scale: Scale::Log10,
        series: vec![Series {
            name: "cumulative share".into(),
            points: pts,
            line: true,
            markers: false,
            color: "#0969da".into(),
            dashed: false,
        }],
        h_line: Some((0.95, "95%".into())),
        v_lines: rules,
        legend: false,
        ..Plot::default()
    };
    plot.render(&format!("cumulative-{idx}"))
}

/// The demo's opening: each estimator's estimate against the known dimension of every manifold, as a
/// table and as a scatter with the diagonal.
pub fn benchmark_block(b: &Value) -> String {
    let b: Benchmark = match typed(b, "benchmark") {
        Ok(b) => b,
        Err(e) => return format!("<p class=\"note failed\">{}</p>\n", esc(&e)),
    };
    let mut h = String::from("<section class=\"benchmark\" id=\"benchmark\">\n<h2>How well each estimator recovers the known dimension</h2>\n");
    if let Some((best, mre)) = b
        .estimators
        .iter()
        .zip(&b.mean_relative_error)
        .filter_map(|(e, m)| Some((e, (*m)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
    {
        h.push_str(&format!(
            "<div class=\"summary block\"><p class=\"answer\">On {} manifolds of known dimension ({} points each), the lowest mean relative error, <span class=\"num\" data-benchmark=\"{}\">{}</span>, is {}.</p></div>\n",
            b.manifolds.len(),
            b.points,
            esc(best),
            three_digits(mre),
            if best == "recommended" {
                "the recommended estimate's".to_string()
            } else {
                format!("{}'s", esc(best))
            }
        ));
    }
    let c = b.estimators.len();
    let mut series: Vec<Series> = b
        .estimators
        .iter()
        .enumerate()
        .map(|(k, e)| Series {
            name: e.clone(),
            points: b
                .manifolds
                .iter()
                .filter_map(|m| Some((m.true_dimension, m.estimates.get(k).copied().flatten()?)))
                .collect(),
            line: false,
            markers: true,
            color: class_color(k, c),
            dashed: false,
        })
        .collect();
    let top = b
        .manifolds
        .iter()
        .map(|m| m.true_dimension)
        .fold(1.0f64, f64::max);
    series.push(Series {
        name: "estimate = truth".into(),
        points: vec![(0.0, 0.0), (top, top)],
        line: true,
        markers: false,
        color: "#57606a".into(),
        dashed: true,
    });
    let plot = Plot {
        title: "Estimated against true intrinsic dimension".into(),
        x_label: "true dimension".into(),
        y_label: "estimated dimension".into(),
        series,
        legend: false,
        ..Plot::default()
    };
    h.push_str(&plot.render("benchmark-scatter"));
    h.push_str(&legend(&b.estimators, &vec![true; c]));
    h.push_str("<table class=\"sortable\" id=\"benchmark-table\"><tr><th class=\"t\">manifold</th><th>true</th>");
    for e in &b.estimators {
        h.push_str(&format!("<th>{}</th>", esc(e)));
    }
    h.push_str("</tr>\n");
    for m in &b.manifolds {
        h.push_str(&format!(
            "<tr><td class=\"t\"><a href=\"#input-{}\">{}</a></td><td>{}</td>",
            m.input,
            esc(&m.name),
            three_digits(m.true_dimension)
        ));
        for v in &m.estimates {
            h.push_str(&format!(
                "<td>{}</td>",
                v.map(num).unwrap_or_else(|| "–".into())
            ));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("<tr class=\"total\"><td class=\"t\">mean relative error</td><td></td>");
    for v in &b.mean_relative_error {
        h.push_str(&format!(
            "<td>{}</td>",
            v.map(num).unwrap_or_else(|| "–".into())
        ));
    }
    h.push_str("</tr>\n</table>\n</section>\n");
    h
}

/// Sorts every table with a header row by the clicked column (numbers as numbers); a last row marked as a
/// total stays last.
pub const SORT_SCRIPT: &str = r#"
document.querySelectorAll('table').forEach(function (t) {
  var head = t.rows[0];
  if (!head || !head.cells.length || head.cells[0].tagName !== 'TH' || t.rows.length < 3) return;
  Array.prototype.forEach.call(head.cells, function (th, col) {
    th.style.cursor = 'pointer';
    th.title = 'sort by this column';
    th.addEventListener('click', function () {
      var rows = Array.prototype.slice.call(t.rows, 1);
      var total = rows.length && rows[rows.length - 1].classList.contains('total') ? rows.pop() : null;
      var asc = th.dataset.sort !== 'asc';
      Array.prototype.forEach.call(head.cells, function (h) { delete h.dataset.sort; });
      th.dataset.sort = asc ? 'asc' : 'desc';
      var key = function (r) { var s = r.cells[col].textContent; var x = parseFloat(s); return isNaN(x) ? s : x; };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { t.tBodies[0].appendChild(r); });
      if (total) t.tBodies[0].appendChild(total);
    });
  });
});
"#;

/// The search study: recall against ef_search, recall against bytes per vector, and the parameter sets.
pub fn search_block(idx: usize, st: &StudyReport) -> String {
    let mut h = format!(
        "<h3>Search</h3>\n<p>HNSW on {} rows, {} held-out queries, recall@{} against the exact neighbours.</p>\n<div class=\"plots\">\n",
        st.n_refs, st.n_queries, st.k
    );
    let ef = Plot {
        title: "Recall against ef_search".into(),
        x_label: "ef_search (log scale)".into(),
        y_label: format!("recall@{}", st.k),
        x_scale: Scale::Log10,
        series: vec![Series {
            name: format!(
                "M = {}, ef_construction = {}",
                st.user.m, st.user.ef_construction
            ),
            points: st
                .ef_curve
                .iter()
                .map(|p| (p.ef_search as f64, p.recall))
                .collect(),
            line: true,
            markers: true,
            color: "#0969da".into(),
            dashed: false,
        }],
        ..Plot::default()
    };
    h.push_str(&ef.render(&format!("search-ef-{idx}")));
    if let Some(c) = &st.compression {
        let mut methods: Vec<&str> = c.points.iter().map(|p| p.method.as_str()).collect();
        methods.dedup();
        methods.sort_unstable();
        methods.dedup();
        let n = methods.len();
        let series = methods
            .iter()
            .enumerate()
            .map(|(k, m)| Series {
                name: m.to_string(),
                points: c
                    .points
                    .iter()
                    .filter(|p| p.method == *m)
                    .map(|p| (p.bytes_per_vector as f64, p.recall))
                    .collect(),
                line: true,
                markers: true,
                color: class_color(k, n),
                dashed: false,
            })
            .collect();
        let plot = Plot {
            title: "Recall against bytes per vector".into(),
            x_label: "bytes per vector (log scale)".into(),
            y_label: format!("recall@{} of the exact neighbours", st.k),
            x_scale: Scale::Log10,
            series,
            h_line: Some((
                c.advice.target_recall,
                format!("target {}", num(c.advice.target_recall)),
            )),
            ..Plot::default()
        };
        h.push_str(&plot.render(&format!("search-bytes-{idx}")));
    }
    h.push_str("</div>\n<table class=\"sortable\"><tr><th class=\"t\">parameters</th><th>M</th><th>ef_construction</th><th>ef_search</th><th>recall</th><th>queries/s</th><th>index bytes/vector</th></tr>\n");
    for s in st.vendor_defaults.iter().chain(std::iter::once(&st.user)) {
        h.push_str(&format!(
            "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&s.name),
            s.m,
            s.ef_construction,
            s.ef_search,
            num(s.recall),
            num(s.queries_per_second),
            num(s.index_bytes_per_vector)
        ));
    }
    h.push_str("</table>\n");
    if let Some(c) = &st.compression {
        h.push_str(&format!("<p>{}</p>\n", esc(&c.advice.text)));
    }
    for n in &st.notes {
        h.push_str(&format!("<p class=\"note\">{}</p>\n", esc(n)));
    }
    h
}
