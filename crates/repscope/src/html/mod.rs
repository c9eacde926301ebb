//! The self-contained HTML report, rendered from the report's JSON document (so the two always agree): each
//! part is read back as the engine's typed struct, so a field the struct lacks shows as a failed note.
//! One file: inline CSS, SVG and one small script that sorts tables; no font, image or anything else fetched from the network.
pub mod pictures;
pub mod svg;

use serde_json::Value;
use svg::{esc, Plot, Scale, Series};

use crate::activations::ActivationReport;
use crate::classes::ClassReport;
use crate::fmt::num;
use crate::intrinsic::suite::{IdReport, ScalePoint};
use crate::report::LidSection;
use crate::sae::eval::EvalReport;
use crate::search::study::StudyReport;
use crate::similarity::layers::{LayerEntry, LayersReport};
use crate::spectrum::SpectrumReport;

const CSS: &str = r#"
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#1b1f23;line-height:1.45}
h1{font-size:24px;margin-bottom:4px} h2{font-size:20px;margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:16px;margin-top:20px}
.meta{color:#57606a;font-size:13px} code{background:#f6f8fa;padding:1px 4px;border-radius:3px;font-size:12px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:130px}
.card .v{font-size:22px;font-weight:600} .card .l{font-size:12px;color:#57606a}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}
th{background:#f6f8fa} td:first-child,th:first-child,td.t,th.t{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:16px}
svg.plot{background:#fff;border:1px solid #eaeef2}
svg .frame{fill:none;stroke:#57606a} svg .grid{stroke:#eaeef2} svg .tick{font-size:11px;fill:#57606a}
svg .axis{font-size:12px;fill:#1b1f23} svg .ptitle{font-size:13px;font-weight:600;fill:#1b1f23} svg .legend{font-size:11px;fill:#1b1f23}
svg .ref{stroke:#cf222e;stroke-dasharray:4 3} svg .vref{stroke:#8250df;stroke-dasharray:2 3} svg .bar{fill:#0969da}
.note{color:#9a6700;font-size:13px} .failed{color:#cf222e}
.summary{background:#f6f8fa;border-left:4px solid #0969da;padding:8px 14px;margin:10px 0;font-size:15px}
.summary p{margin:6px 0} .summary .num{font-weight:600} .warnings{margin:6px 0;padding-left:18px;color:#9a6700;font-size:14px}
.legend-list{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;max-width:1100px;margin:4px 0 10px}
.swatch i{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px;vertical-align:middle}
th{cursor:pointer} th[data-sort=asc]::after{content:" ▲"} th[data-sort=desc]::after{content:" ▼"}
@media print{body{margin:0;max-width:none} .plots{display:block} svg.plot{page-break-inside:avoid}}
"#;

fn card(value: &str, label: &str) -> String {
    format!(
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"l\">{}</div></div>",
        esc(value),
        esc(label)
    )
}

/// A section of the document as its typed struct, or the note to show instead (and whether it failed).
fn section<T: serde::de::DeserializeOwned>(
    sections: &Value,
    name: &str,
) -> Result<T, (String, bool)> {
    let s = &sections[name];
    match s["status"].as_str() {
        Some("ok") => pictures::typed(&s["value"], name).map_err(|e| (e, true)),
        Some(st) => Err((
            format!("{name}: {st}: {}", s["note"].as_str().unwrap_or("")),
            st == "failed",
        )),
        None => Err((format!("{name}: not computed"), false)),
    }
}

fn note(msg: &str, failed: bool) -> String {
    format!(
        "<p class=\"note{}\">{}</p>\n",
        if failed { " failed" } else { "" },
        esc(msg)
    )
}

/// A number for a table cell, or "–".
fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "–".into())
}

/// A two-column table of named values.
fn measure_table(rows: &[(String, String)]) -> String {
    let mut h = String::from("<table><tr><th>measure</th><th>value</th></tr>\n");
    for (name, v) in rows {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            esc(name),
            esc(v)
        ));
    }
    h.push_str("</table>\n");
    h
}

fn id_section(idx: usize, id: &IdReport) -> String {
    let mut h = String::from("<h3>Intrinsic dimension</h3>\n<table><tr><th>estimator</th><th>value</th><th>std. error</th><th class=\"t\">variant</th></tr>\n");
    for e in &id.estimates {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"t\">{}</td></tr>\n",
            esc(&e.estimator),
            num(e.value),
            opt(e.stderr),
            esc(&e.variant)
        ));
    }
    h.push_str("</table>\n");
    if let Some(c) = &id.neighbours {
        let swept = if c.exhaustive > 0 {
            format!(
                ", {} compared with every row (their f32 ranking keys overflow)",
                c.exhaustive
            )
        } else {
            String::new()
        };
        h.push_str(&format!(
            "<p>Neighbour graph: exact on all {} distinct rows; {} certified by the rounding bound of the candidate pass, {} recomputed by the exact range pass{swept}.</p>\n",
            c.rows, c.certified, c.recomputed
        ));
    }
    let mut gride = Vec::new();
    let mut dec = Vec::new();
    for p in &id.scale_curve {
        match p {
            ScalePoint::Gride(g) => gride.push((g.mean_r_n2, g.d)),
            ScalePoint::Decimation(q) => dec.push((q.mean_r1, q.d)),
        }
    }
    if !gride.is_empty() || !dec.is_empty() {
        let plot = Plot {
            title: "Intrinsic dimension against scale".into(),
            x_label: "mean neighbour distance (data units, log scale)".into(),
            y_label: "intrinsic dimension".into(),
            x_scale: Scale::Log10,
            series: vec![
                Series {
                    name: "GRIDE (n1, 2·n1)".into(),
                    points: gride,
                    line: true,
                    markers: true,
                    color: "#0969da".into(),
                    dashed: false,
                },
                Series {
                    name: "TwoNN on subsets".into(),
                    points: dec,
                    line: true,
                    markers: true,
                    color: "#bf3989".into(),
                    dashed: true,
                },
            ],
            h_line: id
                .dimension
                .as_ref()
                .map(|d| (d.value, format!("recommended {}", num(d.value)))),
            ..Plot::default()
        };
        h.push_str(&plot.render(&format!("scale-{idx}")));
    }
    for n in &id.notes {
        h.push_str(&note(n, false));
    }
    h
}

fn lid_section(idx: usize, lid: &LidSection) -> String {
    let s = &lid.summary;
    let mut h = String::from("<h3>Local intrinsic dimension</h3>\n");
    h.push_str(&format!(
        "<p>Per-point LID (MLE, k = {}): mean {}, median {}, min {}, max {}.</p>\n",
        lid.k,
        num(s.mean),
        num(s.median),
        num(s.min),
        num(s.max)
    ));
    h.push_str(&svg::histogram(
        &format!("lid-{idx}"),
        "Per-point LID",
        "local intrinsic dimension",
        "points",
        &lid.histogram.edges,
        &lid.histogram.counts,
    ));
    h
}

fn spectrum_section(idx: usize, sp: &SpectrumReport) -> String {
    let pts: Vec<(f64, f64)> = sp
        .eigenvalues
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0.0)
        .map(|(i, v)| ((i + 1) as f64, *v))
        .collect();
    let mut series = vec![Series {
        name: "covariance eigenvalues".into(),
        points: pts,
        line: true,
        markers: true,
        color: "#0969da".into(),
        dashed: false,
    }];
    if let Some(a) = &sp.alpha_req {
        // log λ = b − α log i over the fitted window.
        let fit: Vec<(f64, f64)> = a
            .window
            .iter()
            .map(|&i| (i as f64, (a.intercept - a.alpha * (i as f64).ln()).exp()))
            .collect();
        series.push(Series {
            name: format!("α-ReQ fit: α = {}, R² = {}", num(a.alpha), num(a.r2)),
            points: fit,
            line: true,
            markers: false,
            color: "#cf222e".into(),
            dashed: true,
        });
    }
    let plot = Plot {
        title: "Eigen-spectrum (centred covariance)".into(),
        x_label: "component rank (log scale)".into(),
        y_label: "eigenvalue (variance, log scale)".into(),
        x_scale: Scale::Log10,
        y_scale: Scale::Log10,
        series,
        ..Plot::default()
    };
    let mut rows: Vec<(String, String)> = vec![
        (
            "effective rank (centred)".into(),
            num(sp.effective_rank.value),
        ),
        ("RankMe (uncentred)".into(), num(sp.rankme.value)),
        ("participation ratio".into(), num(sp.participation_ratio)),
        ("α-ReQ".into(), opt(sp.alpha_req.as_ref().map(|a| a.alpha))),
        (
            "coding rate (ε² = 0.5, nats)".into(),
            opt(sp.coding_rate.as_ref().map(|c| c.value)),
        ),
        ("anisotropy (mean cosine)".into(), num(sp.anisotropy)),
        (
            "top component's share of variance".into(),
            opt(sp.explained_variance_ratio.first().copied()),
        ),
    ];
    if let Some(r) = sp.rogue_dimensions.first() {
        rows.push((
            "top rogue dimension".into(),
            format!("{} ({}% of the anisotropy)", r.dim, num(100.0 * r.share)),
        ));
    }
    let mut h = String::from("<h3>Spectrum</h3>\n");
    h.push_str(&measure_table(&rows));
    h.push_str(&plot.render(&format!("spectrum-{idx}")));
    h
}

fn activations_section(idx: usize, a: &ActivationReport) -> String {
    let (massive, peak) = (&a.massive, &a.peak_rows);
    let outliers = a
        .outlier_dimensions
        .iter()
        .take(8)
        .map(|d| d.dim.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(String, String)> = vec![
        (
            "outlier ratio γ = ‖mean‖/‖std‖".into(),
            opt(a.outlier_ratio),
        ),
        ("share of exact zeros".into(), num(a.zero_fraction)),
        ("mean row norm".into(), num(a.mean_row_norm)),
        (
            format!(
                "massive activations (|a| > {} and > {} × row median)",
                num(massive.abs_threshold),
                num(massive.ratio_threshold)
            ),
            format!("{} in {} rows", massive.count, massive.rows),
        ),
        (
            format!(
                "peak rows (max|a|/median|a| ≥ {} × its median over rows)",
                num(peak.factor)
            ),
            peak.rows.to_string(),
        ),
        (
            format!(
                "outlier dimensions (|z| of the mean > {})",
                num(a.outlier_sigma)
            ),
            if outliers.is_empty() {
                "none".into()
            } else {
                outliers
            },
        ),
    ];
    let mut h = String::from("<h3>Activations</h3>\n");
    h.push_str(&measure_table(&rows));
    if !peak.groups.is_empty() {
        h.push_str("<table><tr><th>peak rows: token</th><th>dimension</th><th>rows</th><th>median peak</th><th>median ratio</th></tr>\n");
        for g in peak.groups.iter().take(10) {
            let token = match (&g.token, g.token_id) {
                (Some(t), Some(i)) => format!("{t} ({i})"),
                (None, Some(i)) => i.to_string(),
                _ => "–".into(),
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&token),
                g.dim,
                g.rows,
                num(g.median_peak),
                num(g.median_ratio)
            ));
        }
        h.push_str("</table>\n");
    }
    let pts: Vec<(f64, f64)> = a
        .per_dimension
        .max_abs
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0.0 && v.is_finite())
        .map(|(j, v)| (j as f64, *v))
        .collect();
    if !pts.is_empty() {
        let plot = Plot {
            title: "Largest |a| of each dimension".into(),
            x_label: "dimension".into(),
            y_label: "max |a| (log scale)".into(),
            y_scale: Scale::Log10,
            series: vec![Series {
                name: "max |a|".into(),
                points: pts,
                line: false,
                markers: true,
                color: "#8250df".into(),
                dashed: false,
            }],
            h_line: Some(massive.abs_threshold)
                .filter(|t| *t > 0.0)
                .map(|t| (t, format!("massive threshold {}", num(t)))),
            ..Plot::default()
        };
        h.push_str(&plot.render(&format!("activations-{idx}")));
    }
    h
}

fn sae_section(idx: usize, e: &EvalReport) -> String {
    let arch = serde_json::to_value(e.arch)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let share = |n: usize| format!("{n} ({:.2}%)", 100.0 * n as f64 / e.width.max(1) as f64);
    let rows: Vec<(String, String)> = vec![
        ("L0 (mean active latents per row)".into(), num(e.l0)),
        ("FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖²".into(), num(e.fvu)),
        (
            "explained variance, 1 − FVU".into(),
            num(e.explained_variance),
        ),
        (
            "explained variance, per-row mean (legacy)".into(),
            num(e.explained_variance_legacy),
        ),
        ("MSE per value".into(), num(e.mse)),
        ("mean cosine of x and x̂".into(), num(e.cosine)),
        ("mean ‖x̂‖ / ‖x‖".into(), num(e.l2_ratio)),
        (
            "relative reconstruction bias E‖x̂‖² / E⟨x, x̂⟩".into(),
            num(e.relative_reconstruction_bias),
        ),
        ("dead latents (never fired)".into(), share(e.dead_latents)),
        (
            "dense latents (> 1% of rows)".into(),
            share(e.dense_over_1pct),
        ),
        (
            "dense latents (> 10% of rows)".into(),
            share(e.dense_over_10pct),
        ),
        (
            "largest decoder cosine (mean over latents)".into(),
            format!(
                "{} ({})",
                num(e.max_decoder_cosine),
                num(e.mean_max_decoder_cosine)
            ),
        ),
    ];
    let mut h = format!(
        "<h3>Sparse autoencoder</h3>\n<p>{} latents ({}), evaluated on {} rows.</p>\n",
        e.width,
        esc(&arch),
        e.rows
    );
    h.push_str(&measure_table(&rows));
    for n in &e.notes {
        h.push_str(&format!("<p class=\"note\">{}</p>\n", esc(n)));
    }
    h.push_str(&svg::histogram(
        &format!("sae-density-{idx}"),
        "Feature density (dead latents in the leftmost bin)",
        "log10(firing frequency + 1e-10)",
        "latents",
        &e.density_histogram.edges,
        &e.density_histogram.counts,
    ));
    h
}

fn classes_section(c: &ClassReport) -> String {
    let nc = &c.neural_collapse;
    let rows: Vec<(String, String)> = vec![
        ("classes".into(), c.n_classes.to_string()),
        ("NC1 = tr(Σ_W Σ_B⁺)/C".into(), num(nc.nc1)),
        ("NC2 equinorm".into(), num(nc.nc2_equinorm)),
        ("NC2 equiangularity".into(), num(nc.nc2_equiangularity)),
        ("NC2 max-angle".into(), num(nc.nc2_max_angle)),
        ("CDNV (mean over pairs)".into(), num(c.cdnv)),
        ("nearest-class-centre accuracy".into(), num(c.ncc_accuracy)),
        (
            "leave-one-out kNN accuracy".into(),
            opt(c.knn_accuracy.as_ref().map(|k| k.accuracy)),
        ),
    ];
    let mut h = String::from("<h3>Class geometry</h3>\n");
    h.push_str(&measure_table(&rows));
    for n in &c.notes {
        h.push_str(&note(n, false));
    }
    h
}

fn layers_block(l: &LayersReport) -> String {
    let mut h = String::from("<section class=\"layers\" id=\"layers\">\n<h2>Across layers</h2>\n");
    let ids: Vec<(f64, f64)> = l
        .layers
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((i as f64, e.id.as_ref()?.value)))
        .collect();
    let plot = Plot {
        title: "Intrinsic dimension across layers".into(),
        x_label: "layer # (in input order, see the table)".into(),
        y_label: "intrinsic dimension".into(),
        series: vec![Series {
            name: "recommended ID".into(),
            points: ids,
            line: true,
            markers: true,
            color: "#0969da".into(),
            dashed: false,
        }],
        ..Plot::default()
    };
    let per_layer = |f: &dyn Fn(&LayerEntry) -> f64| -> Vec<(f64, f64)> {
        l.layers
            .iter()
            .enumerate()
            .map(|(i, e)| (i as f64, f(e)))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let ranks = Plot {
        title: "Effective rank and participation ratio across layers".into(),
        x_label: "layer # (in input order, see the table)".into(),
        y_label: "directions".into(),
        series: vec![
            Series {
                name: "effective rank".into(),
                points: per_layer(&|e| e.spectrum.effective_rank),
                line: true,
                markers: true,
                color: "#1a7f37".into(),
                dashed: false,
            },
            Series {
                name: "participation ratio".into(),
                points: per_layer(&|e| e.spectrum.participation_ratio),
                line: true,
                markers: true,
                color: "#bc4c00".into(),
                dashed: true,
            },
        ],
        ..Plot::default()
    };
    h.push_str("<div class=\"plots\">\n");
    h.push_str(&plot.render("layers-id"));
    h.push_str(&ranks.render("layers-rank"));
    h.push_str(&svg::heatmap(
        "layers-cka",
        "Debiased linear CKA between layers",
        &l.keys,
        &l.cka_linear_debiased,
        0.0,
        1.0,
        Scale::Linear,
    ));
    h.push_str(&svg::heatmap(
        "layers-mknn",
        &format!("Mutual kNN (k = {}) between layers", l.k),
        &l.keys,
        &l.mutual_knn,
        0.0,
        1.0,
        Scale::Linear,
    ));
    h.push_str("</div>\n<table><tr><th>#</th><th>layer</th><th>intrinsic dimension</th><th>participation ratio</th><th>α-ReQ</th><th>anisotropy</th></tr>\n");
    for (i, e) in l.layers.iter().enumerate() {
        h.push_str(&format!(
            "<tr><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&e.key),
            opt(e.id.as_ref().map(|d| d.value)),
            num(e.spectrum.participation_ratio),
            opt(e.spectrum.alpha),
            num(e.spectrum.anisotropy),
        ));
    }
    h.push_str("</table>\n</section>\n");
    h
}

fn input_section(idx: usize, inp: &Value) -> String {
    let mut h = format!(
        "<section class=\"input\" id=\"input-{idx}\">\n<h2>{}</h2>\n",
        esc(inp["name"].as_str().unwrap_or("input"))
    );
    let sections = &inp["sections"];
    let id: Result<IdReport, _> = section(sections, "intrinsic_dimension");
    let mut cards = String::new();
    cards.push_str(&card(&inp["n"].to_string(), "rows (n)"));
    cards.push_str(&card(&inp["d"].to_string(), "dimensions (d)"));
    cards.push_str(&card(
        &inp["duplicates_merged"].to_string(),
        "duplicate rows merged",
    ));
    if let Some(d) = id.as_ref().ok().and_then(|id| id.dimension.as_ref()) {
        // The value alone: its standard error is one estimator's at one scale, and the spread across
        // estimators and scales (in the summary) is the honest uncertainty.
        cards.push_str(&card(
            &num(d.value),
            &format!(
                "recommended intrinsic dimension ({}); the summary gives the spread",
                d.estimator
            ),
        ));
    }
    if let Some(t) = inp["known_dimension"].as_f64() {
        cards.push_str(&card(&num(t), "true dimension (known)"));
    }
    h.push_str(&pictures::summary_block(idx, inp));
    h.push_str(&format!("<div class=\"cards\">{cards}</div>\n"));
    if let Some(s) = inp["sample"].as_object() {
        h.push_str(&note(
            &format!(
                "Analysed a seeded sample of {} of the {} rows (seed {}).",
                s["rows_analysed"], s["rows_in_file"], s["seed"]
            ),
            false,
        ));
    }
    h.push_str("<div class=\"plots-col\">\n");
    let block = |name: &str, body: String| {
        format!("<div class=\"block\" id=\"{name}-block-{idx}\">\n{body}</div>\n")
    };
    match &id {
        Ok(id) => h.push_str(&block("id", id_section(idx, id))),
        Err((e, _)) => h.push_str(&note(e, true)),
    }
    let classes: Option<Result<ClassReport, _>> = sections
        .get("classes")
        .map(|_| section(sections, "classes"));
    let class_names = classes
        .as_ref()
        .and_then(|c| c.as_ref().ok())
        .map(|c| c.class_names.clone());
    h.push_str(&pictures::map_block(idx, inp, class_names.as_deref()));
    match section::<LidSection>(sections, "lid") {
        Ok(l) => h.push_str(&block("lid", lid_section(idx, &l))),
        Err((e, failed)) => h.push_str(&note(&e, failed)),
    }
    match section::<SpectrumReport>(sections, "spectrum") {
        Ok(sp) => h.push_str(&block(
            "spectrum",
            spectrum_section(idx, &sp) + &pictures::cumulative_plot(idx, &sp, id.as_ref().ok()),
        )),
        Err((e, failed)) => h.push_str(&note(&e, failed)),
    }
    if sections.get("activations").is_some() {
        match section::<ActivationReport>(sections, "activations") {
            Ok(a) => h.push_str(&block("activations", activations_section(idx, &a))),
            Err((e, failed)) => h.push_str(&note(&e, failed)),
        }
    }
    if sections.get("sae").is_some() {
        match section::<EvalReport>(sections, "sae") {
            Ok(a) => h.push_str(&block("sae", sae_section(idx, &a))),
            Err((e, failed)) => h.push_str(&note(&e, failed)),
        }
    }
    if sections.get("search").is_some() {
        match section::<StudyReport>(sections, "search") {
            Ok(v) => h.push_str(&block("search", pictures::search_block(idx, &v))),
            Err((e, failed)) => h.push_str(&note(&e, failed)),
        }
    }
    match classes {
        Some(Ok(c)) => h.push_str(&block(
            "classes",
            classes_section(&c) + &pictures::class_pictures(idx, &c),
        )),
        Some(Err((e, failed))) => h.push_str(&block(
            "classes",
            format!("<h3>Class geometry</h3>\n{}", note(&e, failed)),
        )),
        None => {}
    }
    h.push_str("</div>\n</section>\n");
    h
}

/// The whole page.
pub fn render(doc: &Value) -> String {
    let mut body = String::new();
    body.push_str("<h1>repscope report</h1>\n");
    body.push_str(&format!(
        "<p class=\"meta\">repscope {} · schema {} · command: <code>{}</code></p>\n",
        esc(doc["repscope_version"].as_str().unwrap_or("")),
        esc(doc["schema"].as_str().unwrap_or("")),
        esc(doc["command"].as_str().unwrap_or(""))
    ));
    if doc.get("layers").is_some() {
        match section::<LayersReport>(doc, "layers") {
            Ok(l) => body.push_str(&layers_block(&l)),
            Err((e, failed)) => body.push_str(&note(&format!("layer study: {e}"), failed)),
        }
    }
    if let Some(b) = doc.get("benchmark") {
        body.push_str(&pictures::benchmark_block(b));
    }
    for (i, inp) in doc["inputs"].as_array().into_iter().flatten().enumerate() {
        body.push_str(&input_section(i, inp));
    }
    let script = pictures::SORT_SCRIPT;
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<title>repscope report</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}<script>{script}</script>\n</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section whose fields do not match the engine's struct (a renamed field) shows as a failed note
    /// that names it, never as a table of "–".
    #[test]
    fn a_section_that_does_not_read_back_says_so() {
        let doc = serde_json::json!({
            "schema": crate::report::SCHEMA, "repscope_version": "0", "command": "", "seed": 0,
            "inputs": [{
                "name": "x", "n": 3, "d": 2, "n_distinct": 3, "duplicates_merged": 0, "sample": null,
                "summary": {"lines": [], "warnings": []},
                "sections": {
                    "spectrum": {"status": "ok", "note": null, "value": {"eigen_values": [1.0, 0.5]}},
                    "lid": {"status": "skipped", "note": "needs a graph", "value": null}
                }
            }]
        });
        let html = render(&doc);
        assert!(html.contains("spectrum: cannot be read"), "{html}");
        assert!(
            html.contains("missing field"),
            "the note names what is missing"
        );
        assert!(html.contains("lid: skipped: needs a graph"));
        assert!(!html.contains("id=\"spectrum-0\""));
    }
}
