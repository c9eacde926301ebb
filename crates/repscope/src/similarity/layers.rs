//! The layer study: every layer's intrinsic dimension and spectrum summary, and layer × layer matrices of
//! debiased linear CKA and mutual kNN (the "ID across depth" and "CKA heatmap" of the literature).
use serde::Serialize;

use super::cka::{self, Route};
use super::knn_alignment;
use crate::data::{check_finite, Dataset, Matrix};
use crate::error::{Error, Param, Result};
use crate::intrinsic::suite::{self, IdConfig, Recommended};
use crate::intrinsic::Estimate;
use crate::neighbors::KnnGraph;
use crate::progress::Progress;
use crate::spectrum::{self, SpectrumConfig, SpectrumSummary};

/// Settings of the layer study.
#[derive(Clone, Debug)]
pub struct LayersConfig {
    /// Neighbours of the mutual-kNN matrix.
    pub k: usize,
    /// The intrinsic-dimension suite run on every layer.
    pub id: IdConfig,
    pub spectrum: SpectrumConfig,
}

impl Default for LayersConfig {
    fn default() -> Self {
        LayersConfig {
            k: 10,
            id: IdConfig {
                scale_curve: false,
                ..IdConfig::default()
            },
            // Each layer's row carries the coding rate (the spectrum's default leaves it out).
            spectrum: SpectrumConfig {
                coding_rate: true,
                ..SpectrumConfig::default()
            },
        }
    }
}

/// One layer's row of the study.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct LayerEntry {
    pub key: String,
    pub n: usize,
    pub d: usize,
    /// The recommended intrinsic dimension of the suite.
    pub id: Option<Recommended>,
    pub id_estimates: Vec<Estimate>,
    pub spectrum: SpectrumSummary,
    pub notes: Vec<String>,
}

/// The whole study.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct LayersReport {
    pub n: usize,
    pub keys: Vec<String>,
    pub layers: Vec<LayerEntry>,
    /// Debiased linear CKA between every pair of layers (symmetric, unit diagonal).
    pub cka_linear_debiased: Vec<Vec<f64>>,
    /// Mutual kNN (cosine, k neighbours) between every pair of layers (symmetric, unit diagonal).
    pub mutual_knn: Vec<Vec<f64>>,
    pub k: usize,
    pub notes: Vec<String>,
}

/// Runs the study on layers that share their rows.
pub fn study(
    layers: &[(String, Matrix)],
    cfg: &LayersConfig,
    progress: &dyn Progress,
) -> Result<LayersReport> {
    let Some((_, first)) = layers.first() else {
        return Err(Error::data(
            "layers",
            "no 2-D arrays to compare",
            "pass an .npz or .safetensors file with one 2-D array per layer",
        ));
    };
    let n = first.rows();
    for (key, m) in layers {
        if m.rows() != n {
            return Err(Error::data(
                m.name(),
                format!(
                    "layer '{key}' has {} rows but '{}' has {n}",
                    m.rows(),
                    layers[0].0
                ),
                "every layer must hold the same inputs in the same order",
            ));
        }
        check_finite(m)?;
    }
    if n < 4 {
        return Err(Error::data(
            first.name(),
            format!("debiased CKA needs at least 4 rows, got {n}"),
            "pass more rows",
        ));
    }
    for (i, (key, _)) in layers.iter().enumerate() {
        if layers[..i].iter().any(|(k, _)| k == key) {
            return Err(Error::param(
                Param::Keys,
                format!("layer '{key}' is named twice"),
                "name each layer once",
            ));
        }
    }
    if cfg.k == 0 {
        return Err(Error::range(
            Param::K,
            0,
            format!("1 ≤ k ≤ {}", n - 1),
            "mutual kNN with k = 0 compares no neighbours",
        ));
    }
    let k = cfg.k.min(n - 1);
    let mut study_notes = Vec::new();
    if k < cfg.k {
        study_notes.push(format!(
            "mutual kNN: k = {} is more than the {} other rows, so k = {k} is used",
            cfg.k,
            n - 1
        ));
    }
    let nl = layers.len();
    let mut entries = Vec::with_capacity(nl);
    let mut graphs: Vec<KnnGraph> = Vec::with_capacity(nl);
    for (key, m) in layers {
        let ds = Dataset::new(m.clone())?;
        let idr = suite::run(&ds, &cfg.id, progress)?;
        progress.stage(&format!("spectrum {key}"), 0);
        let sp = spectrum::analyse(m, &cfg.spectrum)?;
        progress.finish_stage();
        progress.stage(&format!("cosine kNN {key}"), n as u64);
        let adv = |k: usize| progress.advance(k as u64);
        let g = crate::neighbors::symmetric::exact_knn_cosine_self(m, k, Some(&adv))?;
        progress.finish_stage();
        graphs.push(g);
        let mut notes = idr.notes.clone();
        notes.extend(
            sp.notes
                .iter()
                .filter(|s| !s.starts_with("RankMe"))
                .cloned(),
        );
        entries.push(LayerEntry {
            key: key.clone(),
            n,
            d: m.cols(),
            id: idr.dimension,
            id_estimates: idr.estimates,
            spectrum: sp.summary(),
            notes,
        });
    }
    let mut cka_m = vec![vec![1.0; nl]; nl];
    let mut knn_m = vec![vec![1.0; nl]; nl];
    progress.stage("layer pairs", (nl * (nl - 1) / 2) as u64);
    for i in 0..nl {
        for j in i + 1..nl {
            let (x, y) = (&layers[i].1, &layers[j].1);
            let r = cka::linear_cka(x, y, Route::auto(n, x.cols() + y.cols()), None)?;
            cka_m[i][j] = r.debiased;
            cka_m[j][i] = r.debiased;
            let mk = knn_alignment::mutual_knn(&graphs[i], &graphs[j], k);
            knn_m[i][j] = mk.mean_overlap;
            knn_m[j][i] = mk.mean_overlap;
            progress.advance(1);
        }
    }
    progress.finish_stage();
    Ok(LayersReport {
        n,
        keys: layers.iter().map(|l| l.0.clone()).collect(),
        layers: entries,
        cka_linear_debiased: cka_m,
        mutual_knn: knn_m,
        k,
        notes: std::iter::once(
            "the diagonals are 1 by definition (a layer compared with itself)".to_string(),
        )
        .chain(study_notes)
        .collect(),
    })
}
