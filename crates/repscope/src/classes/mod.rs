//! Class geometry: neural collapse (NC1–NC4), CDNV, nearest-class-centre and leave-one-out kNN accuracy.
//! Definitions follow METRICS.md ("Class geometry"). Two streaming f64 passes over a row source (class
//! means, then within-class scatter and per-class spreads); nothing n × n is ever formed, and the source
//! may be larger than memory.
mod passes;

use crate::error::Param;
use faer::Mat;
use serde::Serialize;

pub use passes::{class_sums, scatter_sums, ClassSums, RowClasses, ScatterPass, ScatterSums};

use crate::data::source::{self, RowSource};
use crate::data::{Labels, Matrix};
use crate::error::{Error, Result};
use crate::linalg;
use crate::neighbors::{exact_knn, KnnGraph, Metric};
use crate::partial::{self, Found, Local, Pass, Passes};
use crate::progress::Progress;

/// Rows per task of the row-wise work of a chunk; partial sums are added in block order.
const BLOCK_ROWS: usize = 64;

/// A linear classifier: logits = W·x + b, one row of W per class (in label order).
#[derive(Clone, Debug, PartialEq)]
pub struct Classifier {
    /// C × d, row-major.
    pub w: Vec<f64>,
    pub rows: usize,
    pub cols: usize,
    /// C biases (zeros when not given).
    pub b: Vec<f64>,
}

impl Classifier {
    /// Checks the shapes against C classes and d features; `w_name` / `b_name` name the inputs in errors.
    pub fn new(w: &Matrix, b: Option<&[f64]>, c: usize, d: usize) -> Result<Classifier> {
        if w.rows() != c || w.cols() != d {
            let hint = if w.rows() == d && w.cols() == c {
                "it looks transposed: save W with one row per class (W.T)".to_string()
            } else {
                format!("pass a {c} × {d} matrix (one row per class, in label order)")
            };
            return Err(Error::data(
                w.name(),
                format!(
                    "the classifier is {} × {}, but the data has {c} classes and {d} features",
                    w.rows(),
                    w.cols()
                ),
                hint,
            ));
        }
        let bias = match b {
            Some(b) => {
                if b.len() != c {
                    return Err(Error::data(
                        "bias",
                        format!("the bias has {} values but there are {c} classes", b.len()),
                        format!("pass one bias per class ({c} values, in label order)"),
                    ));
                }
                b.to_vec()
            }
            None => vec![0.0; c],
        };
        Ok(Classifier {
            w: w.as_slice().iter().map(|&v| v as f64).collect(),
            rows: c,
            cols: d,
            b: bias,
        })
    }
}

/// Settings of the class-geometry report.
#[derive(Clone, Debug)]
pub struct ClassConfig {
    /// Neighbours of the leave-one-out kNN vote.
    pub k: usize,
    /// Relative eigenvalue cutoff of the Σ_B pseudo-inverse.
    pub pinv_rtol: f64,
}

impl Default for ClassConfig {
    fn default() -> Self {
        ClassConfig {
            k: 10,
            pinv_rtol: 1e-10,
        }
    }
}

/// NC1 and NC2 for one choice of global mean.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Collapse {
    /// "unweighted mean of class means" or "count-weighted mean".
    pub global_mean: String,
    /// tr(Σ_W Σ_B⁺)/C.
    pub nc1: f64,
    /// Eigenvalues of Σ_B kept by the pseudo-inverse.
    pub nc1_pinv_rank: usize,
    /// Σ_B's eigenvalues around the cut: the last two kept and the first two dropped.
    pub sigma_b_eigs_around_cut: Vec<f64>,
    /// std_c ‖μ̇_c‖ / mean_c ‖μ̇_c‖ (ddof 0).
    pub nc2_equinorm: f64,
    pub nc2_equinorm_ddof1: f64,
    /// std over ordered pairs c ≠ c' of cos(μ̇_c, μ̇_c') (ddof 0).
    pub nc2_equiangularity: f64,
    pub nc2_equiangularity_ddof1: f64,
    /// ddof 1 over unordered pairs c < c' (each cosine once).
    pub nc2_equiangularity_ddof1_unordered: f64,
    /// mean over c ≠ c' of |cos + 1/(C−1)|.
    pub nc2_max_angle: f64,
}

/// Leave-one-out kNN accuracy.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct KnnAccuracy {
    pub k: usize,
    pub metric: Metric,
    /// Ties in the vote go to the tied label of the nearest neighbour.
    pub accuracy: f64,
    /// Ties go to the smallest label (sklearn's mode).
    pub accuracy_smallest_label_ties: f64,
    pub n_points_with_tied_vote: usize,
    /// Rows that voted: every row, or a seeded sample of a streamed source (neighbours found within it).
    pub rows: usize,
    /// The seed of that sample; None when every row voted.
    pub sample_seed: Option<u64>,
    /// The accuracy over each class's voting rows, in label order (None for a class with no voting row).
    pub per_class: Vec<Option<f64>>,
}

/// One class's own numbers.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ClassStats {
    pub name: String,
    pub rows: usize,
    /// σ_c²: the mean squared distance of the class's rows to its mean (the spread CDNV uses).
    pub within_variance: f64,
    /// The share of the class's rows whose nearest class mean is their own.
    pub ncc_accuracy: f64,
    /// The class's leave-one-out kNN accuracy (ties to the nearest neighbour's label); None without a
    /// neighbour graph or without a voting row of the class.
    pub knn_accuracy: Option<f64>,
}

/// The CDNV of every pair of the classes shown, ordered by a hierarchical clustering, so that classes that
/// overlap sit next to each other.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ClassPairs {
    /// Label indices of the classes shown, in the clustering's leaf order: every class, or the
    /// [`PAIRS_SHOWN`] largest when there are more than [`PAIRS_ALL_UP_TO`].
    pub classes: Vec<usize>,
    /// cdnv[i][j] = (σ_a² + σ_b²)/(2‖μ_a − μ_b‖²) for a = classes[i], b = classes[j]; None on the diagonal
    /// and where two class means coincide.
    pub cdnv: Vec<Vec<Option<f64>>>,
    /// How the order was found.
    pub linkage: String,
    /// Why only some classes are shown, when so.
    pub note: Option<String>,
}

/// With at most this many classes every class pair is shown.
pub const PAIRS_ALL_UP_TO: usize = 200;
/// Above [`PAIRS_ALL_UP_TO`] classes, this many of the largest are shown.
pub const PAIRS_SHOWN: usize = 50;

/// Everything `repscope classes` reports.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ClassReport {
    pub n: usize,
    pub d: usize,
    pub n_classes: usize,
    /// Class names in label order (the order of classifier rows).
    pub class_names: Vec<String>,
    pub class_counts: Vec<usize>,
    /// With μ_G the unweighted mean of class means (the default of METRICS.md).
    pub neural_collapse: Collapse,
    /// With μ_G weighted by class counts.
    pub neural_collapse_count_weighted: Collapse,
    /// ‖W/‖W‖ − Ṁ/‖Ṁ‖‖²_F (unweighted μ_G); None without a classifier.
    pub nc3: Option<f64>,
    /// Fraction of rows where the classifier and the nearest class mean disagree.
    pub nc4: Option<f64>,
    /// Mean over class pairs of (σ_c² + σ_c'²)/(2‖μ_c − μ_c'‖²).
    pub cdnv: f64,
    /// Nearest-class-centre accuracy (means of all rows).
    pub ncc_accuracy: f64,
    pub knn_accuracy: Option<KnnAccuracy>,
    /// Each class's size, spread and accuracies, in label order.
    pub per_class: Vec<ClassStats>,
    /// Pairwise CDNV of the classes, ordered by clustering.
    pub pairs: ClassPairs,
    pub notes: Vec<String>,
}

/// Reads a 1-D float vector (a classifier bias) from a `.npy` file; shapes (C,), (1, C) and (C, 1) are
/// accepted.
pub fn load_vector(path: &std::path::Path) -> Result<Vec<f64>> {
    use crate::data::npy;
    crate::data::check_regular(path)?;
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let h = npy::parse_header(&buf, path)?;
    let name = path.display().to_string();
    let len = match h.shape.as_slice() {
        [c] => *c,
        [1, c] | [c, 1] => *c,
        _ => {
            return Err(Error::data(
                &name,
                format!("expected a vector, got shape {:?}", h.shape),
                "save the bias as a 1-D float array with one value per class",
            ))
        }
    };
    if h.kind != npy::Kind::Float {
        return Err(Error::data(
            &name,
            format!("the vector has dtype {}, not float", h.descr),
            "save it as float32 or float64",
        ));
    }
    let layout = npy::Layout {
        big_endian: h.big_endian,
        ..npy::Layout::little_c(h.size, 1, len, &h.descr)
    };
    let m = npy::convert_float_data(&buf[h.data_offset..], layout, &name)?;
    Ok(m.as_slice().iter().map(|&v| v as f64).collect())
}

/// Checks labels against the data: same length, at least two classes.
pub fn check_labels(m: &Matrix, labels: &Labels, labels_name: &str) -> Result<()> {
    check_label_count(m.rows(), m.name(), labels, labels_name)
}

/// Checks there is one label per row of the input `name` (its `n` rows).
pub fn check_label_rows(n: usize, name: &str, labels: &Labels, labels_name: &str) -> Result<()> {
    if labels.ids.len() != n {
        return Err(Error::data(
            labels_name,
            format!("{} labels for {n} rows of {name}", labels.ids.len()),
            "pass exactly one label per row, in the same order",
        ));
    }
    Ok(())
}

/// Checks labels against `n` rows of the input `name`: one label per row, at least two classes.
pub fn check_label_count(n: usize, name: &str, labels: &Labels, labels_name: &str) -> Result<()> {
    check_label_rows(n, name, labels, labels_name)?;
    if labels.n_classes() < 2 {
        return Err(Error::data(
            labels_name,
            format!(
                "all rows have the same label ({}), so there is no class geometry",
                labels.names.first().map(String::as_str).unwrap_or("none")
            ),
            "pass labels with at least two classes",
        ));
    }
    Ok(())
}

/// Computes the class-geometry report. `graph` must be a kNN graph over the rows of `m` (not the
/// deduplicated rows) with at least `cfg.k` neighbours; without it the kNN accuracy is skipped.
pub fn analyse(
    m: &Matrix,
    labels: &Labels,
    classifier: Option<&Classifier>,
    graph: Option<&KnnGraph>,
    cfg: &ClassConfig,
) -> Result<ClassReport> {
    check_labels(m, labels, "labels")?;
    analyse_source(m, labels, classifier, graph, cfg, &crate::progress::Silent)
}

/// The class-geometry report of a row source of any size, with one label per row held beside it
/// (4 bytes a row): [`analyse_passes`] in this process.
pub fn analyse_source(
    src: &dyn RowSource,
    labels: &Labels,
    classifier: Option<&Classifier>,
    graph: Option<&KnnGraph>,
    cfg: &ClassConfig,
    progress: &dyn Progress,
) -> Result<ClassReport> {
    analyse_passes(&Local(src), labels, classifier, graph, cfg, progress)
}

/// The class-geometry report of rows read through passes (in this process or on a cluster): two
/// streaming f64 passes, the class means and then the within-class scatter, the per-class spreads and the
/// nearest-class-centre and classifier votes ([`passes`]). Memory is O(d² + C·d) plus two chunks of rows.
/// Row-wise work runs in fixed blocks whose partial sums are added in order, so the values do not depend
/// on the number of threads or the chunk size; shards change only the last digits of the sums.
#[allow(clippy::needless_range_loop)]
pub fn analyse_passes(
    p: &dyn Passes,
    labels: &Labels,
    classifier: Option<&Classifier>,
    graph: Option<&KnnGraph>,
    cfg: &ClassConfig,
    progress: &dyn Progress,
) -> Result<ClassReport> {
    let (n, d) = (p.rows(), p.cols());
    check_label_count(n, p.name(), labels, "labels")?;
    let c = labels.n_classes();
    let ids = &labels.ids;
    // Pass 1: class sums and counts. The pass holds the one copy of the labels, handed on to pass 2.
    let means_pass = Pass::ClassMeans(RowClasses {
        c,
        offset: 0,
        ids: ids.clone(),
    });
    let Found::ClassSums(s) = p.run(&means_pass, progress)?.covering(n)?.value else {
        return Err(partial::corrupt(
            "a class-means pass returned another result",
        ));
    };
    let Pass::ClassMeans(classes) = means_pass else {
        unreachable!("built above")
    };
    let counts: Vec<usize> = s.counts.iter().map(|&k| k as usize).collect();
    if let Some(empty) = counts.iter().position(|&k| k == 0) {
        return Err(Error::data(
            "labels",
            format!("class '{}' has no rows", labels.names[empty]),
            "pass labels whose classes all occur",
        ));
    }
    let mut means = s.sums;
    for k in 0..c {
        let inv = 1.0 / counts[k] as f64;
        means[k * d..(k + 1) * d].iter_mut().for_each(|v| *v *= inv);
    }
    // Pass 2: within-class scatter, per-class squared spread, NCC and classifier predictions.
    let pass = ScatterPass {
        classes,
        means: means.clone(),
        classifier: classifier.cloned(),
    };
    let Found::ClassScatter(t) = p
        .run(&Pass::ClassScatter(Box::new(pass)), progress)?
        .covering(n)?
        .value
    else {
        return Err(partial::corrupt("a scatter pass returned another result"));
    };
    let ScatterSums {
        mut sw,
        spread,
        ncc_right,
        nc4_diff,
        ..
    } = *t;
    linalg::symmetrize_lower(&mut sw);
    let nf = n as f64;
    for j in 0..d {
        for i in 0..d {
            sw[(i, j)] /= nf;
        }
    }
    let sigma2: Vec<f64> = (0..c).map(|k| spread[k] / counts[k] as f64).collect();
    let mut notes = Vec::new();
    let singletons = counts.iter().filter(|&&k| k == 1).count();
    if singletons == c {
        return Err(Error::data(
            "labels",
            format!("every one of the {c} classes has a single row, so every within-class spread is 0 by construction and the collapse measures would report perfect collapse"),
            "pass labels with several rows per class",
        ));
    }
    if singletons > 0 {
        notes.push(format!(
            "{singletons} of {c} classes have a single row: their within-class spread is 0 by construction"
        ));
    }

    // Global means.
    let unweighted: Vec<f64> = (0..d)
        .map(|j| (0..c).map(|k| means[k * d + j]).sum::<f64>() / c as f64)
        .collect();
    let weighted: Vec<f64> = (0..d)
        .map(|j| {
            (0..c)
                .map(|k| means[k * d + j] * counts[k] as f64)
                .sum::<f64>()
                / nf
        })
        .collect();
    let centred = |g: &[f64]| -> Vec<f64> {
        let mut v = means.clone();
        for k in 0..c {
            for j in 0..d {
                v[k * d + j] -= g[j];
            }
        }
        v
    };
    let md_u = centred(&unweighted);
    let md_w = centred(&weighted);
    let nc_u = collapse(
        &md_u,
        c,
        d,
        &sw,
        cfg.pinv_rtol,
        "unweighted mean of class means",
    )?;
    let nc_w = collapse(&md_w, c, d, &sw, cfg.pinv_rtol, "count-weighted mean")?;
    if nc_u.nc1_pinv_rank == 0 {
        notes.push("all class means coincide: Σ_B is zero and NC1 is undefined".into());
    }

    let (nc3, nc4) = match classifier {
        Some(cl) => {
            let wn = cl.w.iter().map(|v| v * v).sum::<f64>().sqrt();
            let mn = md_u.iter().map(|v| v * v).sum::<f64>().sqrt();
            let nc3: f64 =
                cl.w.iter()
                    .zip(&md_u)
                    .map(|(w, mdot)| {
                        let t = w / wn - mdot / mn;
                        t * t
                    })
                    .sum();
            (Some(nc3), Some(nc4_diff as f64 / nf))
        }
        None => (None, None),
    };

    // CDNV over class pairs.
    let mut cdnv_sum = 0.0;
    let mut pairs = 0usize;
    for a in 0..c {
        for b in a + 1..c {
            cdnv_sum += cdnv_of(&means, &sigma2, d, a, b);
            pairs += 1;
        }
    }
    let knn_accuracy = match graph {
        Some(g) => Some(knn_loo(g, ids, c, cfg.k)?),
        None => None,
    };
    let per_class: Vec<ClassStats> = (0..c)
        .map(|k| ClassStats {
            name: labels.names[k].clone(),
            rows: counts[k],
            within_variance: sigma2[k],
            ncc_accuracy: ncc_right[k] as f64 / counts[k] as f64,
            knn_accuracy: knn_accuracy.as_ref().and_then(|a| a.per_class[k]),
        })
        .collect();
    let shown = class_pairs(&means, &sigma2, &counts, d);
    Ok(ClassReport {
        n,
        d,
        n_classes: c,
        class_names: labels.names.clone(),
        class_counts: counts,
        neural_collapse: nc_u,
        neural_collapse_count_weighted: nc_w,
        nc3,
        nc4,
        cdnv: cdnv_sum / pairs as f64,
        ncc_accuracy: ncc_right.iter().sum::<u64>() as f64 / nf,
        knn_accuracy,
        per_class,
        pairs: shown,
        notes,
    })
}

/// NC1 and NC2 from the centred class means Ṁ (C × d, row-major) and Σ_W.
fn collapse(
    md: &[f64],
    c: usize,
    d: usize,
    sw: &Mat<f64>,
    rtol: f64,
    label: &str,
) -> Result<Collapse> {
    let cf = c as f64;
    let mdm = linalg::row_major(md, c, d);
    // Σ_B = ṀᵀṀ/C shares its non-zero eigenvalues with the C × C matrix ṀṀᵀ/C; use the smaller one.
    let (nc1, rank, around) = if c <= d {
        let mut g = Mat::<f64>::zeros(c, c);
        linalg::gemm(g.as_mut(), false, mdm, mdm.transpose(), 1.0 / cf, false);
        let (vals, vecs) = linalg::sym_eigen_desc(g.as_ref())?;
        // A = Ṁ Σ_W Ṁᵀ (C × C).
        let mut t = Mat::<f64>::zeros(c, d);
        linalg::gemm(t.as_mut(), false, mdm, sw.as_ref(), 1.0, false);
        let mut a = Mat::<f64>::zeros(c, c);
        linalg::gemm(a.as_mut(), false, t.as_ref(), mdm.transpose(), 1.0, false);
        let cut = rtol * vals[0];
        let mut tr = 0.0;
        let mut rank = 0;
        for (k, &l) in vals.iter().enumerate() {
            if l > cut && l > 0.0 {
                rank += 1;
                // v_k = Ṁᵀu_k/√(C λ_k); v_kᵀ Σ_W v_k / λ_k = u_kᵀ A u_k / (C λ_k²).
                let mut q = 0.0;
                for i in 0..c {
                    let mut s = 0.0;
                    for j in 0..c {
                        s += a[(i, j)] * vecs[(j, k)];
                    }
                    q += vecs[(i, k)] * s;
                }
                tr += q / (cf * l * l);
            }
        }
        (tr / cf, rank, around_cut(&vals, rank))
    } else {
        let mut sb = Mat::<f64>::zeros(d, d);
        linalg::gemm(sb.as_mut(), false, mdm.transpose(), mdm, 1.0 / cf, false);
        let (vals, vecs) = linalg::sym_eigen_desc(sb.as_ref())?;
        let cut = rtol * vals[0];
        let mut tr = 0.0;
        let mut rank = 0;
        for (k, &l) in vals.iter().enumerate() {
            if l > cut && l > 0.0 {
                rank += 1;
                let mut q = 0.0;
                for i in 0..d {
                    let mut s = 0.0;
                    for j in 0..d {
                        s += sw[(i, j)] * vecs[(j, k)];
                    }
                    q += vecs[(i, k)] * s;
                }
                tr += q / l;
            }
        }
        (tr / cf, rank, around_cut(&vals, rank))
    };
    let nc1 = if rank == 0 { f64::NAN } else { nc1 };
    // NC2.
    let norms: Vec<f64> = (0..c)
        .map(|k| {
            md[k * d..(k + 1) * d]
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let (equinorm, equinorm1) = std_over_mean(&norms);
    let mut cosines = Vec::with_capacity(c * (c - 1));
    for a in 0..c {
        for b in 0..c {
            if a != b {
                let dot: f64 = (0..d).map(|j| md[a * d + j] * md[b * d + j]).sum();
                cosines.push(dot / (norms[a] * norms[b]));
            }
        }
    }
    let (sd0, sd1) = std_dev(&cosines);
    let unordered: Vec<f64> = (0..c)
        .flat_map(|a| (a + 1..c).map(move |b| (a, b)))
        .map(|(a, b)| cosines[a * (c - 1) + b - 1])
        .collect();
    let (_, sd1u) = std_dev(&unordered);
    let shift = 1.0 / (cf - 1.0);
    let max_angle = cosines.iter().map(|v| (v + shift).abs()).sum::<f64>() / cosines.len() as f64;
    Ok(Collapse {
        global_mean: label.to_string(),
        nc1,
        nc1_pinv_rank: rank,
        sigma_b_eigs_around_cut: around,
        nc2_equinorm: equinorm,
        nc2_equinorm_ddof1: equinorm1,
        nc2_equiangularity: sd0,
        nc2_equiangularity_ddof1: sd1,
        nc2_equiangularity_ddof1_unordered: sd1u,
        nc2_max_angle: max_angle,
    })
}

fn around_cut(vals: &[f64], rank: usize) -> Vec<f64> {
    let lo = rank.saturating_sub(2);
    let hi = (rank + 2).min(vals.len());
    vals[lo..hi].to_vec()
}

/// Standard deviation with ddof 0 and ddof 1.
fn std_dev(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
    ((ss / n).sqrt(), (ss / (n - 1.0)).sqrt())
}

fn std_over_mean(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let (a, b) = std_dev(v);
    (a / mean, b / mean)
}

/// Leave-one-out kNN majority vote over the first `k` neighbours of each row (self is never a neighbour).
pub fn knn_loo(g: &KnnGraph, ids: &[u32], c: usize, k: usize) -> Result<KnnAccuracy> {
    if g.n != ids.len() {
        return Err(Error::data(
            "kNN graph",
            format!(
                "the graph has {} rows but there are {} labels",
                g.n,
                ids.len()
            ),
            "build the graph on the labelled rows themselves (not deduplicated rows)",
        ));
    }
    if k == 0 || k > g.k {
        return Err(Error::param(
            Param::K,
            format!("k = {k} but the graph has {} neighbours per row", g.k),
            format!("choose 1 ≤ k ≤ {}", g.k),
        ));
    }
    let mut right = 0usize;
    let mut right_small = 0usize;
    let mut tied = 0usize;
    let mut class_rows = vec![0usize; c];
    let mut class_right = vec![0usize; c];
    // (label, votes) in order of first appearance among the neighbours (nearest first).
    let mut tally: Vec<(u32, u32)> = Vec::with_capacity(k);
    for i in 0..g.n {
        tally.clear();
        for &j in &g.neighbors(i)[..k] {
            let l = ids[j as usize];
            match tally.iter_mut().find(|t| t.0 == l) {
                Some(t) => t.1 += 1,
                None => tally.push((l, 1)),
            }
        }
        let max = tally.iter().map(|t| t.1).max().unwrap_or(0);
        let top: Vec<u32> = tally.iter().filter(|t| t.1 == max).map(|t| t.0).collect();
        if top.len() > 1 {
            tied += 1;
        }
        // Nearest among tied: the first label (by neighbour order) with the top count.
        let own = ids[i] as usize;
        if own < c {
            class_rows[own] += 1;
        }
        if top.first() == Some(&ids[i]) {
            right += 1;
            if own < c {
                class_right[own] += 1;
            }
        }
        if top.iter().min() == Some(&ids[i]) {
            right_small += 1;
        }
    }
    let nf = g.n as f64;
    Ok(KnnAccuracy {
        k,
        metric: g.metric,
        accuracy: right as f64 / nf,
        accuracy_smallest_label_ties: right_small as f64 / nf,
        n_points_with_tied_vote: tied,
        rows: g.n,
        sample_seed: None,
        per_class: class_rows
            .iter()
            .zip(&class_right)
            .map(|(&n, &r)| (n > 0).then(|| r as f64 / n as f64))
            .collect(),
    })
}

/// CDNV of classes a and b from their means (row-major, C × d) and spreads: (σ_a² + σ_b²)/(2‖μ_a − μ_b‖²),
/// infinite (or NaN) when the means coincide.
fn cdnv_of(means: &[f64], sigma2: &[f64], d: usize, a: usize, b: usize) -> f64 {
    let dist2: f64 = (0..d)
        .map(|j| {
            let t = means[a * d + j] - means[b * d + j];
            t * t
        })
        .sum();
    (sigma2[a] + sigma2[b]) / (2.0 * dist2)
}

/// The pairwise CDNV of the classes shown (every class up to [`PAIRS_ALL_UP_TO`], else the
/// [`PAIRS_SHOWN`] largest, ties to the smaller label), ordered by average-linkage clustering.
fn class_pairs(means: &[f64], sigma2: &[f64], counts: &[usize], d: usize) -> ClassPairs {
    let c = counts.len();
    let (mut shown, note): (Vec<usize>, Option<String>) = if c > PAIRS_ALL_UP_TO {
        let mut by_size: Vec<usize> = (0..c).collect();
        by_size.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
        by_size.truncate(PAIRS_SHOWN);
        by_size.sort_unstable();
        (
            by_size,
            Some(format!(
                "{c} classes are more than {PAIRS_ALL_UP_TO}: the {PAIRS_SHOWN} largest are shown"
            )),
        )
    } else {
        ((0..c).collect(), None)
    };
    let m = shown.len();
    let cd: Vec<Vec<Option<f64>>> = (0..m)
        .map(|i| {
            (0..m)
                .map(|j| {
                    // None on the diagonal and where the means coincide.
                    Some(cdnv_of(means, sigma2, d, shown[i], shown[j]))
                        .filter(|v| i != j && v.is_finite())
                })
                .collect()
        })
        .collect();
    // Dissimilarity ln(1 + 1/CDNV): 0 for coinciding means, large for well-separated pairs.
    let dis: Vec<Vec<f64>> = (0..m)
        .map(|i| {
            (0..m)
                .map(|j| match cd[i][j] {
                    _ if i == j => 0.0,
                    Some(v) if v > 0.0 => (1.0 + 1.0 / v).ln(),
                    Some(_) => 1e6,
                    None => 0.0,
                })
                .collect()
        })
        .collect();
    let order = average_linkage_order(&dis);
    let cdnv = order
        .iter()
        .map(|&i| order.iter().map(|&j| cd[i][j]).collect())
        .collect();
    shown = order.iter().map(|&i| shown[i]).collect();
    ClassPairs {
        classes: shown,
        cdnv,
        linkage: "average linkage (UPGMA) on ln(1 + 1/CDNV); leaves in merge order, the cluster holding the smaller index first".into(),
        note,
    }
}

/// The leaf order of an average-linkage (UPGMA) clustering of a symmetric dissimilarity matrix. The
/// closest pair of clusters merges first (ties to the smaller cluster ids); a merged cluster lists the
/// leaves of the cluster holding the smaller leaf index first. O(m³), for the few hundred classes shown.
pub fn average_linkage_order(dis: &[Vec<f64>]) -> Vec<usize> {
    let m = dis.len();
    // Active clusters: (leaves, smallest leaf).
    let mut clusters: Vec<Option<Vec<usize>>> = (0..m).map(|i| Some(vec![i])).collect();
    let mut dist: Vec<Vec<f64>> = dis.to_vec();
    for _ in 1..m {
        let mut best = (f64::INFINITY, usize::MAX, usize::MAX);
        for a in 0..m {
            if clusters[a].is_none() {
                continue;
            }
            for b in a + 1..m {
                if clusters[b].is_some() && dist[a][b] < best.0 {
                    best = (dist[a][b], a, b);
                }
            }
        }
        let (a, b) = (best.1, best.2);
        if a == usize::MAX {
            // Every remaining distance is NaN or infinite: merge the first two clusters left.
            let mut left = (0..m).filter(|&i| clusters[i].is_some());
            let (Some(x), Some(y)) = (left.next(), left.next()) else {
                break;
            };
            merge(&mut clusters, &mut dist, x, y);
        } else {
            merge(&mut clusters, &mut dist, a, b);
        }
    }
    clusters.into_iter().flatten().next().unwrap_or_default()
}

/// Merges cluster `b` into `a` (a < b) with average-linkage distances to the rest.
fn merge(clusters: &mut [Option<Vec<usize>>], dist: &mut [Vec<f64>], a: usize, b: usize) {
    let (la, lb) = (
        clusters[a].take().unwrap_or_default(),
        clusters[b].take().unwrap_or_default(),
    );
    let (na, nb) = (la.len() as f64, lb.len() as f64);
    for o in 0..dist.len() {
        if o == a || o == b || clusters[o].is_none() {
            continue;
        }
        let v = (na * dist[a][o] + nb * dist[b][o]) / (na + nb);
        dist[a][o] = v;
        dist[o][a] = v;
    }
    let a_first = la.iter().min() < lb.iter().min();
    let leaves = if a_first {
        [la, lb].concat()
    } else {
        [lb, la].concat()
    };
    clusters[a] = Some(leaves);
}

/// The class-geometry report with its own neighbour graph: an exact euclidean kNN graph over the rows of
/// `m` (duplicates included, as the vote counts rows) when 0 < k < n, then [`analyse`]. Checks the values are
/// finite first.
pub fn run(
    m: &Matrix,
    labels: &Labels,
    classifier: Option<&Classifier>,
    k: usize,
    progress: &dyn Progress,
) -> Result<(ClassReport, ClassConfig)> {
    crate::data::check_finite(m)?;
    check_labels(m, labels, "labels")?;
    let n = m.rows();
    let graph = if k > 0 && k < n {
        progress.stage("exact kNN", n as u64);
        let adv = |c: usize| progress.advance(c as u64);
        let g = exact_knn(m, k, Metric::Euclidean, Some(&adv))?;
        progress.finish_stage();
        Some(g)
    } else {
        None
    };
    progress.stage("class geometry", 0);
    let cfg = ClassConfig {
        k,
        ..ClassConfig::default()
    };
    let mut r = analyse(m, labels, classifier, graph.as_ref(), &cfg)?;
    progress.finish_stage();
    if k == 0 {
        r.notes
            .push("kNN accuracy not computed: k = 0 asks for no neighbours".into());
    } else if k >= n {
        r.notes.push(format!(
            "kNN accuracy not computed: a leave-one-out vote of k = {k} neighbours needs more than {k} rows, and there are {n}"
        ));
    }
    Ok((r, cfg))
}

/// The class-geometry report of a row source of any size: every class measure streams over all rows
/// ([`analyse_source`]); the leave-one-out kNN accuracy needs the rows in memory and an exact search, so
/// it votes over a seeded sample of `knn_sample` rows (every row when there are no more), with neighbours
/// found within the sample, and says so.
#[allow(clippy::too_many_arguments)]
pub fn run_source(
    src: &dyn RowSource,
    labels: &Labels,
    classifier: Option<&Classifier>,
    k: usize,
    knn_sample: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Result<(ClassReport, ClassConfig)> {
    run_passes(
        &Local(src),
        labels,
        classifier,
        k,
        knn_sample,
        seed,
        progress,
    )
}

/// [`run_source`] of rows read through passes (in this process or on a cluster); the sample for the kNN
/// vote is fetched by a rows pass.
#[allow(clippy::too_many_arguments)]
pub fn run_passes(
    src: &dyn Passes,
    labels: &Labels,
    classifier: Option<&Classifier>,
    k: usize,
    knn_sample: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Result<(ClassReport, ClassConfig)> {
    let n = src.rows();
    check_label_count(n, src.name(), labels, "labels")?;
    let cfg = ClassConfig {
        k,
        ..ClassConfig::default()
    };
    let mut r = analyse_passes(src, labels, classifier, None, &cfg, progress)?;
    let m = knn_sample.min(n);
    if k == 0 {
        r.notes
            .push("kNN accuracy not computed: k = 0 asks for no neighbours".into());
    } else if k >= m {
        r.notes.push(format!(
            "kNN accuracy not computed: a leave-one-out vote of k = {k} neighbours needs more than {k} rows, and the sample has {m}"
        ));
    } else {
        let idx = source::sample_indices(n, m, seed);
        let rows = partial::gathered(src, &idx, progress)?;
        let ids: Vec<u32> = idx.iter().map(|&i| labels.ids[i]).collect();
        progress.stage("exact kNN (sample)", m as u64);
        let adv = |c: usize| progress.advance(c as u64);
        let g = exact_knn(&rows, k, Metric::Euclidean, Some(&adv))?;
        progress.finish_stage();
        let mut acc = knn_loo(&g, &ids, labels.n_classes(), k)?;
        if m < n {
            acc.sample_seed = Some(seed);
            r.notes.push(format!(
                "kNN accuracy is a leave-one-out vote over a seeded sample of {m} of the {n} rows (seed {seed}), with neighbours found within the sample; the other measures use every row"
            ));
        }
        r.knn_accuracy = Some(acc);
    }
    Ok((r, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ids: &[u32]) -> Labels {
        Labels::from_strings(ids.iter().map(|i| i.to_string()).collect(), true)
    }

    #[test]
    fn simplex_etf_without_spread_has_zero_nc1_and_exact_nc2() {
        // C = 4 classes at the vertices of a regular simplex in R^4 (e_k − 1/C), 5 copies each.
        let c = 4usize;
        let mut data = Vec::new();
        let mut ids = Vec::new();
        for k in 0..c {
            for _ in 0..5 {
                for j in 0..c {
                    let v = if j == k { 1.0 } else { 0.0 } - 1.0 / c as f64;
                    data.push(v as f32);
                }
                ids.push(k as u32);
            }
        }
        let m = Matrix::from_vec(20, c, data, "etf").unwrap();
        let r = analyse(&m, &labels(&ids), None, None, &ClassConfig::default()).unwrap();
        assert_eq!(r.neural_collapse.nc1, 0.0);
        assert_eq!(r.neural_collapse.nc1_pinv_rank, c - 1);
        assert!(r.neural_collapse.nc2_equinorm.abs() < 1e-7);
        assert!(r.neural_collapse.nc2_equiangularity.abs() < 1e-7);
        assert!(r.neural_collapse.nc2_max_angle.abs() < 1e-7);
        assert_eq!(r.ncc_accuracy, 1.0);
        // A classifier equal to the means: NC3 = 0, NC4 = 0.
        let w = Matrix::from_vec(
            c,
            c,
            (0..c * c)
                .map(|t| if t / c == t % c { 0.75 } else { -0.25 })
                .collect(),
            "W",
        )
        .unwrap();
        let cl = Classifier::new(&w, None, c, c).unwrap();
        let r = analyse(&m, &labels(&ids), Some(&cl), None, &ClassConfig::default()).unwrap();
        assert!(r.nc3.unwrap() < 1e-12);
        assert_eq!(r.nc4, Some(0.0));
    }

    #[test]
    fn nc1_matches_direct_pinv_on_a_small_case() {
        // Two classes in 2-D: Σ_B has rank 1 along the mean difference.
        let data = vec![0.0f32, 0.0, 0.0, 2.0, 4.0, 0.0, 4.0, 2.0];
        let ids = [0u32, 0, 1, 1];
        let m = Matrix::from_vec(4, 2, data, "t").unwrap();
        let r = analyse(&m, &labels(&ids), None, None, &ClassConfig::default()).unwrap();
        // μ_0 = (0,1), μ_1 = (4,1), μ_G = (2,1), μ̇ = ∓(2,0). Σ_B = diag(4,0). Σ_W = diag(0,1).
        // tr(Σ_W Σ_B⁺) = 0 → NC1 = 0. CDNV: σ² = 1 each, ‖Δμ‖² = 16 → 2/32.
        assert!(r.neural_collapse.nc1.abs() < 1e-15);
        assert!((r.cdnv - 2.0 / 32.0).abs() < 1e-15);
        // Move spread onto the between axis: x spread 1 within classes.
        let data = vec![-1.0f32, 0.0, 1.0, 0.0, 3.0, 0.0, 5.0, 0.0];
        let m = Matrix::from_vec(4, 2, data, "t").unwrap();
        let r = analyse(&m, &labels(&ids), None, None, &ClassConfig::default()).unwrap();
        // Σ_W = diag(1, 0), Σ_B = diag(4, 0) → tr = 1/4, NC1 = 1/8.
        assert!(
            (r.neural_collapse.nc1 - 0.125).abs() < 1e-14,
            "{}",
            r.neural_collapse.nc1
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let m = Matrix::from_vec(3, 1, vec![1.0, 2.0, 3.0], "x").unwrap();
        assert!(check_labels(&m, &labels(&[0, 1]), "l").is_err());
        let e = check_labels(&m, &labels(&[2, 2, 2]), "l")
            .unwrap_err()
            .to_string();
        assert!(e.contains("same label"), "{e}");
        let w = Matrix::from_vec(1, 3, vec![1.0; 3], "W").unwrap();
        assert!(Classifier::new(&w, None, 2, 1).is_err());
    }
}
