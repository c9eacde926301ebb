//! `repscope analyze-model`: embed texts with every layer's masked-mean state, then run the layer study
//! (intrinsic dimension and spectrum per layer, CKA and mutual kNN between layers) in one go.
use std::path::PathBuf;

use clap::Args;
use repscope::similarity::layers::{self, LayersConfig};
use repscope::Matrix;
use serde_json::json;

use super::embed::{check_output, write_output, ModelRun};
use super::print_json;
use crate::progress::Bars;
use crate::{usage, CliResult, Global};

#[derive(Args, Debug)]
pub struct AnalyzeModelArgs {
    #[command(flatten)]
    pub run: ModelRun,
    /// Also save the activations (embedding, layer0..layerL) to this .npz or .safetensors file.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Neighbours of the mutual-kNN matrix (cosine).
    #[arg(long, short = 'k', default_value_t = 10)]
    pub k: usize,
    /// Seed for every random step.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: &AnalyzeModelArgs, g: &Global) -> CliResult {
    let kind = match &a.output {
        Some(p) => Some(check_output(p, &a.run.input, true, a.force)?),
        None => None,
    };
    let done = a.run.run(g, true, None, None)?;
    let e = &done.out;
    if e.n <= a.k + 1 {
        return Err(usage(format!(
            "{}: {} texts are too few for a layer study with k = {}. Give at least {} texts (a few hundred \
             or more for stable intrinsic dimensions).",
            a.run.input.display(),
            e.n,
            a.k,
            a.k + 2
        )));
    }
    // Repeated texts give repeated rows at every layer: say so in the texts' terms, before any layer
    // fails on its duplicates with advice this command cannot follow.
    let id_k = repscope::intrinsic::suite::graph_k(&LayersConfig::default().id)?;
    let need = id_k.max(a.k) + 1;
    let distinct = done
        .texts
        .texts
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < need {
        return Err(usage(format!(
            "{}: {distinct} distinct texts among {} ({} repeats); the layer study needs at least {need} \
             distinct texts (the intrinsic-dimension suite reads {id_k} neighbours per point, the mutual \
             kNN {}). Give more distinct texts (a few hundred or more for stable intrinsic dimensions).",
            a.run.input.display(),
            e.n,
            e.n - distinct,
            a.k
        )));
    }
    let keys = match (&a.output, kind) {
        (Some(p), Some(k)) => write_output(p, k, e)?,
        _ => Vec::new(),
    };
    let mut mats = Vec::with_capacity(e.layers.len());
    for (l, m) in e.layers.iter().enumerate() {
        let name = format!("layer{l}");
        mats.push((
            name.clone(),
            Matrix::from_vec(e.n, e.hidden, m.clone(), name)?,
        ));
    }
    let mut cfg = LayersConfig {
        k: a.k,
        ..LayersConfig::default()
    };
    cfg.id.seed = a.seed;
    let bars = Bars::new(g.quiet);
    let report = layers::study(&mats, &cfg, &bars)?;
    if g.json {
        let mut v = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
        if let Some(o) = v.as_object_mut() {
            o.insert("embedding".into(), done.summary(&a.run));
            o.insert(
                "output".into(),
                json!({"path": a.output.as_ref().map(|p| p.display().to_string()), "keys": keys}),
            );
            o.insert(
                "params".into(),
                json!({"k": cfg.k, "knn_metric": "cosine", "cka": "linear, debiased (HSIC1)", "id": repscope::intrinsic::suite::params_json(&cfg.id)}),
            );
            o.insert("repscope_version".into(), json!(repscope::VERSION));
        }
        return print_json(&v);
    }
    let spec = done.model.spec();
    println!(
        "{} on {}: {} texts embedded in {:.2} s ({} truncated at {} tokens)",
        a.run.model.display(),
        a.run.input.display(),
        e.n,
        done.embed_s,
        e.truncated_count(),
        spec.max_seq_length
    );
    if let Some(p) = &a.output {
        println!("wrote {} ({})", p.display(), keys.join(", "));
    }
    println!();
    print!(
        "{}",
        super::layers::render(
            &report,
            &format!(
                "{}-pooled hidden states (layer0 = embedding output)",
                e.layer_pooling.name()
            )
        )
    );
    Ok(())
}
