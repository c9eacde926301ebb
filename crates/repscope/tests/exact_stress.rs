//! Exact means exact on data that defeats the f32 expansion ‖x‖² + ‖y‖² − 2x·y: tight clusters far from
//! the origin, norms spanning six orders of magnitude, and real token states (MiniLM after block 3, with
//! the nearly identical [CLS] states). Every graph is compared with a float64 brute force written here,
//! independently of the engine, for k = 1, 10 and 50, both metrics, one and two threads, through the
//! symmetric self search and the one-sided search; and the estimates read from the graph equal the ones
//! read from the brute-force graph.
use proptest::prelude::*;
use repscope::intrinsic::lid::Lid;
use repscope::intrinsic::mle::Mle;
use repscope::intrinsic::twonn::TwoNN;
use repscope::neighbors::{exact_knn, knn_search, KnnGraph, Metric};
use repscope::rng::Rng;
use repscope::Matrix;

/// Brute force in f64: euclidean √Σ(x − y)², cosine ½‖x/‖x‖ − y/‖y‖‖² (= 1 − cos without cancellation);
/// ascending, ties to the smaller index. Returns (index, distance) lists of length `k`.
fn brute(m: &Matrix, k: usize, metric: Metric) -> Vec<Vec<(u32, f64)>> {
    let n = m.rows();
    let inv: Vec<f64> = (0..n)
        .map(|i| {
            1.0 / m
                .row(i)
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut all: Vec<(u32, f64)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (a, b) = (m.row(i), m.row(j));
                    let d = match metric {
                        Metric::Euclidean => a
                            .iter()
                            .zip(b)
                            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
                            .sum::<f64>()
                            .sqrt(),
                        Metric::Cosine => {
                            0.5 * a
                                .iter()
                                .zip(b)
                                .map(|(&x, &y)| (x as f64 * inv[i] - y as f64 * inv[j]).powi(2))
                                .sum::<f64>()
                        }
                    };
                    (j as u32, d)
                })
                .collect();
            all.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
            all.truncate(k);
            all
        })
        .collect()
}

/// The graph equals the brute force on every row: the same neighbours in the same order, distances to
/// 1e-12 relative; where two distances agree to that precision (the two sums round differently), either
/// order is accepted. Returns the number of rows checked.
fn assert_same(g: &KnnGraph, truth: &[Vec<(u32, f64)>], what: &str) {
    assert_eq!(g.n, truth.len(), "{what}: rows");
    for (i, t) in truth.iter().enumerate() {
        let t = &t[..g.k];
        let (gi, gd) = (g.neighbors(i), g.dists(i));
        for (s, &(j, d)) in t.iter().enumerate() {
            let tol = 1e-12 * d.abs().max(1e-300);
            assert!(
                (gd[s] - d).abs() <= tol,
                "{what}: row {i} slot {s}: distance {} against {d} (index {} against {j})",
                gd[s],
                gi[s]
            );
            if gi[s] != j {
                // Only a near-tie may swap: the other index must be in the truth at the same distance.
                let alt = t.iter().find(|x| x.0 == gi[s]);
                assert!(
                    alt.is_some_and(|x| (x.1 - d).abs() <= tol),
                    "{what}: row {i} slot {s}: index {} where brute force has {j} at {d}",
                    gi[s]
                );
            }
        }
    }
}

fn direction(r: &mut Rng, d: usize) -> Vec<f64> {
    let v: Vec<f64> = (0..d).map(|_| r.normal()).collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// 5% of the rows in clusters of radius 1e-4 to 1e-2 at norms 10 to 1000, the rest spread out at norms
/// 10 to 1000.
fn clustered(n: usize, d: usize, seed: u64) -> Matrix {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(n * d);
    let clustered = n / 20;
    let size = 10;
    let mut i = 0;
    while i < clustered {
        let centre_norm = 10f64.powf(r.uniform_range(1.0, 3.0));
        let radius = 10f64.powf(r.uniform_range(-4.0, -2.0));
        let c: Vec<f64> = direction(&mut r, d)
            .into_iter()
            .map(|x| x * centre_norm)
            .collect();
        for _ in 0..size.min(clustered - i) {
            let off = direction(&mut r, d);
            let s = radius * r.uniform();
            v.extend(c.iter().zip(&off).map(|(a, b)| (a + s * b) as f32));
            i += 1;
        }
    }
    while i < n {
        let norm = 10f64.powf(r.uniform_range(1.0, 3.0));
        v.extend(direction(&mut r, d).into_iter().map(|x| (x * norm) as f32));
        i += 1;
    }
    // Interleave the clusters with the rest, so they straddle the blocks.
    let mut order: Vec<usize> = (0..n).collect();
    r.shuffle(&mut order);
    let mut w = vec![0f32; n * d];
    for (dst, &src) in order.iter().enumerate() {
        w[dst * d..(dst + 1) * d].copy_from_slice(&v[src * d..(src + 1) * d]);
    }
    Matrix::from_vec(n, d, w, "clustered").unwrap()
}

/// Norms log-uniform over six orders of magnitude (1e-3 to 1e3); one row in five is in a group of 40
/// around a centre (more than the candidate margin), at a relative radius of 1e-6 to 1e-4, at every scale.
fn six_orders(n: usize, d: usize, seed: u64) -> Matrix {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(n * d);
    let mut i = 0;
    while i < n {
        let norm = 10f64.powf(r.uniform_range(-3.0, 3.0));
        let centre: Vec<f64> = direction(&mut r, d).into_iter().map(|x| x * norm).collect();
        if i % 200 == 0 {
            let radius = norm * 10f64.powf(r.uniform_range(-6.0, -4.0));
            for _ in 0..40.min(n - i) {
                let off = direction(&mut r, d);
                let s = radius * r.uniform();
                v.extend(centre.iter().zip(&off).map(|(a, b)| (a + s * b) as f32));
                i += 1;
            }
        } else {
            v.extend(centre.iter().map(|&x| x as f32));
            i += 1;
        }
    }
    Matrix::from_vec(n, d, v, "six-orders").unwrap()
}

fn tokens() -> Matrix {
    let p = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/tokens/minilm_tokens_l3_sample.npy"
    ));
    repscope::data::load_matrix(&p, None).expect("token fixture")
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Every k, metric and thread count, self search and one-sided search, against one brute force.
fn check_set(m: &Matrix, name: &str) -> Vec<KnnGraph> {
    let mut graphs = Vec::new();
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let truth = brute(m, 50, metric);
        for threads in [1, 2] {
            for k in [1, 10, 50] {
                let what = format!("{name} {metric:?} k {k} threads {threads}");
                let g = pool(threads).install(|| exact_knn(m, k, metric, None).unwrap());
                assert_same(&g, &truth, &what);
                assert!(g.certificate.exact);
                assert_eq!(g.certificate.certified + g.certificate.recomputed, m.rows());
                let one =
                    pool(threads).install(|| knn_search(m, m, k, metric, true, None).unwrap());
                assert_same(&one, &truth, &format!("{what} one-sided"));
                if k == 10 {
                    graphs.push(g);
                }
            }
        }
    }
    graphs
}

#[test]
fn clustered_far_from_the_origin() {
    let m = clustered(2600, 48, 7);
    let gs = check_set(&m, "clustered");
    // The clusters cannot be ranked by the f32 expansion: the certificate must have sent rows to the
    // range pass (a test that can fail if the certificate certifies everything blindly).
    assert!(gs[0].certificate.recomputed > 0, "{:?}", gs[0].certificate);
}

#[test]
fn norms_spanning_six_orders_of_magnitude() {
    let m = six_orders(2200, 24, 11);
    let gs = check_set(&m, "six orders");
    assert!(gs[0].certificate.recomputed > 0, "{:?}", gs[0].certificate);
}

#[test]
fn real_token_states() {
    let m = tokens();
    assert_eq!((m.rows(), m.cols()), (1500, 384));
    let gs = check_set(&m, "tokens");
    let c = gs[0].certificate;
    assert!(c.recomputed > 0 && c.certified > c.recomputed, "{c:?}");
}

/// TwoNN, MLE and per-point LID read from the engine's graph equal the values from the brute-force graph.
#[test]
fn estimates_follow_the_exact_graph() {
    for (m, name) in [
        (clustered(2600, 48, 3), "clustered"),
        (six_orders(2200, 24, 5), "six orders"),
        (tokens(), "tokens"),
    ] {
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let k = 20;
            let g = exact_knn(&m, k, metric, None).unwrap();
            let t = brute(&m, k, metric);
            let b = KnnGraph {
                n: m.rows(),
                k,
                metric,
                indices: t.iter().flat_map(|r| r.iter().map(|x| x.0)).collect(),
                distances: t.iter().flat_map(|r| r.iter().map(|x| x.1)).collect(),
                certificate: Default::default(),
            };
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-300);
            let (x, y) = (
                TwoNN::default().fit(&g).unwrap().value,
                TwoNN::default().fit(&b).unwrap().value,
            );
            assert!(close(x, y), "{name} {metric:?} TwoNN {x} vs {y}");
            let (x, y) = (
                Mle::default().fit(&g).unwrap().value,
                Mle::default().fit(&b).unwrap().value,
            );
            assert!(close(x, y), "{name} {metric:?} MLE {x} vs {y}");
            let lid = Lid { k };
            let (x, y) = (lid.per_point(&g).unwrap(), lid.per_point(&b).unwrap());
            for (i, (a, c)) in x.iter().zip(&y).enumerate() {
                match (a, c) {
                    (Some(a), Some(c)) => assert!(close(*a, *c), "{name} LID row {i}: {a} vs {c}"),
                    (None, None) => {}
                    _ => panic!("{name} LID row {i}: {a:?} vs {c:?}"),
                }
            }
        }
    }
}

/// Generated hard data: a few tight clusters at a random norm and radius among random rows, exact for any
/// k and either metric.
fn hard_case() -> impl Strategy<Value = (Matrix, usize, bool)> {
    (
        60usize..400,
        2usize..40,
        0.0f64..3.0,
        -6.0f64..-1.0,
        1usize..12,
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(n, d, lognorm, logr, k, seed, cosine)| {
            let mut r = Rng::new(seed);
            let mut v = Vec::with_capacity(n * d);
            let centre: Vec<f64> = direction(&mut r, d)
                .into_iter()
                .map(|x| x * 10f64.powf(lognorm + 1.0))
                .collect();
            for i in 0..n {
                if i % 3 == 0 {
                    let off = direction(&mut r, d);
                    let s = 10f64.powf(logr) * r.uniform();
                    v.extend(centre.iter().zip(&off).map(|(a, b)| (a + s * b) as f32));
                } else {
                    let norm = 10f64.powf(r.uniform_range(-1.0, lognorm + 1.5));
                    v.extend(direction(&mut r, d).into_iter().map(|x| (x * norm) as f32));
                }
            }
            let m = Matrix::from_vec(n, d, v, "generated").unwrap();
            (m, k, cosine)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn generated_clusters_are_exact((m, k, cosine) in hard_case()) {
        let metric = if cosine { Metric::Cosine } else { Metric::Euclidean };
        let truth = brute(&m, k, metric);
        let g = exact_knn(&m, k, metric, None).unwrap();
        assert_same(&g, &truth, "generated, self search");
        let one = knn_search(&m, &m, k, metric, true, None).unwrap();
        assert_same(&one, &truth, "generated, one-sided");
    }
}

/// Data scaled by about 1e30 or 1e-30 (finite f32, but squares overflow or underflow the f32 products):
/// the same neighbours as the unscaled data and the same dimension estimates. The scales are powers of two,
/// so the scaled values are exact and the geometry is the same.
#[test]
fn extreme_magnitudes_give_the_same_graph_and_estimates() {
    let base = clustered(1200, 16, 21);
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let g0 = exact_knn(&base, 10, metric, None).unwrap();
        let t0 = TwoNN::default().fit(&g0).unwrap().value;
        for s in [
            2f64.powi(100),
            2f64.powi(66),
            2f64.powi(-66),
            2f64.powi(-100),
        ] {
            let v: Vec<f32> = base
                .as_slice()
                .iter()
                .map(|&x| (x as f64 * s) as f32)
                .collect();
            let m = Matrix::from_vec(base.rows(), base.cols(), v, "scaled").unwrap();
            let g = exact_knn(&m, 10, metric, None).unwrap();
            assert_same(&g, &brute(&m, 10, metric), &format!("{metric:?} × {s:e}"));
            let t = TwoNN::default().fit(&g).unwrap().value;
            assert!(
                (t - t0).abs() <= 1e-12 * t0,
                "{metric:?} × {s:e}: TwoNN {t} vs {t0}"
            );
            assert_eq!(g.indices, g0.indices, "{metric:?} × {s:e}");
            let one = knn_search(&m, &m, 10, metric, true, None).unwrap();
            assert_eq!(one.indices, g.indices, "{metric:?} × {s:e}: one-sided");
        }
    }
}
