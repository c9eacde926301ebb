//! `repscope layers`: intrinsic dimension and spectrum per layer, and layer × layer CKA / mutual kNN.
use std::path::PathBuf;

use clap::Args;
use repscope::similarity::layers::{self, LayersConfig, LayersReport};
use repscope::Matrix;
use serde_json::json;

use super::print_json;
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{usage, CliResult, Global};

#[derive(Args, Debug)]
pub struct LayersArgs {
    /// An .npz or .safetensors file with one 2-D array (n × d_l) per layer, same rows in every layer.
    pub file: PathBuf,
    /// Layers to use, in this order (comma-separated or repeated); default every 2-D array in key order.
    #[arg(long, num_args = 1..)]
    pub keys: Vec<String>,
    /// Neighbours of the mutual-kNN matrix (cosine).
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// Seed for every random step.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

type Loaded = (Vec<(String, Matrix)>, Vec<String>);

fn load(a: &LayersArgs) -> Result<Loaded, crate::Failure> {
    let mut notes = Vec::new();
    let explicit: Vec<String> = a
        .keys
        .iter()
        .flat_map(|k| k.split(','))
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    let all = repscope::data::list_keys(&a.file)?;
    if all.is_empty() && explicit.is_empty() {
        return Err(usage(format!(
            "{}: holds no named arrays. Pass an .npz or .safetensors file with one 2-D array per layer.",
            a.file.display()
        )));
    }
    let mut out = Vec::new();
    if explicit.is_empty() {
        for k in &all {
            match repscope::data::load_matrix(&a.file, Some(k)) {
                Ok(m) => out.push((k.clone(), m)),
                Err(e) => notes.push(format!("array '{k}' skipped: {e}")),
            }
        }
    } else {
        for k in &explicit {
            out.push((k.clone(), repscope::data::load_matrix(&a.file, Some(k))?));
        }
    }
    if out.len() < 2 {
        return Err(usage(format!(
            "{}: {} usable 2-D array(s); a layer study needs at least 2.{}",
            a.file.display(),
            out.len(),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            }
        )));
    }
    Ok((out, notes))
}

pub fn run(a: &LayersArgs, g: &Global) -> CliResult {
    let (mats, mut notes) = load(a)?;
    let mut cfg = LayersConfig {
        k: a.k,
        ..LayersConfig::default()
    };
    cfg.id.seed = a.seed;
    let bars = Bars::new(g.quiet);
    let mut r = layers::study(&mats, &cfg, &bars)?;
    notes.append(&mut r.notes);
    r.notes = notes;
    if g.json {
        print_json(&repscope::documents::layers(
            &r,
            json!({"path": a.file.display().to_string()}),
            &cfg,
        ))
    } else {
        print!("{}", render(&r, &a.file.display().to_string()));
        Ok(())
    }
}

fn matrix_table(keys: &[String], m: &[Vec<f64>]) -> String {
    let mut header: Vec<&str> = vec!["layer"];
    header.extend(keys.iter().map(String::as_str));
    let mut t = Table::new(&header);
    for (k, row) in keys.iter().zip(m) {
        let mut cells = vec![k.clone()];
        cells.extend(row.iter().map(|v| format!("{v:.3}")));
        t.row(cells);
    }
    t.render()
}

pub fn render(r: &LayersReport, name: &str) -> String {
    let mut out = format!("{name}: {} layers, n = {}\n\n", r.layers.len(), r.n);
    let mut t = Table::new(&[
        "layer",
        "d",
        "ID",
        "estimator",
        "eff. rank",
        "RankMe",
        "PR",
        "alpha",
        "anisotropy",
        "top rogue",
    ]);
    for l in &r.layers {
        let s = &l.spectrum;
        t.row(vec![
            l.key.clone(),
            l.d.to_string(),
            l.id.as_ref()
                .map(|d| num(d.value))
                .unwrap_or_else(|| "-".into()),
            l.id.as_ref()
                .map(|d| d.estimator.clone())
                .unwrap_or_default(),
            num(s.effective_rank),
            num(s.rankme),
            num(s.participation_ratio),
            s.alpha.map(num).unwrap_or_else(|| "-".into()),
            num(s.anisotropy),
            match (s.top_rogue_dim, s.top_rogue_share) {
                (Some(d), Some(sh)) => format!("{d} ({:.0}%)", 100.0 * sh),
                _ => "-".into(),
            },
        ]);
    }
    out.push_str(&t.render());
    out.push_str("\nlinear CKA (debiased), layer x layer\n");
    out.push_str(&matrix_table(&r.keys, &r.cka_linear_debiased));
    out.push_str(&format!(
        "\nmutual kNN (k = {}, cosine), layer x layer\n",
        r.k
    ));
    out.push_str(&matrix_table(&r.keys, &r.mutual_knn));
    let mut notes = r.notes.clone();
    for l in &r.layers {
        for n in &l.notes {
            notes.push(format!("{}: {n}", l.key));
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
