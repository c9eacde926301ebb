//! f64 input stays f64 where precision is the point: similarity of Y = XQ + c (exactly 1 for CKA and CCA,
//! exactly 0 for Procrustes), the spectrum far from the origin, duplicates judged on the values as given,
//! and the exact neighbour graph on the f64 values. Inputs go through the .npy loader, as a user's would.
use repscope::data::matrix::Precision;
use repscope::neighbors::{exact_knn, Metric};
use repscope::rng::Rng;
use repscope::similarity::{compare, CompareConfig};
use repscope::{Dataset, Matrix};

fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n * d).map(|_| r.normal()).collect()
}

/// A random orthogonal d × d matrix (Gram–Schmidt twice, in f64), row-major.
fn orthogonal(d: usize, seed: u64) -> Vec<f64> {
    let mut q = gaussian(d, d, seed);
    for _ in 0..2 {
        for i in 0..d {
            for j in 0..i {
                let dot: f64 = (0..d).map(|c| q[i * d + c] * q[j * d + c]).sum();
                for c in 0..d {
                    q[i * d + c] -= dot * q[j * d + c];
                }
            }
            let n = (0..d).map(|c| q[i * d + c].powi(2)).sum::<f64>().sqrt();
            for c in 0..d {
                q[i * d + c] /= n;
            }
        }
    }
    q
}

/// Writes row-major f64 values to a .npy file and loads it back through the engine's loader.
fn load_f64(dir: &std::path::Path, name: &str, n: usize, d: usize, v: &[f64]) -> Matrix {
    let p = dir.join(name);
    repscope::data::npy::write(&p, &[n, d], v).unwrap();
    let m = repscope::data::load_matrix(&p, None).unwrap();
    assert_eq!(m.precision(), Precision::F64);
    m
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("repscope-f64-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn similarity_of_a_rotated_shifted_copy_is_exact() {
    let dir = tmpdir("sim");
    let (n, d) = (400, 12);
    let x = gaussian(n, d, 1);
    let q = orthogonal(d, 2);
    let mx = load_f64(&dir, "x.npy", n, d, &x);
    let cfg = CompareConfig {
        measures: vec![
            "cka_linear".into(),
            "cca_mean_rho".into(),
            "procrustes_euclidean".into(),
            "procrustes_angular".into(),
        ],
        ..CompareConfig::default()
    };
    let mut f32_err = 0f64;
    for c in [0.0, 1.0, 100.0, 1000.0] {
        let mut y = vec![0f64; n * d];
        for i in 0..n {
            for j in 0..d {
                y[i * d + j] = (0..d).map(|t| x[i * d + t] * q[t * d + j]).sum::<f64>() + c;
            }
        }
        let my = load_f64(&dir, &format!("y{c}.npy"), n, d, &y);
        let r = compare(&mx, &my, None, &cfg, &repscope::progress::Silent).unwrap();
        let m = &r.measures;
        assert!(
            (m["cka_linear"] - 1.0).abs() <= 1e-12,
            "c {c}: CKA {}",
            m["cka_linear"]
        );
        assert!(
            (m["cca_mean_rho"] - 1.0).abs() <= 1e-12,
            "c {c}: CCA {}",
            m["cca_mean_rho"]
        );
        for key in ["procrustes_euclidean", "procrustes_angular"] {
            assert!(m[key].abs() <= 1e-12, "c {c}: {key} {}", m[key]);
        }
        // The same pair cut to f32 is visibly off at large offsets: the test can tell the two apart.
        let y32 = Matrix::from_vec(n, d, y.iter().map(|&v| v as f32).collect(), "y32").unwrap();
        let x32 = Matrix::from_vec(n, d, x.iter().map(|&v| v as f32).collect(), "x32").unwrap();
        let r32 = compare(&x32, &y32, None, &cfg, &repscope::progress::Silent).unwrap();
        f32_err = f32_err.max(r32.measures["procrustes_euclidean"].abs());
    }
    assert!(
        f32_err > 1e-9,
        "f32 input should lose digits at c = 1000 ({f32_err})"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn spectrum_far_from_the_origin_keeps_its_rank() {
    let dir = tmpdir("spec");
    let (n, d, r) = (600, 32, 5);
    // Rank-5 data plus an offset of 1e7 in every column.
    let a = gaussian(n, r, 3);
    let b = gaussian(r, d, 4);
    let mut x = vec![0f64; n * d];
    for i in 0..n {
        for j in 0..d {
            x[i * d + j] = (0..r).map(|t| a[i * r + t] * b[t * d + j]).sum::<f64>();
        }
    }
    let shifted: Vec<f64> = x.iter().map(|v| v + 1e7).collect();
    let cfg = repscope::spectrum::SpectrumConfig::default();
    let base = repscope::spectrum::analyse(&load_f64(&dir, "x.npy", n, d, &x), &cfg).unwrap();
    let far = repscope::spectrum::analyse(&load_f64(&dir, "xs.npy", n, d, &shifted), &cfg).unwrap();
    assert_eq!(base.numerical_rank, r);
    assert_eq!(far.numerical_rank, r);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn near_duplicates_in_f64_are_distinct_and_their_graph_is_exact() {
    let dir = tmpdir("knn");
    // Pairs of rows 1e-7 apart at norm 1e4: one f32 row, two f64 rows.
    let (pairs, d) = (150, 6);
    let mut r = Rng::new(9);
    let mut v = Vec::with_capacity(2 * pairs * d);
    for _ in 0..pairs {
        let base: Vec<f64> = (0..d).map(|_| 4e3 * r.normal()).collect();
        v.extend(&base);
        v.extend(base.iter().map(|x| x + 1e-7 * r.normal()));
    }
    let n = 2 * pairs;
    let m = load_f64(&dir, "near.npy", n, d, &v);
    let ds = Dataset::new(m).unwrap();
    assert_eq!(ds.dedup.merged, 0, "no two f64 rows are equal");
    for metric in [Metric::Euclidean, Metric::Cosine] {
        let g = exact_knn(ds.distinct(), 3, metric, None).unwrap();
        for i in 0..n {
            let row = &v[i * d..(i + 1) * d];
            let ni = row.iter().map(|x| x * x).sum::<f64>().sqrt();
            let mut all: Vec<(f64, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let other = &v[j * d..(j + 1) * d];
                    let dist = match metric {
                        Metric::Euclidean => row
                            .iter()
                            .zip(other)
                            .map(|(a, b)| (a - b).powi(2))
                            .sum::<f64>()
                            .sqrt(),
                        Metric::Cosine => {
                            let nj = other.iter().map(|x| x * x).sum::<f64>().sqrt();
                            0.5 * row
                                .iter()
                                .zip(other)
                                .map(|(a, b)| (a / ni - b / nj).powi(2))
                                .sum::<f64>()
                        }
                    };
                    (dist, j as u32)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            // The partner is the nearest, at its f64 distance (an f32 copy would put it at 0 or far).
            assert_eq!(g.neighbors(i)[0], all[0].1, "{metric:?} row {i}");
            let (got, want) = (g.dists(i)[0], all[0].0);
            let ok = match metric {
                Metric::Euclidean => (got - want).abs() <= 1e-9 * want,
                // 1 − cos of about 1e-22: f64 resolves the chord √(2(1 − cos)) to about 1e-16 absolute.
                Metric::Cosine => ((2.0 * got).sqrt() - (2.0 * want).sqrt()).abs() <= 1e-14,
            };
            assert!(ok, "{metric:?} row {i}: {got} vs {want}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// f64 rows so small that their squares underflow (down to subnormals) have the graph of the same rows at
/// ordinary scale: the same neighbours, euclidean distances times the scale, the same cosine distances,
/// through the symmetric self search and the query search alike. The values carry 20 significant bits, so
/// even as subnormals they are the same numbers times a power of two.
#[test]
fn tiny_f64_rows_have_the_graph_of_the_same_rows_at_ordinary_scale() {
    let dir = tmpdir("tiny");
    let (n, d, k) = (500, 5, 6);
    let base: Vec<f64> = gaussian(n, d, 21)
        .iter()
        .map(|v| (v * 65536.0).round() / 65536.0)
        .collect();
    let m0 = load_f64(&dir, "x.npy", n, d, &base);
    for e in [-450, -700, -1040] {
        // 2^e in two factors: powi of a power beyond 2^1023 would overflow on the way.
        let s = 2f64.powi(e / 2) * 2f64.powi(e - e / 2);
        let tiny: Vec<f64> = base.iter().map(|v| v * s).collect();
        let m = load_f64(&dir, "tiny.npy", n, d, &tiny);
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let want = exact_knn(&m0, k, metric, None).unwrap();
            let self_search = exact_knn(&m, k, metric, None).unwrap();
            let query_search =
                repscope::neighbors::knn_search(&m, &m, k, metric, true, None).unwrap();
            for (plan, g) in [("self", &self_search), ("query", &query_search)] {
                assert_eq!(g.indices, want.indices, "2^{e} {metric:?} {plan}");
                for (a, b) in g.distances.iter().zip(&want.distances) {
                    let b = match metric {
                        Metric::Euclidean => b * s,
                        Metric::Cosine => *b,
                    };
                    // Subnormal distances hold fewer bits: 2⁻¹⁰⁷⁰ absolute.
                    let tol = 1e-12 * b.abs() + 2f64.powi(-1070);
                    assert!((a - b).abs() <= tol, "2^{e} {metric:?} {plan}: {a:e} {b:e}");
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
