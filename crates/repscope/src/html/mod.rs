//! The self-contained HTML report, rendered from the report's JSON document (so the two always agree).
//! One file: inline CSS, SVG and one small script that sorts tables; no font, image or anything else fetched from the network.
pub mod pictures;
pub mod svg;

use serde_json::Value;
use svg::{esc, Plot, Scale, Series};

use crate::fmt::num;

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

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn section_value<'a>(sections: &'a Value, name: &str) -> Result<&'a Value, String> {
    let s = &sections[name];
    match s["status"].as_str() {
        Some("ok") => Ok(&s["value"]),
        Some(st) => Err(format!(
            "{name}: {st}: {}",
            s["note"].as_str().unwrap_or("")
        )),
        None => Err(format!("{name}: not computed")),
    }
}

fn note(msg: &str, failed: bool) -> String {
    format!(
        "<p class=\"note{}\">{}</p>\n",
        if failed { " failed" } else { "" },
        esc(msg)
    )
}

fn id_section(idx: usize, id: &Value) -> String {
    let mut h = String::from("<h3>Intrinsic dimension</h3>\n<table><tr><th>estimator</th><th>value</th><th>std. error</th><th class=\"t\">variant</th></tr>\n");
    for e in id["estimates"].as_array().into_iter().flatten() {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"t\">{}</td></tr>\n",
            esc(e["estimator"].as_str().unwrap_or("")),
            f(&e["value"]).map(num).unwrap_or_default(),
            f(&e["stderr"]).map(num).unwrap_or_else(|| "–".into()),
            esc(e["variant"].as_str().unwrap_or(""))
        ));
    }
    h.push_str("</table>\n");
    let c = &id["neighbours"];
    if let (Some(rows), Some(cert), Some(rec)) = (
        c["rows"].as_u64(),
        c["certified"].as_u64(),
        c["recomputed"].as_u64(),
    ) {
        let swept = match c["exhaustive"].as_u64() {
            Some(e) if e > 0 => {
                format!(", {e} compared with every row (their f32 ranking keys overflow)")
            }
            _ => String::new(),
        };
        h.push_str(&format!(
            "<p>Neighbour graph: exact on all {rows} distinct rows; {cert} certified by the rounding bound of the candidate pass, {rec} recomputed by the exact range pass{swept}.</p>\n"
        ));
    }
    let curve = id["scale_curve"].as_array().cloned().unwrap_or_default();
    let gride: Vec<(f64, f64)> = curve
        .iter()
        .filter(|p| p["method"] == "gride")
        .filter_map(|p| Some((f(&p["mean_r_n2"])?, f(&p["d"])?)))
        .collect();
    let dec: Vec<(f64, f64)> = curve
        .iter()
        .filter(|p| p["method"] == "decimation")
        .filter_map(|p| Some((f(&p["mean_r1"])?, f(&p["d"])?)))
        .collect();
    if !gride.is_empty() || !dec.is_empty() {
        let plot = Plot {
            title: "Intrinsic dimension against scale".into(),
            x_label: "mean neighbour distance (data units, log scale)".into(),
            y_label: "intrinsic dimension".into(),
            x_scale: Scale::Log10,
            y_scale: Scale::Linear,
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
            h_line: id["dimension"]["value"]
                .as_f64()
                .map(|v| (v, format!("recommended {}", num(v)))),
            ..Plot::default()
        };
        h.push_str(&plot.render(&format!("scale-{idx}")));
    }
    for n in id["notes"].as_array().into_iter().flatten() {
        h.push_str(&note(n.as_str().unwrap_or(""), false));
    }
    h
}

fn lid_section(idx: usize, lid: &Value) -> String {
    let edges: Vec<f64> = lid["histogram"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(f)
        .collect();
    let counts: Vec<u64> = lid["histogram"]["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_u64())
        .collect();
    let s = &lid["summary"];
    let mut h = String::from("<h3>Local intrinsic dimension</h3>\n");
    h.push_str(&format!(
        "<p>Per-point LID (MLE, k = {}): mean {}, median {}, min {}, max {}.</p>\n",
        lid["k"],
        f(&s["mean"]).map(num).unwrap_or_default(),
        f(&s["median"]).map(num).unwrap_or_default(),
        f(&s["min"]).map(num).unwrap_or_default(),
        f(&s["max"]).map(num).unwrap_or_default()
    ));
    h.push_str(&svg::histogram(
        &format!("lid-{idx}"),
        "Per-point LID",
        "local intrinsic dimension",
        "points",
        &edges,
        &counts,
    ));
    h
}

fn spectrum_section(idx: usize, sp: &Value) -> String {
    let ev: Vec<f64> = sp["eigenvalues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(f)
        .collect();
    let pts: Vec<(f64, f64)> = ev
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
    let a = &sp["alpha_req"];
    if let (Some(alpha), Some(b), Some(lo), Some(hi)) = (
        f(&a["alpha"]),
        f(&a["intercept"]),
        a["window"][0].as_u64(),
        a["window"][1].as_u64(),
    ) {
        // log λ = b − α log i over the fitted window.
        let fit: Vec<(f64, f64)> = [lo, hi]
            .iter()
            .map(|&i| (i as f64, (b - alpha * (i as f64).ln()).exp()))
            .collect();
        series.push(Series {
            name: format!(
                "α-ReQ fit: α = {}, R² = {}",
                num(alpha),
                f(&a["r2"]).map(num).unwrap_or_default()
            ),
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
        h_line: None,
        ..Plot::default()
    };
    let mut h = String::from("<h3>Spectrum</h3>\n<table><tr><th>measure</th><th>value</th></tr>\n");
    let rows = [
        (
            "effective rank (centred)",
            f(&sp["effective_rank"]["value"]),
        ),
        ("RankMe (uncentred)", f(&sp["rankme"]["value"])),
        ("participation ratio", f(&sp["participation_ratio"])),
        ("α-ReQ", f(&sp["alpha_req"]["alpha"])),
        (
            "coding rate (ε² = 0.5, nats)",
            f(&sp["coding_rate"]["value"]),
        ),
        ("anisotropy (mean cosine)", f(&sp["anisotropy"])),
        (
            "top component's share of variance",
            sp["explained_variance_ratio"][0].as_f64(),
        ),
    ];
    for (name, v) in rows {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            esc(name),
            v.map(num).unwrap_or_else(|| "–".into())
        ));
    }
    if let Some(r) = sp["rogue_dimensions"].as_array().and_then(|r| r.first()) {
        h.push_str(&format!(
            "<tr><td>top rogue dimension</td><td>{} ({}% of the anisotropy)</td></tr>\n",
            r["dim"],
            f(&r["share"]).map(|s| num(100.0 * s)).unwrap_or_default()
        ));
    }
    h.push_str("</table>\n");
    h.push_str(&plot.render(&format!("spectrum-{idx}")));
    h
}

fn activations_section(idx: usize, a: &Value) -> String {
    let mut h =
        String::from("<h3>Activations</h3>\n<table><tr><th>measure</th><th>value</th></tr>\n");
    let massive = &a["massive"];
    let peak = &a["peak_rows"];
    let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "–".into());
    let rows: Vec<(String, String)> = vec![
        (
            "outlier ratio γ = ‖mean‖/‖std‖".into(),
            opt(f(&a["outlier_ratio"])),
        ),
        ("share of exact zeros".into(), opt(f(&a["zero_fraction"]))),
        ("mean row norm".into(), opt(f(&a["mean_row_norm"]))),
        (
            format!(
                "massive activations (|a| > {} and > {} × row median)",
                opt(f(&massive["abs_threshold"])),
                opt(f(&massive["ratio_threshold"]))
            ),
            format!("{} in {} rows", massive["count"], massive["rows"]),
        ),
        (
            format!(
                "peak rows (max|a|/median|a| ≥ {} × its median over rows)",
                opt(f(&peak["factor"]))
            ),
            peak["rows"].to_string(),
        ),
        (
            format!(
                "outlier dimensions (|z| of the mean > {})",
                opt(f(&a["outlier_sigma"]))
            ),
            a["outlier_dimensions"]
                .as_array()
                .map(|o| {
                    o.iter()
                        .take(8)
                        .map(|d| d["dim"].to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "none".into()),
        ),
    ];
    for (name, v) in rows {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            esc(&name),
            esc(&v)
        ));
    }
    h.push_str("</table>\n");
    if let Some(groups) = peak["groups"].as_array().filter(|g| !g.is_empty()) {
        h.push_str("<table><tr><th>peak rows: token</th><th>dimension</th><th>rows</th><th>median peak</th><th>median ratio</th></tr>\n");
        for g in groups.iter().take(10) {
            let token = match (g["token"].as_str(), g["token_id"].as_u64()) {
                (Some(t), Some(i)) => format!("{t} ({i})"),
                (None, Some(i)) => i.to_string(),
                _ => "–".into(),
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&token),
                g["dim"],
                g["rows"],
                opt(f(&g["median_peak"])),
                opt(f(&g["median_ratio"]))
            ));
        }
        h.push_str("</table>\n");
    }
    let pts: Vec<(f64, f64)> = a["per_dimension"]["max_abs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, v)| f(v).filter(|v| *v > 0.0).map(|v| (j as f64, v)))
        .collect();
    if !pts.is_empty() {
        let plot = Plot {
            title: "Largest |a| of each dimension".into(),
            x_label: "dimension".into(),
            y_label: "max |a| (log scale)".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Log10,
            series: vec![Series {
                name: "max |a|".into(),
                points: pts,
                line: false,
                markers: true,
                color: "#8250df".into(),
                dashed: false,
            }],
            h_line: f(&massive["abs_threshold"])
                .filter(|t| *t > 0.0)
                .map(|t| (t, format!("massive threshold {}", num(t)))),
            ..Plot::default()
        };
        h.push_str(&plot.render(&format!("activations-{idx}")));
    }
    h
}

fn sae_section(idx: usize, e: &Value) -> String {
    let opt = |v: &Value| f(v).map(num).unwrap_or_else(|| "–".into());
    let mut h = format!(
        "<h3>Sparse autoencoder</h3>\n<p>{} latents ({}), evaluated on {} rows.</p>\n<table><tr><th>measure</th><th>value</th></tr>\n",
        e["width"],
        esc(e["arch"].as_str().unwrap_or("")),
        e["rows"]
    );
    let share = |n: &Value| {
        let (n, w) = (
            n.as_u64().unwrap_or(0),
            e["width"].as_u64().unwrap_or(0).max(1),
        );
        format!("{n} ({:.2}%)", 100.0 * n as f64 / w as f64)
    };
    let rows: Vec<(&str, String)> = vec![
        ("L0 (mean active latents per row)", opt(&e["l0"])),
        ("FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖²", opt(&e["fvu"])),
        ("explained variance, 1 − FVU", opt(&e["explained_variance"])),
        (
            "explained variance, per-row mean (legacy)",
            opt(&e["explained_variance_legacy"]),
        ),
        ("MSE per value", opt(&e["mse"])),
        ("mean cosine of x and x̂", opt(&e["cosine"])),
        ("mean ‖x̂‖ / ‖x‖", opt(&e["l2_ratio"])),
        (
            "relative reconstruction bias E‖x̂‖² / E⟨x, x̂⟩",
            opt(&e["relative_reconstruction_bias"]),
        ),
        ("dead latents (never fired)", share(&e["dead_latents"])),
        ("dense latents (> 1% of rows)", share(&e["dense_over_1pct"])),
        (
            "dense latents (> 10% of rows)",
            share(&e["dense_over_10pct"]),
        ),
        (
            "largest decoder cosine (mean over latents)",
            format!(
                "{} ({})",
                opt(&e["max_decoder_cosine"]),
                opt(&e["mean_max_decoder_cosine"])
            ),
        ),
    ];
    for (name, v) in rows {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            esc(name),
            esc(&v)
        ));
    }
    h.push_str("</table>\n");
    if let Some(n) = e["notes"].as_array() {
        for n in n.iter().filter_map(Value::as_str) {
            h.push_str(&format!("<p class=\"note\">{}</p>\n", esc(n)));
        }
    }
    let hist = &e["density_histogram"];
    let edges: Vec<f64> = hist["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(f)
        .collect();
    let counts: Vec<u64> = hist["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    h.push_str(&svg::histogram(
        &format!("sae-density-{idx}"),
        "Feature density (dead latents in the leftmost bin)",
        "log10(firing frequency + 1e-10)",
        "latents",
        &edges,
        &counts,
    ));
    h
}

fn classes_section(c: &Value) -> String {
    let nc = &c["neural_collapse"];
    let mut h =
        String::from("<h3>Class geometry</h3>\n<table><tr><th>measure</th><th>value</th></tr>\n");
    let rows = [
        ("classes", c["n_classes"].as_f64()),
        ("NC1 = tr(Σ_W Σ_B⁺)/C", f(&nc["nc1"])),
        ("NC2 equinorm", f(&nc["nc2_equinorm"])),
        ("NC2 equiangularity", f(&nc["nc2_equiangularity"])),
        ("NC2 max-angle", f(&nc["nc2_max_angle"])),
        ("CDNV (mean over pairs)", f(&c["cdnv"])),
        ("nearest-class-centre accuracy", f(&c["ncc_accuracy"])),
        (
            "leave-one-out kNN accuracy",
            f(&c["knn_accuracy"]["accuracy"]),
        ),
    ];
    for (i, (name, v)) in rows.into_iter().enumerate() {
        // The first row is a count.
        let shown = match v {
            Some(v) if i == 0 => format!("{}", v as u64),
            Some(v) => num(v),
            None => "–".into(),
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            esc(name),
            shown
        ));
    }
    h.push_str("</table>\n");
    for n in c["notes"].as_array().into_iter().flatten() {
        h.push_str(&note(n.as_str().unwrap_or(""), false));
    }
    h
}

fn layers_block(l: &Value) -> String {
    let mut h = String::from("<section class=\"layers\" id=\"layers\">\n<h2>Across layers</h2>\n");
    let keys: Vec<String> = l["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| k.as_str().unwrap_or("").to_string())
        .collect();
    let ids: Vec<(f64, f64)> = l["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, e)| Some((i as f64, f(&e["id"]["value"])?)))
        .collect();
    let plot = Plot {
        title: "Intrinsic dimension across layers".into(),
        x_label: "layer # (in input order, see the table)".into(),
        y_label: "intrinsic dimension".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        series: vec![Series {
            name: "recommended ID".into(),
            points: ids,
            line: true,
            markers: true,
            color: "#0969da".into(),
            dashed: false,
        }],
        h_line: None,
        ..Plot::default()
    };
    let per_layer = |field: &str| -> Vec<(f64, f64)> {
        l["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, e)| Some((i as f64, f(&e["spectrum"][field])?)))
            .collect()
    };
    let ranks = Plot {
        title: "Effective rank and participation ratio across layers".into(),
        x_label: "layer # (in input order, see the table)".into(),
        y_label: "directions".into(),
        series: vec![
            Series {
                name: "effective rank".into(),
                points: per_layer("effective_rank"),
                line: true,
                markers: true,
                color: "#1a7f37".into(),
                dashed: false,
            },
            Series {
                name: "participation ratio".into(),
                points: per_layer("participation_ratio"),
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
    let matrix = |name: &str| -> Vec<Vec<f64>> {
        l[name]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                r.as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect()
    };
    h.push_str(&svg::heatmap(
        "layers-cka",
        "Debiased linear CKA between layers",
        &keys,
        &matrix("cka_linear_debiased"),
        0.0,
        1.0,
    ));
    h.push_str(&svg::heatmap(
        "layers-mknn",
        &format!("Mutual kNN (k = {}) between layers", l["k"]),
        &keys,
        &matrix("mutual_knn"),
        0.0,
        1.0,
    ));
    h.push_str("</div>\n<table><tr><th>#</th><th>layer</th><th>intrinsic dimension</th><th>participation ratio</th><th>α-ReQ</th><th>anisotropy</th></tr>\n");
    for (i, e) in l["layers"].as_array().into_iter().flatten().enumerate() {
        h.push_str(&format!(
            "<tr><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(e["key"].as_str().unwrap_or("")),
            f(&e["id"]["value"]).map(num).unwrap_or_else(|| "–".into()),
            f(&e["spectrum"]["participation_ratio"])
                .map(num)
                .unwrap_or_else(|| "–".into()),
            f(&e["spectrum"]["alpha"])
                .map(num)
                .unwrap_or_else(|| "–".into()),
            f(&e["spectrum"]["anisotropy"])
                .map(num)
                .unwrap_or_else(|| "–".into()),
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
    let mut cards = String::new();
    cards.push_str(&card(&inp["n"].to_string(), "rows (n)"));
    cards.push_str(&card(&inp["d"].to_string(), "dimensions (d)"));
    cards.push_str(&card(
        &inp["duplicates_merged"].to_string(),
        "duplicate rows merged",
    ));
    if let Ok(id) = section_value(sections, "intrinsic_dimension") {
        if let Some(v) = f(&id["dimension"]["value"]) {
            // The value alone: its standard error is one estimator's at one scale, and the spread across
            // estimators and scales (in the summary) is the honest uncertainty.
            cards.push_str(&card(
                &num(v),
                &format!(
                    "recommended intrinsic dimension ({}); the summary gives the spread",
                    id["dimension"]["estimator"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    if let Some(t) = f(&inp["known_dimension"]) {
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
    let id_value = section_value(sections, "intrinsic_dimension").ok();
    match section_value(sections, "intrinsic_dimension") {
        Ok(id) => h.push_str(&block("id", id_section(idx, id))),
        Err(e) => h.push_str(&note(&e, true)),
    }
    let class_names: Option<Vec<String>> = section_value(sections, "classes")
        .ok()
        .and_then(|c| serde_json::from_value(c["class_names"].clone()).ok());
    h.push_str(&pictures::map_block(idx, inp, class_names.as_deref()));
    match section_value(sections, "lid") {
        Ok(l) => h.push_str(&block("lid", lid_section(idx, l))),
        Err(e) => h.push_str(&note(&e, sections["lid"]["status"] == "failed")),
    }
    match section_value(sections, "spectrum") {
        Ok(sp) => h.push_str(&block(
            "spectrum",
            spectrum_section(idx, sp) + &pictures::cumulative_plot(idx, sp, id_value),
        )),
        Err(e) => h.push_str(&note(&e, sections["spectrum"]["status"] == "failed")),
    }
    if sections.get("activations").is_some() {
        match section_value(sections, "activations") {
            Ok(a) => h.push_str(&block("activations", activations_section(idx, a))),
            Err(e) => h.push_str(&note(&e, sections["activations"]["status"] == "failed")),
        }
    }
    if sections.get("sae").is_some() {
        match section_value(sections, "sae") {
            Ok(a) => h.push_str(&block("sae", sae_section(idx, a))),
            Err(e) => h.push_str(&note(&e, sections["sae"]["status"] == "failed")),
        }
    }
    if sections.get("search").is_some() {
        match section_value(sections, "search") {
            Ok(v) => h.push_str(&block("search", pictures::search_block(idx, v))),
            Err(e) => h.push_str(&note(&e, sections["search"]["status"] == "failed")),
        }
    }
    if sections.get("classes").is_some() {
        match section_value(sections, "classes") {
            Ok(c) => h.push_str(&block(
                "classes",
                classes_section(c) + &pictures::class_pictures(idx, c),
            )),
            Err(e) => h.push_str(&block(
                "classes",
                format!(
                    "<h3>Class geometry</h3>\n{}",
                    note(&e, sections["classes"]["status"] == "failed")
                ),
            )),
        }
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
    match doc["layers"]["status"].as_str() {
        Some("ok") => body.push_str(&layers_block(&doc["layers"]["value"])),
        Some("failed") => body.push_str(&note(
            &format!(
                "layer study: {}",
                doc["layers"]["note"].as_str().unwrap_or("")
            ),
            true,
        )),
        Some(_) => body.push_str(&note(
            &format!(
                "layer study skipped: {}",
                doc["layers"]["note"].as_str().unwrap_or("")
            ),
            false,
        )),
        None => {}
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
