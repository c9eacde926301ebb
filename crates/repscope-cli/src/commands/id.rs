//! `repscope id`: the intrinsic-dimension suite.
use clap::Args;
use repscope::intrinsic::suite::{self, IdConfig, IdReport, ScalePoint};

use super::{metric, print_json, SourceInput};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{CliResult, Global};

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub input: SourceInput,
    /// Estimators to run (repeatable): twonn_calibrated, twonn, twonn_mle, mle, gride, pca_ev, pca_fo,
    /// pca_pr (the default eight; `default`, and `pca` for the three PCA rules), and by name mom, tle, mada,
    /// ess, mle_unbiased, mle_global, corrint, fisher_s, mind_mlk, mind_mli, mind_kl, twonn_bayes, binomial,
    /// binomial_rk, danco, danco_fit, knn, ph, kstar_gride, kstar_binomial, hidalgo, pca_maxgap, pca_ratio,
    /// pca_kaiser, pca_broken_stick, pca_fan; `all` for every one.
    #[arg(long = "estimator", short = 'e', num_args = 1..)]
    pub estimators: Vec<String>,
    /// Neighbours for the Levina–Bickel MLE.
    #[arg(long, short = 'k', default_value_t = 20)]
    pub k: usize,
    /// Fraction of the largest TwoNN ratios left out of the fit.
    #[arg(long, default_value_t = 0.1)]
    pub discard_fraction: f64,
    /// Largest neighbour rank of the GRIDE scale curve.
    #[arg(long, default_value_t = 64)]
    pub range_max: usize,
    /// euclidean or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Skip the scale curve (GRIDE multiscale and decimation).
    #[arg(long)]
    pub no_scale: bool,
}

pub fn config(a: &IdArgs) -> Result<IdConfig, crate::Failure> {
    let mut cfg = IdConfig {
        k_mle: a.k,
        discard_fraction: a.discard_fraction,
        range_max: a.range_max,
        metric: metric(&a.metric)?,
        seed: a.input.seed,
        scale_curve: !a.no_scale,
        ..IdConfig::default()
    };
    if !a.estimators.is_empty() {
        cfg.estimators = a.estimators.clone();
    }
    suite::graph_k(&cfg)?;
    Ok(cfg)
}

pub fn run(a: &IdArgs, g: &Global) -> CliResult {
    let cfg = config(a)?;
    let (ds, input, total) = a.input.dataset("the ID suite")?;
    let bars = Bars::new(g.quiet);
    let report = suite::run(&ds, &cfg, &bars)?;
    let note = a.input.selection_note(total);
    if g.json {
        let mut doc = to_json(&report, input, &cfg);
        if let (Some(o), Some(note)) = (doc.as_object_mut(), &note) {
            o.insert("selection".into(), serde_json::json!(note));
        }
        print_json(&doc)
    } else {
        print!("{}", render(&report, &a.input.paths().join(" ")));
        if let Some(note) = &note {
            println!("{note}");
        }
        Ok(())
    }
}

/// The JSON document of a run: the report plus its input and parameters.
pub fn to_json(report: &IdReport, input: serde_json::Value, cfg: &IdConfig) -> serde_json::Value {
    repscope::documents::id(report, input, cfg)
}

/// Human-readable tables.
pub fn render(r: &IdReport, name: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{name}: n = {}, d = {}, {} distinct rows ({} duplicates merged), metric {}\n",
        r.n,
        r.d,
        r.n_distinct,
        r.duplicates_merged,
        r.metric.name()
    ));
    if let Some(c) = &r.neighbours {
        out.push_str(&format!(
            "neighbour graph: {}\n",
            super::certificate_line(c)
        ));
    }
    if let Some(d) = &r.dimension {
        let se = d
            .stderr
            .map(|s| format!(" ± {}", num(s)))
            .unwrap_or_default();
        out.push_str(&format!(
            "\nintrinsic dimension: {}{se}  [{}]\n  {}\n\n",
            num(d.value),
            d.estimator,
            d.why
        ));
    }
    let mut t = Table::new(&["estimator", "value", "stderr", "variant"]);
    for e in &r.estimates {
        t.row(vec![
            e.estimator.clone(),
            num(e.value),
            e.stderr.map(num).unwrap_or_else(|| "-".into()),
            e.variant.clone(),
        ]);
    }
    out.push_str(&t.render());
    let gride: Vec<_> = r
        .scale_curve
        .iter()
        .filter_map(|p| {
            if let ScalePoint::Gride(g) = p {
                Some(g)
            } else {
                None
            }
        })
        .collect();
    if !gride.is_empty() {
        out.push_str("\nGRIDE scale curve (neighbour rank n1 -> n2, mean distance r_n2)\n");
        let mut t = Table::new(&["n1", "n2", "mean r_n2", "d", "stderr"]);
        for g in gride {
            t.row(vec![
                g.n1.to_string(),
                g.n2.to_string(),
                num(g.mean_r_n2),
                num(g.d),
                num(g.se),
            ]);
        }
        out.push_str(&t.render());
    }
    let dec: Vec<_> = r
        .scale_curve
        .iter()
        .filter_map(|p| {
            if let ScalePoint::Decimation(g) = p {
                Some(g)
            } else {
                None
            }
        })
        .collect();
    if !dec.is_empty() {
        out.push_str("\nDecimation curve (TwoNN on random subsets)\n");
        let mut t = Table::new(&["subset n", "subsets", "mean r1", "d", "spread"]);
        for g in dec {
            t.row(vec![
                g.n.to_string(),
                g.replicates.to_string(),
                num(g.mean_r1),
                num(g.d),
                num(g.spread),
            ]);
        }
        out.push_str(&t.render());
    }
    let mut notes: Vec<String> = r.notes.clone();
    for e in &r.estimates {
        for n in &e.notes {
            let s = format!("{}: {n}", e.estimator);
            if !notes.contains(&s) {
                notes.push(s);
            }
        }
    }
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}
