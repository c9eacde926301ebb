//! HNSW against brute force, determinism across thread counts, the index file, compression and the study.
//! Ground truth is the brute-force neighbour list (`brute_force_knn`, exact f64) or a known answer.
use std::path::Path;

use repscope::neighbors::exact::{brute_force_knn, knn_search};
use repscope::progress::Silent;
use repscope::rng::Rng;
use repscope::search::compress::{compression_curve, CompressionConfig, Pca, SparseProjection};
use repscope::search::study::{self, ParamSet, StudyConfig};
use repscope::search::{approximate_knn, recall_at_k, Hnsw, HnswParams};
use repscope::{Matrix, Metric};

/// n points near a `latent`-dimensional random subspace of R^d, with a few clusters.
fn data(n: usize, d: usize, latent: usize, seed: u64) -> Matrix {
    let mut r = Rng::new(seed);
    let basis: Vec<f64> = (0..latent * d).map(|_| r.normal()).collect();
    let centres: Vec<f64> = (0..4 * latent).map(|_| 3.0 * r.normal()).collect();
    let mut v = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = &centres[(i % 4) * latent..(i % 4 + 1) * latent];
        let z: Vec<f64> = c.iter().map(|m| m + r.normal()).collect();
        for j in 0..d {
            let mut x = 0.05 * r.normal();
            for (a, zz) in z.iter().enumerate() {
                x += zz * basis[a * d + j];
            }
            v.push(x as f32);
        }
    }
    Matrix::from_vec(n, d, v, "synthetic").unwrap()
}

fn split(m: &Matrix, nq: usize) -> (Matrix, Matrix) {
    (m.slice_rows(nq, m.rows()), m.slice_rows(0, nq))
}

#[test]
fn hnsw_recall_against_brute_force() {
    let m = data(3000, 24, 8, 1);
    let (refs, queries) = split(&m, 200);
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let truth = knn_search(&queries, &refs, 10, metric, false, None).unwrap();
        let h = Hnsw::build(&refs, metric, &HnswParams::default(), None, None).unwrap();
        let (found, dist) = h.search_batch(&queries, 10, 64).unwrap();
        let rec = recall_at_k(&found, 10, &truth, 10);
        assert!(rec >= 0.97, "{metric:?}: recall {rec}");
        // Reported distances are the metric's, ascending.
        for i in 0..queries.rows() {
            let d = &dist[i * 10..(i + 1) * 10];
            assert!(d.windows(2).all(|w| w[0] <= w[1]));
            if found[i * 10] == truth.neighbors(i)[0] {
                assert!((d[0] as f64 - truth.dists(i)[0]).abs() < 1e-3 * (1.0 + truth.dists(i)[0]));
            }
        }
        // Recall grows with ef_search.
        let (low, _) = h.search_batch(&queries, 10, 10).unwrap();
        assert!(recall_at_k(&low, 10, &truth, 10) <= rec + 1e-12);
    }
}

fn build_in_pool(threads: usize, m: &Matrix, seed: u64, order: Option<&[u32]>) -> Vec<u8> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        Hnsw::build(
            m,
            Metric::Euclidean,
            &HnswParams {
                m: 8,
                ef_construction: 64,
                seed,
            },
            order,
            None,
        )
        .unwrap()
        .to_bytes()
    })
}

#[test]
fn same_seed_and_order_give_the_same_graph_on_one_or_two_threads() {
    // More rows than one insertion batch, so the parallel batches really run.
    let m = data(1500, 12, 6, 2);
    let mut order: Vec<u32> = (0..1500).collect();
    Rng::new(5).shuffle(&mut order);
    let one = build_in_pool(1, &m, 7, Some(&order));
    let two = build_in_pool(2, &m, 7, Some(&order));
    let again = build_in_pool(2, &m, 7, Some(&order));
    assert!(one == two, "1 and 2 threads built different graphs");
    assert!(two == again, "two runs on 2 threads built different graphs");
    assert!(
        build_in_pool(2, &m, 8, Some(&order)) != two,
        "another seed should change the graph"
    );
    assert!(
        build_in_pool(2, &m, 7, None) != two,
        "another order should change the graph"
    );
}

#[test]
fn save_load_query_round_trip_is_identical() {
    let m = data(1200, 16, 5, 3);
    let (refs, queries) = split(&m, 100);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("repscope-search-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let h = Hnsw::build(&refs, metric, &HnswParams::default(), None, None).unwrap();
        let p = dir.join(format!("{}.hnsw", metric.name()));
        h.save(&p).unwrap();
        let back = Hnsw::load(&p).unwrap();
        assert_eq!(back.to_bytes(), h.to_bytes());
        assert_eq!(back.metric(), metric);
        assert_eq!(back.params(), h.params());
        for ef in [10, 50] {
            assert_eq!(
                h.search_batch(&queries, 10, ef).unwrap(),
                back.search_batch(&queries, 10, ef).unwrap()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn load_err(bytes: &[u8]) -> String {
    match Hnsw::from_bytes(bytes, Path::new("idx.hnsw")) {
        Ok(_) => panic!("a damaged file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn damaged_index_files_are_clear_errors() {
    let m = data(400, 8, 3, 4);
    let good = Hnsw::build(&m, Metric::Euclidean, &HnswParams::default(), None, None)
        .unwrap()
        .to_bytes();
    // Truncated anywhere: never a panic, and past the header the message says truncated.
    for cut in [0, 5, 11, 40, 100, good.len() / 2, good.len() - 1] {
        let e = load_err(&good[..cut]);
        assert!(e.contains("idx.hnsw"), "{e}");
        if cut >= 8 {
            assert!(e.contains("truncated"), "cut {cut}: {e}");
        }
    }
    // One flipped bit in the body.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    let e = load_err(&bad);
    assert!(e.contains("checksum") && e.contains("corrupt"), "{e}");
    // Another format version.
    let mut v2 = good.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let e = load_err(&v2);
    assert!(e.contains("version 2") && e.contains("Rebuild"), "{e}");
    // Not an index at all.
    let e = load_err(b"\x93NUMPY\x01\x00 a numpy file, not an index");
    assert!(e.contains("not a repscope index"), "{e}");
    // Appended bytes.
    let mut long = good.clone();
    long.extend_from_slice(&[0; 16]);
    assert!(load_err(&long).contains("promises"));
}

#[test]
fn pca_to_full_width_keeps_every_neighbour_and_projections_reduce() {
    let m = data(1500, 16, 6, 5);
    let (refs, queries) = split(&m, 100);
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let truth = knn_search(&queries, &refs, 10, metric, false, None).unwrap();
        let cfg = CompressionConfig {
            dims: vec![],
            bits: vec![8],
            pca_sq: false,
            seed: 0,
            target_recall: 0.95,
        };
        let (pts, advice) =
            compression_curve(&refs, &queries, &truth, metric, 10, &cfg, &Silent).unwrap();
        let sq8 = pts.iter().find(|p| p.method == "sq").unwrap();
        assert!(sq8.recall >= 0.9, "{metric:?}: 8-bit recall {}", sq8.recall);
        assert_eq!(sq8.bytes_per_vector, 16);
        assert!(advice.recall >= 0.95);
    }
    // A rotation: PCA to m = d ranks every query's neighbours as the full space does.
    let truth = knn_search(&queries, &refs, 10, Metric::Euclidean, false, None).unwrap();
    let pca = Pca::fit(&refs, 16).unwrap();
    assert!((pca.explained - 1.0).abs() < 1e-9);
    let g = knn_search(
        &pca.transform(&queries).unwrap(),
        &pca.transform(&refs).unwrap(),
        10,
        Metric::Euclidean,
        false,
        None,
    )
    .unwrap();
    assert_eq!(recall_at_k(&g.indices, 10, &truth, 10), 1.0);
    // A projection must reduce.
    assert!(SparseProjection::new(16, 16, 0).is_err());
    assert!(Pca::fit(&refs, 17).is_err());
    let bad = CompressionConfig {
        dims: vec![16],
        bits: vec![],
        pca_sq: false,
        seed: 0,
        target_recall: 0.95,
    };
    let e = compression_curve(
        &refs,
        &queries,
        &truth,
        Metric::Euclidean,
        10,
        &bad,
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("m = 16") && e.contains("m < 16"), "{e}");
}

#[test]
fn approximate_graph_excludes_self_and_matches_brute_force_closely() {
    let m = data(1000, 10, 4, 6);
    let exact = brute_force_knn(&m, 5, Metric::Euclidean).unwrap();
    let (g, info) = approximate_knn(
        &m,
        5,
        Metric::Euclidean,
        &HnswParams::default(),
        3,
        200,
        &Silent,
    )
    .unwrap();
    assert_eq!(info.ef_search, 6, "ef_search is raised to k + 1");
    assert!(!info.notes.is_empty());
    for i in 0..m.rows() {
        assert!(!g.neighbors(i).contains(&(i as u32)));
        assert!(g.dists(i).windows(2).all(|w| w[0] <= w[1]));
    }
    let rec = recall_at_k(&g.indices, 5, &exact, 5);
    assert!(rec > 0.9, "{rec}");
    assert!((info.sampled_recall - rec).abs() < 0.1);
}

#[test]
fn study_reports_vendor_sets_orders_quartiles_and_checks_inputs() {
    let m = data(900, 12, 5, 7);
    let (refs, queries) = split(&m, 80);
    let labels: Vec<u32> = (0..refs.rows() as u32).map(|i| (i + 80) % 4).collect();
    let cfg = StudyConfig {
        metric: Metric::Euclidean,
        user: ParamSet::new("yours", 8, 40, 5),
        ef_sweep: vec![10, 40],
        order_repeats: 2,
        compression: Some(CompressionConfig {
            dims: vec![6, 3],
            bits: vec![8, 4],
            pca_sq: true,
            seed: 0,
            target_recall: 0.95,
        }),
        ..StudyConfig::default()
    };
    let r = study::run(&refs, &queries, Some(&labels), &cfg, &Silent).unwrap();
    assert_eq!(r.vendor_defaults.len(), 4);
    assert_eq!(r.user.ef_search, 10, "ef_search 5 < k is raised to k");
    assert!(r.notes.iter().any(|n| n.contains("raised")));
    assert_eq!(r.lid_quartiles.len(), 4);
    assert_eq!(r.lid_quartiles.iter().map(|q| q.queries).sum::<usize>(), 80);
    assert!(r.lid_quartiles[0].lid_max <= r.lid_quartiles[3].lid_min);
    assert_eq!(r.insertion_orders.len(), 1, "k = ef_search here");
    let o = &r.insertion_orders[0];
    assert_eq!(o.orders.len(), 4);
    assert!(o.orders.iter().all(|x| x.recalls.len() == 2));
    assert!(!o.statement.is_empty());
    assert!(r.global_id.value > 2.0 && r.global_id.value < 12.0);
    let c = r.compression.as_ref().unwrap();
    assert_eq!(c.points.len(), 1 + 3 * 2 + 2);
    for s in r.vendor_defaults.iter().chain([&r.user]) {
        assert!(s.recall > 0.5 && s.recall <= 1.0, "{s:?}");
    }
    // Bad input.
    let narrow = Matrix::from_vec(2, 11, vec![0.5; 22], "q.npy").unwrap();
    let e = study::run(&refs, &narrow, None, &cfg, &Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("q.npy") && e.contains("11 columns"), "{e}");
    let big_k = StudyConfig {
        k: refs.rows() + 1,
        ..cfg.clone()
    };
    let e = study::run(&refs, &queries, None, &big_k, &Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("k = 821"), "{e}");
}

/// Multiplies every value by 2^e (exact in f64, then rounded to f32 once: exact while the result is a
/// normal or subnormal f32 with the same digits).
fn times_pow2(m: &Matrix, e: i32, rows: std::ops::Range<usize>) -> Matrix {
    let s = 2f64.powi(e);
    let d = m.cols();
    let mut v = m.as_slice().to_vec();
    for i in rows {
        for x in &mut v[i * d..(i + 1) * d] {
            *x = (*x as f64 * s) as f32;
        }
    }
    Matrix::from_vec(m.rows(), d, v, "scaled").unwrap()
}

/// HNSW at extreme magnitudes: data × 2^±100 gives the very graph of the data (the index scales rows by a
/// power of two, exactly), with distances × 2^±100, through a saved index file too; a few rows at 1e30 among
/// rows of norm ~1 keep the recall of the rest; cosine survives subnormal norms.
#[test]
fn hnsw_is_scale_free_at_extreme_magnitudes() {
    let m = data(1500, 12, 5, 7);
    let (refs, queries) = split(&m, 100);
    let p = HnswParams::default();
    let base = Hnsw::build(&refs, Metric::Euclidean, &p, None, None).unwrap();
    let (i0, d0) = base.search_batch(&queries, 10, 64).unwrap();
    for e in [100, -100, 70, -70] {
        let r = times_pow2(&refs, e, 0..refs.rows());
        let q = times_pow2(&queries, e, 0..queries.rows());
        let h = Hnsw::build(&r, Metric::Euclidean, &p, None, None).unwrap();
        let (i1, d1) = h.search_batch(&q, 10, 64).unwrap();
        assert_eq!(i0, i1, "2^{e}: other neighbours");
        for (a, b) in d0.iter().zip(&d1) {
            let want = *a as f64 * 2f64.powi(e);
            assert!(
                (*b as f64 - want).abs() <= 1e-6 * want,
                "2^{e}: {b} against {want}"
            );
        }
        let back = Hnsw::from_bytes(&h.to_bytes(), Path::new("x.hnsw")).unwrap();
        assert_eq!(back.search_batch(&q, 10, 64).unwrap().0, i1, "2^{e}: file");
        assert_eq!(
            back.to_bytes(),
            h.to_bytes(),
            "2^{e}: the file holds the rows as given"
        );
    }
    // Three outliers at ~1e30: the other rows' neighbours are still found.
    let r = times_pow2(&refs, 100, 0..3);
    let truth = knn_search(&queries, &r, 10, Metric::Euclidean, false, None).unwrap();
    let h = Hnsw::build(&r, Metric::Euclidean, &p, None, None).unwrap();
    let (found, _) = h.search_batch(&queries, 10, 64).unwrap();
    let rec = recall_at_k(&found, 10, &truth, 10);
    assert!(rec >= 0.97, "outliers: recall {rec}");
    // Cosine on rows of norm ~1e-40 (subnormal values): the same graph as on the rows themselves.
    let tiny_r = times_pow2(&refs, -135, 0..refs.rows());
    let tiny_q = times_pow2(&queries, -135, 0..queries.rows());
    let c0 = Hnsw::build(&refs, Metric::Cosine, &p, None, None).unwrap();
    let c1 = Hnsw::build(&tiny_r, Metric::Cosine, &p, None, None).unwrap();
    let truth = knn_search(&queries, &refs, 10, Metric::Cosine, false, None).unwrap();
    let rec0 = recall_at_k(
        &c0.search_batch(&queries, 10, 64).unwrap().0,
        10,
        &truth,
        10,
    );
    let rec1 = recall_at_k(&c1.search_batch(&tiny_q, 10, 64).unwrap().0, 10, &truth, 10);
    assert!(
        rec1 >= rec0 - 0.02 && rec1 >= 0.9,
        "cosine at 1e-40: {rec1} against {rec0}"
    );
}
