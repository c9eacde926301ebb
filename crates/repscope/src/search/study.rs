//! The search study: how well HNSW finds the exact neighbours of held-out queries, for vendor-default and
//! user parameters, under different insertion orders (Elliott & Clark 2024) and for easy to hard queries by
//! their local intrinsic dimension (Aumüller & Ceccarello), next to the data's global intrinsic dimension;
//! and, optionally, how much of the neighbour structure smaller representations keep.
use crate::error::{Param, Text};
use std::time::Instant;

use serde::Serialize;

use super::compress::{compression_curve, Advice, CompressionConfig, CompressionPoint};
use super::hnsw::{Hnsw, HnswParams};
use super::{effective_ef, per_query_recall};
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::intrinsic::calibrated::CalibratedTwoNN;
use crate::intrinsic::lid::Lid;
use crate::intrinsic::mle::Mle;
use crate::intrinsic::twonn::TwoNN;
use crate::neighbors::exact::{exact_knn, knn_search};
use crate::neighbors::{KnnGraph, Metric};
use crate::progress::Progress;
use crate::rng::Rng;

/// One HNSW parameter set.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ParamSet {
    pub name: String,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl ParamSet {
    pub fn new(name: &str, m: usize, ef_construction: usize, ef_search: usize) -> ParamSet {
        ParamSet {
            name: name.into(),
            m,
            ef_construction,
            ef_search,
        }
    }
}

/// The vendor defaults of METRICS.md: hnswlib 16/200/10, FAISS 32/40/16, usearch 16/128/64,
/// pgvector 16/64/40 (M / ef_construction / ef_search).
pub fn vendor_defaults() -> Vec<ParamSet> {
    vec![
        ParamSet::new("hnswlib", 16, 200, 10),
        ParamSet::new("faiss", 32, 40, 16),
        ParamSet::new("usearch", 16, 128, 64),
        ParamSet::new("pgvector", 16, 64, 40),
    ]
}

/// Settings of a study.
#[derive(Clone, Debug)]
pub struct StudyConfig {
    pub k: usize,
    pub metric: Metric,
    /// The user's parameter set.
    pub user: ParamSet,
    pub vendors: Vec<ParamSet>,
    /// ef_search values of the user set's recall/QPS curve (the user's ef_search is always added).
    pub ef_sweep: Vec<usize>,
    pub seed: u64,
    /// Run the insertion-order study.
    pub orders: bool,
    /// Repetitions of each order over seeds.
    pub order_repeats: usize,
    /// Neighbours for LID.
    pub lid_k: usize,
    pub compression: Option<CompressionConfig>,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            k: 10,
            metric: Metric::Euclidean,
            user: ParamSet::new("user", 16, 200, 64),
            vendors: vendor_defaults(),
            ef_sweep: vec![10, 16, 32, 64, 128, 256],
            seed: 0,
            orders: true,
            order_repeats: 3,
            lid_k: 20,
            compression: None,
        }
    }
}

/// Recall and speed of one parameter set.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SetResult {
    pub name: String,
    pub m: usize,
    pub ef_construction: usize,
    /// ef_search as used (raised to k when smaller).
    pub ef_search: usize,
    pub recall: f64,
    pub queries_per_second: f64,
    pub build_seconds: f64,
    pub index_bytes_per_vector: f64,
    pub notes: Vec<String>,
}

/// One point of a recall / QPS curve.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EfPoint {
    pub ef_search: usize,
    pub recall: f64,
    pub queries_per_second: f64,
}

/// Recall of the queries in one quartile of query LID.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Quartile {
    /// 1 = lowest LID (easiest) … 4 = highest.
    pub quartile: usize,
    pub lid_min: f64,
    pub lid_max: f64,
    pub queries: usize,
    pub recall: f64,
}

/// Recall of one insertion order over the repetitions.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct OrderResult {
    pub order: String,
    /// One value per repetition (seed = base seed + repetition).
    pub recalls: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation over repetitions (0 with one repetition).
    pub sd: f64,
    pub min: f64,
    pub max: f64,
}

/// The insertion-order study at one ef_search.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct OrderStudy {
    pub ef_search: usize,
    pub repetitions: usize,
    pub orders: Vec<OrderResult>,
    pub best: String,
    pub worst: String,
    /// Best minus worst mean recall, in percentage points.
    pub effect_pp: f64,
    /// Standard error of that difference, in percentage points.
    pub effect_se_pp: f64,
    /// Seed-to-seed standard deviation, pooled over the orders, in percentage points.
    pub seed_spread_pp: f64,
    /// Whether the effect stands out of the seed noise (≥ 1 pp and ≥ 2 standard errors).
    pub significant: bool,
    pub statement: String,
}

/// The data's intrinsic dimension, globally and around the queries.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct GlobalId {
    /// The recommended estimate (TwoNN calibrated for its finite-sample bias).
    pub estimator: String,
    pub value: f64,
    pub twonn: f64,
    pub mle: f64,
    /// Median LID of the reference rows and of the queries (k = lid_k).
    pub median_lid_refs: f64,
    pub median_lid_queries: f64,
    pub lid_k: usize,
}

/// The compression section.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CompressionReport {
    pub points: Vec<CompressionPoint>,
    pub advice: Advice,
}

/// Everything the study found.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StudyReport {
    pub n_refs: usize,
    pub n_queries: usize,
    pub d: usize,
    pub metric: Metric,
    pub k: usize,
    pub seed: u64,
    pub global_id: GlobalId,
    pub vendor_defaults: Vec<SetResult>,
    pub user: SetResult,
    pub ef_curve: Vec<EfPoint>,
    pub lid_quartiles: Vec<Quartile>,
    pub insertion_orders: Vec<OrderStudy>,
    pub compression: Option<CompressionReport>,
    pub notes: Vec<String>,
}

/// Insertion orders compared.
pub const ORDERS: &[&str] = &["random", "lid_ascending", "lid_descending", "label_grouped"];

/// The insertion order `name` of n rows for repetition seed `seed`.
pub fn insertion_order(
    name: &str,
    lid: &[Option<f64>],
    labels: Option<&[u32]>,
    seed: u64,
) -> Result<Vec<u32>> {
    let n = lid.len();
    let mut rng = Rng::stream(seed, 0x004F_5244_4552); // "ORDER"
    let mut idx: Vec<u32> = (0..n as u32).collect();
    // Undefined LID (all k distances equal) counts as the highest.
    let key = |i: u32| lid[i as usize].unwrap_or(f64::INFINITY);
    match name {
        "random" => rng.shuffle(&mut idx),
        "lid_ascending" => idx.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b))),
        "lid_descending" => idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b))),
        "label_grouped" => {
            let l = labels.ok_or_else(|| {
                Error::param(
                    Param::Order,
                    "label_grouped needs labels",
                    Text::from("pass ")
                        .param(Param::Labels)
                        .then(" with one label per row"),
                )
            })?;
            let classes = l.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
            let mut class_order: Vec<u32> = (0..classes as u32).collect();
            rng.shuffle(&mut class_order);
            let mut rank = vec![0usize; classes];
            for (r, &c) in class_order.iter().enumerate() {
                rank[c as usize] = r;
            }
            rng.shuffle(&mut idx);
            idx.sort_by_key(|&i| rank[l[i as usize] as usize]);
        }
        other => {
            return Err(Error::param(
                Param::Order,
                format!("unknown insertion order '{other}'"),
                format!("choose from {}", ORDERS.join(", ")),
            ))
        }
    }
    Ok(idx)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Searches `index` with every ef in `efs`: recall per query and queries per second.
fn evaluate(
    index: &Hnsw,
    queries: &Matrix,
    truth: &KnnGraph,
    k: usize,
    efs: &[usize],
) -> Result<Vec<(usize, Vec<f64>, f64)>> {
    efs.iter()
        .map(|&ef| {
            let t = Instant::now();
            let (found, _) = index.search_batch(queries, k, ef)?;
            let secs = t.elapsed().as_secs_f64();
            let per = per_query_recall(&found, k, truth, k);
            Ok((ef, per, queries.rows() as f64 / secs.max(1e-9)))
        })
        .collect()
}

fn build(
    refs: &Matrix,
    metric: Metric,
    m: usize,
    efc: usize,
    seed: u64,
    order: Option<&[u32]>,
) -> Result<(Hnsw, f64)> {
    let t = Instant::now();
    let h = Hnsw::build(
        refs,
        metric,
        &HnswParams {
            m,
            ef_construction: efc,
            seed,
        },
        order,
        None,
    )?;
    Ok((h, t.elapsed().as_secs_f64()))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Checks the inputs and settings before any work.
pub fn validate(
    refs: &Matrix,
    queries: &Matrix,
    labels: Option<&[u32]>,
    cfg: &StudyConfig,
) -> Result<()> {
    let n = refs.rows();
    if queries.cols() != refs.cols() {
        return Err(Error::data(
            queries.name(),
            format!(
                "queries have {} columns but the data has {}",
                queries.cols(),
                refs.cols()
            ),
            "pass queries of the same width as the data",
        ));
    }
    if queries.rows() == 0 {
        return Err(Error::data(
            queries.name(),
            "there are no queries",
            "pass at least one query row",
        ));
    }
    if cfg.k == 0 || cfg.k > n {
        return Err(Error::param(
            Param::K,
            format!("k = {} but the searched data has {n} rows", cfg.k),
            format!("choose 1 ≤ k ≤ {n}"),
        ));
    }
    if n < 3 {
        return Err(Error::data(
            refs.name(),
            format!("{n} rows to search"),
            "pass at least 3 rows",
        ));
    }
    for s in cfg.vendors.iter().chain(std::iter::once(&cfg.user)) {
        HnswParams {
            m: s.m,
            ef_construction: s.ef_construction,
            seed: cfg.seed,
        }
        .validate()?;
        if s.ef_search == 0 {
            return Err(Error::param(
                Param::EfSearch,
                format!("ef_search = 0 for the {} set", s.name),
                "choose ef_search ≥ k",
            ));
        }
    }
    if let Some(l) = labels {
        if l.len() != n {
            return Err(Error::data(
                "labels",
                format!("{} labels for {n} rows", l.len()),
                "pass one label per row of the data",
            ));
        }
    }
    if cfg.order_repeats == 0 {
        return Err(Error::param(
            Param::OrderRepeats,
            "0 repetitions",
            "choose at least 1 (3 or more give a spread)",
        ));
    }
    if let Some(c) = &cfg.compression {
        super::compress::check_dims(&c.dims, refs.cols())?;
    }
    Ok(())
}

/// The rows searched and the queries held out from them.
#[derive(Clone, Debug)]
pub struct Split {
    pub refs: Matrix,
    pub queries: Matrix,
    /// The class of every reference row, when labels were given.
    pub ref_labels: Option<Vec<u32>>,
    /// Queries held out.
    pub held_out: usize,
    /// Their share of the rows.
    pub query_fraction: f64,
}

/// Seed stream of the held-out split (apart from every other use of the seed).
const SPLIT_STREAM: u64 = 0x0051_5545_5259;

/// Holds out a seeded `fraction` of the distinct rows as queries (default: a tenth, at least 1 and at
/// most 1,000) and searches the rest. `labels` holds the class of each distinct row. Fails when too few
/// rows remain to search for `k` neighbours (an HNSW study needs at least 3).
pub fn held_out_split(
    distinct: &Matrix,
    labels: Option<&[u32]>,
    k: usize,
    fraction: Option<f64>,
    seed: u64,
) -> Result<Split> {
    let nd = distinct.rows();
    if let Some(f) = fraction.filter(|f| !(*f > 0.0 && *f < 1.0)) {
        return Err(Error::param(
            Param::QueryFraction,
            format!("{f} is outside (0, 1)"),
            "give the share of rows to hold out, for example 0.05",
        ));
    }
    let nq = match fraction {
        Some(f) => ((f * nd as f64).round() as usize).max(1),
        None => (nd / 10).clamp(1, 1000),
    };
    let need = k.max(3);
    if nd < nq + need {
        return Err(Error::data(
            distinct.name(),
            format!(
                "{nd} distinct rows leave {} to search after holding out {nq} queries, and the study needs at least {need} ({})",
                nd.saturating_sub(nq),
                if k >= 3 {
                    format!("k = {k}")
                } else {
                    "an HNSW study needs at least 3".to_string()
                }
            ),
            format!(
                "pass at least {} distinct rows, {}",
                nq + need,
                if k >= 3 {
                    "a smaller query fraction or a smaller k"
                } else {
                    "or a smaller query fraction"
                }
            ),
        ));
    }
    let held = Rng::stream(seed, SPLIT_STREAM).sample_indices(nd, nq);
    let mut is_q = vec![false; nd];
    for &i in &held {
        is_q[i] = true;
    }
    let rest: Vec<usize> = (0..nd).filter(|&i| !is_q[i]).collect();
    Ok(Split {
        refs: distinct.select_rows(&rest),
        queries: distinct.select_rows(&held),
        ref_labels: labels.map(|l| rest.iter().map(|&i| l[i]).collect()),
        held_out: nq,
        query_fraction: nq as f64 / nd as f64,
    })
}

/// Runs the study: `refs` are the rows searched (distinct), `queries` the held-out query rows, `labels` the
/// class of every reference row (enables the label-grouped order).
pub fn run(
    refs: &Matrix,
    queries: &Matrix,
    labels: Option<&[u32]>,
    cfg: &StudyConfig,
    progress: &dyn Progress,
) -> Result<StudyReport> {
    validate(refs, queries, labels, cfg)?;
    let n = refs.rows();
    let k = cfg.k;
    let metric = cfg.metric;
    let mut notes = Vec::new();
    let lid_k = cfg.lid_k.clamp(2, n - 1);
    if lid_k != cfg.lid_k {
        notes.push(format!("LID uses k = {lid_k} (the data has {n} rows)"));
    }

    // Exact answers: the queries' neighbours (for recall and query LID), the references' own graph (for
    // their LID, the LID orders and the global ID).
    progress.stage("exact kNN of the queries", queries.rows() as u64);
    let adv = |x: usize| progress.advance(x as u64);
    let qk = k.max(lid_k).min(n);
    let qgraph = knn_search(queries, refs, qk, metric, false, Some(&adv))?;
    progress.finish_stage();
    let truth = qgraph.truncated(k);
    let query_lid = Lid { k: lid_k }.per_point(&qgraph.truncated(lid_k.min(qk)))?;
    progress.stage("exact kNN of the data", n as u64);
    let rgraph = exact_knn(refs, lid_k, metric, Some(&adv))?;
    progress.finish_stage();
    let ref_lid = Lid { k: lid_k }.per_point(&rgraph)?;

    progress.stage("global intrinsic dimension", 0);
    let twonn = TwoNN::default()
        .fit(&rgraph)
        .map(|e| e.value)
        .unwrap_or(f64::NAN);
    let mle = Mle::default()
        .k(lid_k)
        .fit(&rgraph)
        .map(|e| e.value)
        .unwrap_or(f64::NAN);
    let (estimator, value) = match (CalibratedTwoNN {
        discard_fraction: 0.1,
        seed: cfg.seed,
    })
    .fit(&crate::intrinsic::suite::Distinct::Matrix(refs), &rgraph)
    {
        Ok(e) => ("twonn_calibrated".to_string(), e.value),
        Err(e) => {
            notes.push(format!("calibrated TwoNN not computed: {e}"));
            ("twonn".to_string(), twonn)
        }
    };
    progress.finish_stage();
    let flat =
        |v: &[Option<f64>]| -> Vec<f64> { v.iter().map(|x| x.unwrap_or(f64::NAN)).collect() };
    let global_id = GlobalId {
        estimator,
        value,
        twonn,
        mle,
        median_lid_refs: median(&flat(&ref_lid)),
        median_lid_queries: median(&flat(&query_lid)),
        lid_k,
    };

    // Vendor defaults, then the user's set with its ef curve and the LID quartiles.
    let total_builds = cfg.vendors.len()
        + 1
        + if cfg.orders {
            cfg.order_repeats * (3 + labels.is_some() as usize)
        } else {
            0
        };
    progress.stage("HNSW builds", total_builds as u64);
    let mut vendor_results = Vec::new();
    for s in &cfg.vendors {
        let (ef, note) = effective_ef(s.ef_search, k);
        let (h, secs) = build(refs, metric, s.m, s.ef_construction, cfg.seed, None)?;
        let r = evaluate(&h, queries, &truth, k, &[ef])?;
        vendor_results.push(SetResult {
            name: s.name.clone(),
            m: s.m,
            ef_construction: s.ef_construction,
            ef_search: ef,
            recall: mean(&r[0].1),
            queries_per_second: r[0].2,
            build_seconds: secs,
            index_bytes_per_vector: h.nbytes() as f64 / n as f64,
            notes: note.into_iter().collect(),
        });
        progress.advance(1);
    }
    let u = &cfg.user;
    let (user_ef, user_note) = effective_ef(u.ef_search, k);
    if let Some(nt) = &user_note {
        notes.push(format!("user set: {nt}"));
    }
    let (h, user_secs) = build(refs, metric, u.m, u.ef_construction, cfg.seed, None)?;
    progress.advance(1);
    let mut efs: Vec<usize> = cfg
        .ef_sweep
        .iter()
        .map(|&e| e.max(k))
        .chain(std::iter::once(user_ef))
        .collect();
    efs.sort_unstable();
    efs.dedup();
    let curve = evaluate(&h, queries, &truth, k, &efs)?;
    let ef_curve: Vec<EfPoint> = curve
        .iter()
        .map(|(ef, per, qps)| EfPoint {
            ef_search: *ef,
            recall: mean(per),
            queries_per_second: *qps,
        })
        .collect();
    let at_user = curve
        .iter()
        .find(|c| c.0 == user_ef)
        .cloned()
        .unwrap_or_else(|| curve[0].clone());
    let user = SetResult {
        name: u.name.clone(),
        m: u.m,
        ef_construction: u.ef_construction,
        ef_search: user_ef,
        recall: mean(&at_user.1),
        queries_per_second: at_user.2,
        build_seconds: user_secs,
        index_bytes_per_vector: h.nbytes() as f64 / n as f64,
        notes: user_note.into_iter().collect(),
    };
    let lid_quartiles = quartiles(&query_lid, &at_user.1);
    drop(h);

    // Insertion orders: the same level draws within a repetition, so only the order differs.
    let mut insertion_orders = Vec::new();
    if cfg.orders {
        let names: Vec<&str> = ORDERS
            .iter()
            .copied()
            .filter(|o| *o != "label_grouped" || labels.is_some())
            .collect();
        if labels.is_none() {
            notes.push("no labels given: the label-grouped insertion order is left out".into());
        }
        let mut order_efs = vec![k, user_ef];
        order_efs.sort_unstable();
        order_efs.dedup();
        // recalls[order][ef][rep]
        let mut recalls = vec![vec![Vec::new(); order_efs.len()]; names.len()];
        for rep in 0..cfg.order_repeats {
            let seed = cfg.seed.wrapping_add(rep as u64);
            for (oi, name) in names.iter().enumerate() {
                let order = insertion_order(name, &ref_lid, labels, seed)?;
                let (h, _) = build(refs, metric, u.m, u.ef_construction, seed, Some(&order))?;
                for (ei, (_, per, _)) in evaluate(&h, queries, &truth, k, &order_efs)?
                    .into_iter()
                    .enumerate()
                {
                    recalls[oi][ei].push(mean(&per));
                }
                progress.advance(1);
            }
        }
        for (ei, &ef) in order_efs.iter().enumerate() {
            let rows: Vec<OrderResult> = names
                .iter()
                .enumerate()
                .map(|(oi, name)| {
                    let v = recalls[oi][ei].clone();
                    let (m, sd) = mean_sd(&v);
                    OrderResult {
                        order: name.to_string(),
                        min: v.iter().copied().fold(f64::INFINITY, f64::min),
                        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        recalls: v,
                        mean: m,
                        sd,
                    }
                })
                .collect();
            insertion_orders.push(summarise_orders(ef, k, cfg.order_repeats, rows));
        }
    }
    progress.finish_stage();

    let compression = match &cfg.compression {
        Some(c) => {
            let (points, advice) =
                compression_curve(refs, queries, &truth, metric, k, c, progress)?;
            Some(CompressionReport { points, advice })
        }
        None => None,
    };

    Ok(StudyReport {
        n_refs: n,
        n_queries: queries.rows(),
        d: refs.cols(),
        metric,
        k,
        seed: cfg.seed,
        global_id,
        vendor_defaults: vendor_results,
        user,
        ef_curve,
        lid_quartiles,
        insertion_orders,
        compression,
        notes,
    })
}

/// Recall per quartile of query LID (queries without an LID go last).
fn quartiles(lid: &[Option<f64>], recall: &[f64]) -> Vec<Quartile> {
    let mut idx: Vec<usize> = (0..lid.len()).collect();
    let key = |i: usize| lid[i].unwrap_or(f64::INFINITY);
    idx.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
    let n = idx.len();
    (0..4)
        .filter_map(|q| {
            let (a, b) = (q * n / 4, (q + 1) * n / 4);
            if a >= b {
                return None;
            }
            let part = &idx[a..b];
            Some(Quartile {
                quartile: q + 1,
                lid_min: key(part[0]),
                lid_max: key(part[part.len() - 1]),
                queries: part.len(),
                recall: part.iter().map(|&i| recall[i]).sum::<f64>() / part.len() as f64,
            })
        })
        .collect()
}

/// Effect size, its standard error and a plain statement for one ef_search.
fn summarise_orders(ef: usize, k: usize, reps: usize, orders: Vec<OrderResult>) -> OrderStudy {
    let by_mean = |a: &&OrderResult, b: &&OrderResult| a.mean.total_cmp(&b.mean);
    let best = orders.iter().max_by(by_mean).cloned();
    let worst = orders.iter().min_by(by_mean).cloned();
    let (best, worst) = match (best, worst) {
        (Some(b), Some(w)) => (b, w),
        _ => {
            return OrderStudy {
                ef_search: ef,
                repetitions: reps,
                orders,
                best: String::new(),
                worst: String::new(),
                effect_pp: f64::NAN,
                effect_se_pp: f64::NAN,
                seed_spread_pp: f64::NAN,
                significant: false,
                statement: "no orders were compared".into(),
            }
        }
    };
    let effect_pp = 100.0 * (best.mean - worst.mean);
    let r = reps as f64;
    let effect_se_pp = 100.0 * (best.sd.powi(2) / r + worst.sd.powi(2) / r).sqrt();
    let pooled = (orders.iter().map(|o| o.sd.powi(2)).sum::<f64>() / orders.len() as f64).sqrt();
    let seed_spread_pp = 100.0 * pooled;
    let significant = reps > 1 && effect_pp >= 1.0 && effect_pp >= 2.0 * effect_se_pp;
    let separated = reps > 1 && effect_pp >= 2.0 * effect_se_pp;
    let verdict = if reps < 2 {
        "with one repetition the seed spread is unknown, so this cannot say whether the order matters; run more repetitions".to_string()
    } else if significant {
        format!(
            "the order effect reproduces here (at least 1 pp and 2 standard errors), at {effect_pp:.1} pp against the up to 12 pp of Elliott & Clark (2024)"
        )
    } else if separated {
        "the orders differ by more than the seed noise, but by less than 1 pp: the large effect of Elliott & Clark (2024), up to 12 pp, does not reproduce here".to_string()
    } else {
        "the orders do not differ beyond the seed noise: the effect of Elliott & Clark (2024), up to 12 pp, does not reproduce here".to_string()
    };
    let statement = format!(
        "At ef_search = {ef}, recall@{k} ranges from {:.4} ({}) to {:.4} ({}), an effect of {effect_pp:.2} pp ± {effect_se_pp:.2} (standard error), against a seed-to-seed spread of {seed_spread_pp:.2} pp (sd over {reps} repetitions): {verdict}.",
        worst.mean, worst.order, best.mean, best.order
    );
    OrderStudy {
        ef_search: ef,
        repetitions: reps,
        best: best.order,
        worst: worst.order,
        orders,
        effect_pp,
        effect_se_pp,
        seed_spread_pp,
        significant,
        statement,
    }
}
