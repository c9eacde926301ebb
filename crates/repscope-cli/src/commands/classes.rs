//! `repscope classes`: neural collapse, CDNV, NCC and leave-one-out kNN accuracy.
use std::path::PathBuf;

use clap::Args;
use repscope::classes::{self, ClassReport, Classifier};
use serde_json::json;

use super::{print_json, SourceInput};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{CliResult, Global};

#[derive(Args, Debug)]
pub struct ClassesArgs {
    #[command(flatten)]
    pub input: SourceInput,
    /// Labels, one per row: .npy/.npz (integers or strings) or a text file with one label per line.
    #[arg(long)]
    pub labels: PathBuf,
    /// Array to read from a labels .npz.
    #[arg(long)]
    pub labels_key: Option<String>,
    /// Class names for integer labels, one per line (the name of label 0 first), shown instead of the
    /// numbers.
    #[arg(long)]
    pub label_names: Option<PathBuf>,
    /// Classifier weights W (C × d, one row per class in label order) for NC3/NC4.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Array to read from a classifier .npz/.safetensors.
    #[arg(long)]
    pub classifier_key: Option<String>,
    /// Classifier bias b (C values); zero when omitted.
    #[arg(long, requires = "classifier")]
    pub bias: Option<PathBuf>,
    /// Neighbours of the leave-one-out kNN vote.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// Stream the rows even when they would fit in memory (sources above 2^28 values always stream).
    #[arg(long)]
    pub stream: bool,
    /// Rows of the seeded sample that the kNN vote runs on when the rows stream (--seed draws it).
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub knn_sample: usize,
}

pub fn run(a: &ClassesArgs, g: &Global) -> CliResult {
    let whole = a.input.open_whole()?;
    let labels =
        super::load_named_labels(&a.labels, a.labels_key.as_deref(), a.label_names.as_deref())?;
    classes::check_label_count(
        whole.rows(),
        whole.name(),
        &labels,
        &a.labels.display().to_string(),
    )?;
    let src = a.input.select(whole)?;
    let labels = a.input.pick_labels(labels);
    // A selection of rows may leave classes without rows; without a classifier (whose rows follow the
    // classes) they are dropped and named.
    let (labels, dropped) = if a.classifier.is_none() {
        labels.without_empty()
    } else {
        (labels, Vec::new())
    };
    let classifier = match &a.classifier {
        Some(p) => {
            let w = repscope::data::load_matrix(p, a.classifier_key.as_deref())?;
            repscope::data::check_finite(&w)?;
            let b = match &a.bias {
                Some(bp) => Some(classes::load_vector(bp)?),
                None => None,
            };
            Some(Classifier::new(
                &w,
                b.as_deref(),
                labels.n_classes(),
                src.cols(),
            )?)
        }
        None => None,
    };
    let input = a.input.describe(&*src);
    let bars = Bars::new(g.quiet);
    let stream = a.stream || src.rows().saturating_mul(src.cols()) > super::LOAD_LIMIT;
    let (mut r, cfg) = if stream {
        classes::run_source(
            &*src,
            &labels,
            classifier.as_ref(),
            a.k,
            a.knn_sample,
            a.input.seed,
            &bars,
        )?
    } else {
        let m = a.input.load(&*src)?;
        classes::run(&m, &labels, classifier.as_ref(), a.k, &bars)?
    };
    if !dropped.is_empty() {
        r.notes.push(format!(
            "{} classes have no rows among the selected rows and were left out: {}",
            dropped.len(),
            dropped.join(", ")
        ));
    }
    if g.json {
        print_json(&repscope::documents::classes(
            &r,
            input,
            json!(a.labels.display().to_string()),
            &cfg,
            a.classifier.as_ref().map(|p| p.display().to_string()),
        ))
    } else {
        print!("{}", render(&r, &a.input.paths().join(" ")));
        Ok(())
    }
}

pub fn render(r: &ClassReport, name: &str) -> String {
    let mut out = format!(
        "{name}: n = {}, d = {}, {} classes\n\n",
        r.n, r.d, r.n_classes
    );
    let nc = &r.neural_collapse;
    let mut t = Table::new(&["measure", "value", "meaning"]);
    t.row(vec![
        "NC1".into(),
        num(nc.nc1),
        format!(
            "tr(Sw Sb+)/C, within- vs between-class spread (pinv rank {})",
            nc.nc1_pinv_rank
        ),
    ]);
    t.row(vec![
        "NC2 equinorm".into(),
        num(nc.nc2_equinorm),
        "std/mean of centred class-mean norms".into(),
    ]);
    t.row(vec![
        "NC2 equiangularity".into(),
        num(nc.nc2_equiangularity),
        "std of cosines between class means".into(),
    ]);
    t.row(vec![
        "NC2 max-angle".into(),
        num(nc.nc2_max_angle),
        "mean |cos + 1/(C-1)| (0 for a simplex ETF)".into(),
    ]);
    if let Some(v) = r.nc3 {
        t.row(vec![
            "NC3".into(),
            num(v),
            "||W/||W|| - M/||M||||^2 (self-duality)".into(),
        ]);
    }
    if let Some(v) = r.nc4 {
        t.row(vec![
            "NC4".into(),
            num(v),
            "classifier vs nearest class mean disagreement".into(),
        ]);
    }
    t.row(vec![
        "CDNV".into(),
        num(r.cdnv),
        "class-distance normalised variance, mean over pairs".into(),
    ]);
    t.row(vec![
        "NCC accuracy".into(),
        num(r.ncc_accuracy),
        "nearest class centre".into(),
    ]);
    if let Some(k) = &r.knn_accuracy {
        t.row(vec![
            format!("kNN accuracy (k={})", k.k),
            num(k.accuracy),
            match k.sample_seed {
                None => format!(
                    "leave-one-out vote, ties to the nearest ({} tied votes)",
                    k.n_points_with_tied_vote
                ),
                Some(seed) => format!(
                    "leave-one-out vote over a sample of {} rows (seed {seed}), ties to the nearest",
                    k.rows
                ),
            },
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nclass counts\n");
    let mut t = Table::new(&["class", "rows"]);
    for (name, c) in r.class_names.iter().zip(&r.class_counts) {
        t.row(vec![name.clone(), c.to_string()]);
    }
    out.push_str(&t.render());
    if !r.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &r.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}
