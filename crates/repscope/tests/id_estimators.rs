//! The estimators beyond the suite's default eight (MOM, TLE, MADA, the MLE variants, CorrInt, MiND_ML, the
//! Bayesian TwoNN, the binomial estimator and the PCA rules) against independent truth: float64 brute-force
//! versions of their definitions written here, closed forms, manifolds of known dimension, and the
//! invariance to duplicated rows. Their parity with scikit-dimension and DADApy on the peers' own test inputs
//! is in the Python tests (crates/repscope-py/tests/test_id_estimators.py), where the peers' generators run.
use repscope::datasets::manifolds::{generate, info, MANIFOLDS};
use repscope::intrinsic::method::{self, Method};
use repscope::intrinsic::suite::{self, IdConfig, IdReport};
use repscope::neighbors::{exact_knn, Metric};
use repscope::progress::Silent;
use repscope::rng::Rng;
use repscope::{Dataset, Matrix};

fn manifold(name: &str, n: usize, seed: u64) -> Matrix {
    let m = info(name).unwrap();
    Matrix::from_vec(n, m.ambient_dim, generate(name, n, seed).unwrap(), name).unwrap()
}

fn run(m: Matrix, estimators: &[&str]) -> IdReport {
    let cfg = IdConfig {
        estimators: estimators.iter().map(|s| s.to_string()).collect(),
        scale_curve: false,
        ..IdConfig::default()
    };
    suite::run(&Dataset::new(m).unwrap(), &cfg, &Silent).unwrap()
}

/// All pairwise float64 distances of the rows, and each row's sorted distances to the others.
fn brute(m: &Matrix) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let n = m.rows();
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| m.row(i).iter().map(|&x| x as f64).collect())
        .collect();
    let dist: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    rows[i]
                        .iter()
                        .zip(&rows[j])
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect()
        })
        .collect();
    let sorted = (0..n)
        .map(|i| {
            let mut d: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| dist[i][j]).collect();
            d.sort_by(f64::total_cmp);
            d
        })
        .collect();
    (dist, sorted)
}

fn value(r: &IdReport, name: &str) -> f64 {
    r.estimates
        .iter()
        .find(|e| e.estimator == name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", r.notes))
        .value
}

fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(
        (a - b).abs() <= rel * b.abs().max(1e-300),
        "{what}: {a} against {b}"
    );
}

#[test]
fn neighbour_estimators_equal_their_definitions_in_float64() {
    let m = manifold("M10a_Cubic", 600, 4);
    let (dist, sorted) = brute(&m);
    let n = m.rows();
    let r = run(
        m.clone(),
        &[
            "mom",
            "mada",
            "mle_unbiased",
            "mle_global",
            "corrint",
            "mind_mli",
            "twonn_bayes",
            "binomial",
        ],
    );
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    // MOM, k = 100: m1 / (w - m1).
    let mom = mean(
        sorted
            .iter()
            .map(|d| {
                let m1 = d[..100].iter().sum::<f64>() / 100.0;
                m1 / (d[99] - m1)
            })
            .collect(),
    );
    close(value(&r, "mom"), mom, 1e-10, "mom");
    // MADA, k = 20: log 2 / log(r20 / r10).
    let mada = mean(
        sorted
            .iter()
            .map(|d| 2f64.ln() / (d[19] / d[9]).ln())
            .collect(),
    );
    close(value(&r, "mada"), mada, 1e-10, "mada");
    // Unbiased MLE, k = 20, harmonic mean: 1 / mean(Σ log(T_k/T_j) / (k − 2)).
    let inv = mean(
        sorted
            .iter()
            .map(|d| d[..19].iter().map(|t| (d[19] / t).ln()).sum::<f64>() / 18.0)
            .collect(),
    );
    close(value(&r, "mle_unbiased"), 1.0 / inv, 1e-10, "mle_unbiased");
    // Global MLE: the 20 smallest distinct values among the first 5 neighbour distances of every point.
    let mut pooled: Vec<f64> = sorted.iter().flat_map(|d| d[..5].to_vec()).collect();
    pooled.sort_by(f64::total_cmp);
    pooled.dedup();
    let rs = &pooled[..20];
    let g = 19.0 / rs.iter().map(|x| (rs[19] / x).ln()).sum::<f64>();
    close(value(&r, "mle_global"), g, 1e-10, "mle_global");
    // CorrInt: medians of r10 and r20, ordered pairs strictly closer.
    let med = |j: usize| {
        let mut c: Vec<f64> = sorted.iter().map(|d| d[j - 1]).collect();
        c.sort_by(f64::total_cmp);
        0.5 * (c[n / 2 - 1] + c[n / 2])
    };
    let (r1, r2) = (med(10), med(20));
    let count = |r: f64| {
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .filter(|&(i, j)| dist[i][j] < r)
            .count() as f64
    };
    let ci = (count(r2).ln() - count(r1).ln()) / (r2 / r1).ln();
    close(value(&r, "corrint"), ci, 1e-12, "corrint");
    // MiND_MLi: the integer d in 1..10 of largest likelihood of r1/r21.
    let logs: Vec<f64> = sorted.iter().map(|d| (d[0] / d[20]).ln()).collect();
    let lik = |d: f64| {
        n as f64 * (20.0 * d).ln()
            + (d - 1.0) * logs.iter().sum::<f64>()
            + 19.0 * logs.iter().map(|l| (1.0 - (d * l).exp()).ln()).sum::<f64>()
    };
    let best = (1..=10)
        .max_by(|&a, &b| lik(a as f64).total_cmp(&lik(b as f64)))
        .unwrap();
    assert_eq!(value(&r, "mind_mli"), best as f64);
    // Bayesian TwoNN: (2 + N) / (5 + Σ log μ).
    let s: f64 = sorted.iter().map(|d| (d[1] / d[0]).ln()).sum();
    close(
        value(&r, "twonn_bayes"),
        (2.0 + n as f64) / (5.0 + s),
        1e-12,
        "twonn_bayes",
    );
    // Binomial, k = 20, r = 0.5, Bayes: digamma difference over log r.
    let inside: f64 = sorted
        .iter()
        .map(|d| d[..20].iter().filter(|&&x| x <= 0.5 * d[19]).count() as f64)
        .sum();
    let (a, b) = (1.0 + inside, 1.0 + 19.0 * n as f64 - inside);
    let e = (repscope::intrinsic::bayes::digamma(a) - repscope::intrinsic::bayes::digamma(a + b))
        / 0.5f64.ln();
    close(value(&r, "binomial"), e, 1e-12, "binomial");
}

#[test]
fn tle_equals_a_direct_transcription_of_its_definition() {
    // A point whose neighbour geometry is generic: TLE's s and t distances from the three distances of
    // each pair (Amsaleg et al. 2019, eq. for s_ij and t_ij), with no boundary case.
    let m = manifold("M1_Sphere", 400, 2);
    let (dist, _) = brute(&m);
    let g = exact_knn(&m, 20, Metric::Euclidean, None).unwrap();
    let pw = Method::Tle {
        k: 20,
        epsilon: 1e-4,
        comb: repscope::intrinsic::local::Combine::Mean,
    }
    .fit(&m, Metric::Euclidean, Some(&g), None)
    .unwrap()
    .per_point
    .unwrap();
    for i in [0usize, 17, 250] {
        let nb: Vec<usize> = g.neighbors(i).iter().map(|&j| j as usize).collect();
        let u: Vec<f64> = nb.iter().map(|&j| dist[i][j]).collect();
        let r = u[19];
        let (mut s1, mut s2) = (0.0, 0.0);
        for a in 0..20 {
            for b in 0..20 {
                if a == b {
                    continue;
                }
                let (ua, ub, v) = (u[a], u[b], dist[nb[a]][nb[b]]);
                let z2 = 2.0 * ua * ua + 2.0 * ub * ub - v * v;
                let (s, t) = if a == 19 {
                    (
                        r * v * v / (r * r + v * v - ub * ub),
                        r * z2 / (r * r + z2 - ub * ub),
                    )
                } else {
                    let p = ua * ua + v * v - ub * ub;
                    let q = ua * ua + z2 - ub * ub;
                    let den = 2.0 * (r * r - ua * ua);
                    (
                        r * ((p * p + 4.0 * v * v * (r * r - ua * ua)).sqrt() - p) / den,
                        r * ((q * q + 4.0 * z2 * (r * r - ua * ua)).sqrt() - q) / den,
                    )
                };
                s1 += (s / r).ln() + (t / r).ln();
            }
            s2 += (u[a] / r).ln();
        }
        let want = -2.0 * 400.0 / (s1 + 2.0 * s2);
        close(pw[i], want, 1e-9, &format!("TLE at point {i}"));
    }
}

#[test]
fn ess_equals_its_definition_in_float64() {
    // Version a, d = 1: Σ_{a<b} |u_a||u_b||sin θ_ab| / Σ_{a<b} |u_a||u_b| over the 100 neighbours centred on
    // their mean, read off the uniform ball's curve.
    let m = manifold("M4_Nonlinear", 500, 8);
    let g = exact_knn(&m, 100, Metric::Euclidean, None).unwrap();
    let fitted = Method::by_name("ess")
        .unwrap()
        .fit(&m, Metric::Euclidean, Some(&g), None)
        .unwrap();
    let pw = fitted.per_point.unwrap();
    for i in [0usize, 123, 499] {
        let nb: Vec<Vec<f64>> = g
            .neighbors(i)
            .iter()
            .map(|&j| m.row(j as usize).iter().map(|&x| x as f64).collect())
            .collect();
        let d = m.cols();
        let mean: Vec<f64> = (0..d)
            .map(|c| nb.iter().map(|r| r[c]).sum::<f64>() / 100.0)
            .collect();
        let u: Vec<Vec<f64>> = nb
            .iter()
            .map(|r| r.iter().zip(&mean).map(|(x, m)| x - m).collect())
            .collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let (mut num, mut den) = (0.0, 0.0);
        for a in 0..100 {
            for b in a + 1..100 {
                let (aa, bb, ab) = (dot(&u[a], &u[a]), dot(&u[b], &u[b]), dot(&u[a], &u[b]));
                num += (aa * bb - ab * ab).abs().sqrt();
                den += (aa * bb).sqrt();
            }
        }
        let want = repscope::intrinsic::ess::dimension_of(
            repscope::intrinsic::ess::EssVersion::A,
            1,
            num / den,
        );
        close(pw[i], want, 1e-10, &format!("ESS at point {i}"));
    }
}

#[test]
fn pca_rules_on_a_planted_spectrum() {
    // Columns of independent variances 100, 50, 10, 1, 0.01 (then exact zeros): the rules have closed forms.
    let mut rng = Rng::new(5);
    let sd = [10.0, 50f64.sqrt(), 10f64.sqrt(), 1.0, 0.1, 0.0, 0.0];
    let n = 20_000;
    let v: Vec<f32> = (0..n)
        .flat_map(|_| {
            sd.iter()
                .map(|s| (s * rng.normal()) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let r = run(
        Matrix::from_vec(n, sd.len(), v, "planted").unwrap(),
        &[
            "pca_maxgap",
            "pca_ratio",
            "pca_kaiser",
            "pca_broken_stick",
            "pca_fan",
        ],
    );
    // maxgap: 0.01 / 0 is infinite, so the largest gap is after the fifth component.
    assert_eq!(value(&r, "pca_maxgap"), 5.0);
    // ratio: 100/161 > 5% already, so 0 components stay below it: 1.
    assert_eq!(value(&r, "pca_ratio"), 1.0);
    // Kaiser: the mean is 161/7 ≈ 23: two eigenvalues above it.
    assert_eq!(value(&r, "pca_kaiser"), 2.0);
    // Broken stick for p = 7: b1 = (1/7)(1 + 1/2 + … + 1/7) ≈ 0.370 < 100/161 ≈ 0.621; b2 ≈ 0.227 < 0.311;
    // b3 ≈ 0.156 > 10/161 ≈ 0.062: two.
    assert_eq!(value(&r, "pca_broken_stick"), 2.0);
    // Fan: 95% of 161 is passed at the third component (160/161 = 0.994, index 2); σ = mean(10, 1, 0.01, 0,
    // 0) = 2.2; shifted (97.8, 47.8, 7.8, −1.2, −2.2, −2.2, −2.2), which sum to 145.6: no ratio of neighbours
    // exceeds 10, and the cumulative share passes 0.8 at index 1 (145.6/145.6): 2.
    assert_eq!(value(&r, "pca_fan"), 2.0);
}

/// FisherS's mean relative error over the 23 manifolds where it reads a dimension: 0.389 measured, plus 0.03.
const FISHER_BOUND: f64 = 0.42;

#[test]
fn new_estimators_are_near_the_truth_on_the_benchmark_manifolds() {
    // Mean relative error over the 24 manifolds, n = 2500, seed 0; the bounds are the values measured with
    // scikit-dimension's own generator (bench/id_estimators.py: the same estimators in skdim score the same
    // to three digits) plus 0.03 for the change of generator.
    let bounds = [
        ("mom", 0.255),
        ("tle", 0.202),
        ("mada", 0.286),
        // Measured here (skdim's ESS takes about 70 s a manifold, so bench/id_estimators.py leaves it out).
        ("ess", 0.202),
        ("mle_unbiased", 0.212),
        ("corrint", 0.360),
        ("mind_mli", 0.210),
        ("twonn_bayes", 0.13),
        // Measured with repscope's generator (`repscope demo`): skdim's generator gives 0.049 and 0.109.
        ("mind_kl", 0.054),
        ("danco_fit", 0.108),
    ];
    let names: Vec<&str> = bounds.iter().map(|b| b.0).collect();
    let mut sums = vec![0.0; names.len()];
    for m in MANIFOLDS {
        let r = run(manifold(m.name, 2500, 0), &names);
        for (s, name) in sums.iter_mut().zip(&names) {
            *s += (value(&r, name) - m.id as f64).abs() / m.id as f64;
        }
    }
    // The binomial estimator at r = 0.5 sees no point inside r·r_20 beyond about 20 dimensions (r^d·19 < 1
    // in expectation), and says so; below that it is computed.
    // Its mean relative error over the 17 manifolds of dimension ≤ 12 measured 0.147.
    let low: Vec<_> = MANIFOLDS.iter().filter(|m| m.id <= 12).collect();
    let binomial = low
        .iter()
        .map(|m| {
            let r = run(manifold(m.name, 2500, 0), &["binomial"]);
            (value(&r, "binomial") - m.id as f64).abs() / m.id as f64
        })
        .sum::<f64>()
        / low.len() as f64;
    assert!(binomial <= 0.18, "binomial: {binomial:.3} on d ≤ 12");
    // FisherS reads nothing where every point is separable from every other at every α (high dimension at
    // small n, as the 70-dimensional hypercube): it says so there, as skdim returns NaN.
    let (mut fisher, mut fisher_n, mut fisher_missing) = (0.0, 0usize, Vec::new());
    for m in MANIFOLDS {
        let r = run(manifold(m.name, 2500, 0), &["fisher_s"]);
        match r.estimates.iter().find(|e| e.estimator == "fisher_s") {
            Some(e) => {
                fisher += (e.value - m.id as f64).abs() / m.id as f64;
                fisher_n += 1;
            }
            None => {
                assert!(
                    r.notes.iter().any(|n| n.contains("separable")),
                    "{:?}",
                    r.notes
                );
                fisher_missing.push(m.name);
            }
        }
    }
    let fisher = fisher / fisher_n as f64;
    eprintln!(
        "fisher_s: mean relative error {fisher:.3} over {fisher_n}, none on {fisher_missing:?}"
    );
    assert!(
        fisher_missing.len() <= 2 && fisher <= FISHER_BOUND,
        "{fisher:.3}, {fisher_missing:?}"
    );
    for ((name, bound), s) in bounds.iter().zip(&sums) {
        let mre = s / MANIFOLDS.len() as f64;
        eprintln!("{name}: mean relative error {mre:.3}");
        assert!(mre <= bound + 0.03, "{name}: {mre:.3} > {bound} + 0.03");
    }
}

#[test]
fn duplicated_rows_move_no_new_estimate() {
    let all: Vec<&str> = method::NAMES.to_vec();
    for name in ["M1_Sphere", "M7_Roll", "Mbeta"] {
        let base = manifold(name, 1500, 3);
        let clean = run(base.clone(), &all);
        assert_eq!(clean.estimates.len(), all.len(), "{:?}", clean.notes);
        for fraction in [0.01, 0.15] {
            let n = base.rows();
            let extra = (n as f64 * fraction).round() as usize;
            let mut rng = Rng::new(11);
            let mut idx: Vec<usize> = (0..n).collect();
            idx.extend((0..extra).map(|_| rng.below(n as u64) as usize));
            let r = run(base.select_rows(&idx), &all);
            assert_eq!(r.duplicates_merged, extra);
            for (a, b) in clean.estimates.iter().zip(&r.estimates) {
                assert_eq!(a.estimator, b.estimator);
                assert!(
                    b.value.is_finite() && (a.value - b.value).abs() <= 0.02 * a.value.abs(),
                    "{name} {}: {} against {} with {fraction} duplicates",
                    b.estimator,
                    b.value,
                    a.value
                );
            }
        }
    }
}

#[test]
fn bad_parameters_and_undefined_data_are_named() {
    let m = manifold("M1_Sphere", 300, 1);
    let g = exact_knn(&m, 30, Metric::Euclidean, None).unwrap();
    let bad = [
        Method::Mle {
            k: 1,
            comb: repscope::intrinsic::local::Combine::Harmonic,
            unbiased: false,
            sigma: None,
        },
        Method::Mle {
            k: 20,
            comb: repscope::intrinsic::local::Combine::Harmonic,
            unbiased: false,
            sigma: Some(0.0),
        },
        Method::TwonnBayes {
            alpha: 0.0,
            beta: 5.0,
            posterior_mean: true,
            level: 0.95,
        },
        Method::Binomial {
            k: 20,
            r: 1.0,
            bayes: true,
        },
        Method::Corrint { k1: 20, k2: 10 },
        Method::Mind {
            k: 20,
            max_dim: 0,
            integer: false,
        },
    ];
    for b in bad {
        let e = b.fit(&m, Metric::Euclidean, Some(&g), None).unwrap_err();
        assert!(
            matches!(e, repscope::Error::InvalidParameter { .. }),
            "{b:?}: {e}"
        );
    }
    // Every neighbour distance tied (a lattice): MADA has no value anywhere and says why, never NaN.
    let v: Vec<f32> = (0..20)
        .flat_map(|i| (0..20).flat_map(move |j| [i as f32, j as f32]))
        .collect();
    let grid = Matrix::from_vec(400, 2, v, "grid").unwrap();
    let g = exact_knn(&grid, 4, Metric::Euclidean, None).unwrap();
    let e = Method::Mada {
        k: 2,
        comb: repscope::intrinsic::local::Combine::Mean,
    }
    .fit(&grid, Metric::Euclidean, Some(&g), None)
    .unwrap_err();
    assert!(e.to_string().contains("undefined at every point"), "{e}");
    // In the suite, an estimator with no signal is a note and the others still run: at r = 0.5 the binomial
    // estimator sees no point inside r·r_20 in 60 dimensions (r^60 ≈ 1e-18).
    let mut rng = Rng::new(3);
    let v: Vec<f32> = (0..300 * 60).map(|_| rng.normal() as f32).collect();
    let cfg = IdConfig {
        estimators: vec!["binomial".into(), "twonn_bayes".into()],
        scale_curve: false,
        ..IdConfig::default()
    };
    let ds = Dataset::new(Matrix::from_vec(300, 60, v, "gauss60").unwrap()).unwrap();
    let r = suite::run(&ds, &cfg, &Silent).unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("binomial not computed") && n.contains("larger r")),
        "{:?}",
        r.notes
    );
    assert!(r.estimates.iter().any(|e| e.estimator == "twonn_bayes"));
}

#[test]
fn cosine_reads_chords_on_unit_rows() {
    // On unit-norm rows the chord is the euclidean distance, so every new estimator agrees across metrics.
    let m = manifold("M1_Sphere", 800, 6);
    let all: Vec<String> = method::NAMES.iter().map(|s| s.to_string()).collect();
    let mk = |metric| IdConfig {
        estimators: all.clone(),
        scale_curve: false,
        metric,
        ..IdConfig::default()
    };
    let unit: Vec<f32> = (0..m.rows())
        .flat_map(|i| {
            let r = m.row(i);
            let norm = r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            r.iter()
                .map(move |&x| (x as f64 / norm) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let um = Matrix::from_vec(m.rows(), m.cols(), unit, "unit").unwrap();
    let ds = Dataset::new(um).unwrap();
    let e = suite::run(&ds, &mk(Metric::Euclidean), &Silent).unwrap();
    let c = suite::run(&ds, &mk(Metric::Cosine), &Silent).unwrap();
    for (a, b) in e.estimates.iter().zip(&c.estimates) {
        assert_eq!(a.estimator, b.estimator);
        assert!(
            (a.value - b.value).abs() <= 1e-6 * a.value.abs().max(1.0),
            "{}: {} euclidean, {} cosine",
            a.estimator,
            a.value,
            b.value
        );
    }
}

#[test]
fn information_imbalance_equals_its_definition() {
    // Δ(A → B) = (2/N²) Σ_i rank_B(i, nn_A(i)), with the rank counting the rows strictly closer, in float64.
    let mut rng = Rng::new(21);
    let n = 400;
    let a: Vec<f32> = (0..n * 6).map(|_| rng.normal() as f32).collect();
    // B: the first three columns of A, then two of noise, and a duplicated row pair (a tie in B and A).
    let mut b: Vec<f32> = (0..n)
        .flat_map(|i| {
            let mut r = a[i * 6..i * 6 + 3].to_vec();
            r.push(0.3 * rng.normal() as f32);
            r.push(0.3 * rng.normal() as f32);
            r
        })
        .collect();
    b.copy_within(0..5, 5);
    let (ma, mb) = (
        Matrix::from_vec(n, 6, a, "A").unwrap(),
        Matrix::from_vec(n, 5, b, "B").unwrap(),
    );
    let brute_way = |x: &Matrix, y: &Matrix| {
        let (dx, _) = brute(x);
        let (dy, _) = brute(y);
        let mut total = 0.0;
        for i in 0..n {
            // The nearest neighbour in x, ties to the smaller index.
            let j = (0..n)
                .filter(|&j| j != i)
                .min_by(|&p, &q| dx[i][p].total_cmp(&dx[i][q]).then(p.cmp(&q)))
                .unwrap();
            let closer = (0..n).filter(|&l| l != i && dy[i][l] < dy[i][j]).count();
            total += (closer + 1) as f64;
        }
        2.0 * total / (n * n) as f64
    };
    let r = repscope::similarity::imbalance::information_imbalance(&ma, &mb, Metric::Euclidean)
        .unwrap();
    close(r.x_to_y, brute_way(&ma, &mb), 1e-15, "A -> B");
    close(r.y_to_x, brute_way(&mb, &ma), 1e-15, "B -> A");
    // A holds B's information and more: A predicts B's neighbours better than B predicts A's.
    assert!(r.x_to_y < r.y_to_x, "{r:?}");
    // Independent spaces read about 1.
    let c: Vec<f32> = (0..n * 6).map(|_| rng.normal() as f32).collect();
    let mc = Matrix::from_vec(n, 6, c, "C").unwrap();
    let r = repscope::similarity::imbalance::information_imbalance(&ma, &mc, Metric::Euclidean)
        .unwrap();
    assert!((0.85..1.15).contains(&r.x_to_y), "{r:?}");
}

/// skdim 0.5.0's reference sets with R intrinsicDimension's DANCo values (tests/fixtures/id).
fn danco_reference() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/id/skdim_reference_danco.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn reference_set(v: &serde_json::Value, name: &str) -> Matrix {
    let rows = v["sets"][name]["X"].as_array().unwrap();
    // ball5_in10 holds the ball's five columns; its reference set has five zero columns beside them.
    let pad = if name == "ball5_in10" { 5 } else { 0 };
    let cols = rows[0].as_array().unwrap().len() + pad;
    let mut x = Vec::with_capacity(rows.len() * cols);
    for r in rows {
        x.extend(r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
        x.extend(std::iter::repeat_n(0.0, pad));
    }
    Matrix::from_f64(rows.len(), cols, x, name).unwrap()
}

#[test]
fn danco_equals_r_intrinsic_dimension_on_skdims_reference_sets() {
    use repscope::intrinsic::danco::{statistics, DancoStats};
    let v = danco_reference();
    for name in ["ball5_in10", "sphere4_in5"] {
        let m = reference_set(&v, name);
        let r = &v["sets"][name];
        let (k, d) = (
            r["k"].as_u64().unwrap() as usize,
            r["D"].as_u64().unwrap() as usize,
        );
        let g = exact_knn(&m, k + 1, Metric::Euclidean, None).unwrap();
        // The data's statistics ("nocal"): R's values to 1e-6 relative, skdim's tolerance.
        let s = statistics(&m, &g, k, d).unwrap();
        close(s.dhat, r["nocal"]["dhat"].as_f64().unwrap(), 1e-6, "dhat");
        close(
            s.mu_nu,
            r["nocal"]["mu_nu"].as_f64().unwrap(),
            1e-6,
            "mu_nu",
        );
        close(
            s.mu_tau,
            r["nocal"]["mu_tau"].as_f64().unwrap(),
            1e-6,
            "mu_tau",
        );
        // With R's calibration statistics, the rest is deterministic: the dimension and its divergence.
        let cal: Vec<DancoStats> = serde_json::from_value(r["calibration"].clone()).unwrap();
        let e = Method::Danco {
            k,
            max_dim: Some(d),
            fractal: false,
            seed: 0,
            calibration: Some(cal),
            table: false,
        }
        .fit(&m, Metric::Euclidean, Some(&g), None)
        .unwrap()
        .estimate;
        assert_eq!(e.value, r["dim_est"].as_f64().unwrap(), "{name}");

        close(
            e.params["kl_divergence"].as_f64().unwrap(),
            r["kl_divergence"].as_f64().unwrap(),
            1e-6,
            "kl",
        );
    }
}

/// n points uniform in the unit d-ball (seeded), in f32.
fn ball(n: usize, d: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(n * d);
    for _ in 0..n {
        let g: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let radius = rng.uniform().powf(1.0 / d as f64);
        x.extend(g.iter().map(|v| (v / norm * radius) as f32));
    }
    Matrix::from_vec(n, d, x, "ball").unwrap()
}

#[test]
fn danco_recovers_the_dimension_of_balls_with_its_own_calibration() {
    // skdim's test_danco_results: uniform d-balls for d = 2..10, D = 11, fractal=False give d exactly. skdim
    // asserts it on 100 points of its seeded balls; on 100 points of other draws DANCo misses by one at about
    // a third of the dimensions, so the truth is asserted here on 500. The precomputed calibration (DANCoFit)
    // is asserted on the same balls, at 500 points (a tabulated size) and at 650 (interpolated).
    for d in 2..=10usize {
        for n in [500, 650] {
            let m = ball(n, d, d as u64);
            let g = exact_knn(&m, 11, Metric::Euclidean, None).unwrap();
            let fit = |fractal, table| {
                Method::Danco {
                    k: 10,
                    max_dim: Some(11),
                    fractal,
                    seed: 0,
                    calibration: None,
                    table,
                }
                .fit(&m, Metric::Euclidean, Some(&g), None)
                .unwrap()
                .estimate
                .value
            };
            if n == 500 {
                assert_eq!(fit(false, false), d as f64, "d = {d}");
                assert!(
                    (fit(true, false) - d as f64).abs() < 0.5,
                    "d = {d}: {}",
                    fit(true, false)
                );
            }
            assert_eq!(fit(false, true), d as f64, "DANCoFit, n = {n}, d = {d}");
            assert!(
                (fit(true, true) - d as f64).abs() < 0.5,
                "DANCoFit, n = {n}, d = {d}: {}",
                fit(true, true)
            );
        }
    }
}

#[test]
fn danco_fit_table_is_whole_and_interpolates_as_pchip() {
    use repscope::intrinsic::danco::{ball_statistics, FitTable};
    let t = FitTable::builtin();
    assert_eq!((t.k, t.iterations, t.max_dim()), (10, 100, 100));
    assert_eq!(t.cardinalities.len(), 24);
    for dim in 1..=100 {
        for (c, &n) in t.cardinalities.iter().enumerate() {
            let s = t.at(n, dim);
            // Exact at the tabulated sizes, and every statistic finite.
            assert_eq!(
                (s.dhat, s.mu_nu, s.mu_tau),
                (
                    t.dhat[dim - 1][c],
                    t.mu_nu[dim - 1][c],
                    t.mu_tau[dim - 1][c]
                )
            );
            assert!(s.dhat.is_finite() && s.mu_nu.is_finite() && s.mu_tau.is_finite());
        }
    }
    // The table is what its generator writes: the mean of the balls at seeds 0..99. Recomputed here for
    // one small cell (N = 40, dimension 7).
    let c = t.cardinalities.iter().position(|&n| n == 40).unwrap();
    let mean = (0..100u64)
        .map(|seed| ball_statistics(40, 7, 10, seed).unwrap().dhat)
        .sum::<f64>()
        / 100.0;
    assert_eq!(mean, t.dhat[6][c]);
    // Between sizes, the interpolant stays within its neighbours where they are monotone (PCHIP preserves
    // shape): d̂ of dimension 20 rises with N.
    let (lo, hi) = (t.at(1000, 20).dhat, t.at(2000, 20).dhat);
    let mid = t.at(1500, 20).dhat;
    assert!(lo < hi && lo < mid && mid < hi, "{lo} {mid} {hi}");
}

#[test]
fn mind_kl_recovers_the_dimension_of_balls() {
    // MiND_KL compares ρ with that of uniform balls: on a uniform d-ball of 1,000 points it reads d, or one
    // off at a few dimensions (the divergence estimates are noisy at this size). The scan's early stop
    // changes nothing here against the whole scan.
    let mut exact = 0;
    for d in 1..=8usize {
        let m = ball(1000, d, 100 + d as u64);
        let g = exact_knn(&m, 11, Metric::Euclidean, None).unwrap();
        let fit = |patience| {
            Method::MindKl {
                k: 10,
                max_dim: Some(20),
                sigma: None,
                patience,
                seed: 0,
            }
            .fit(&m, Metric::Euclidean, Some(&g), None)
            .unwrap()
            .estimate
        };
        let e = fit(Some(10));
        // A second fit reads the memoised balls: the same divergences, bit for bit.
        assert_eq!(e.params["divergences"], fit(Some(10)).params["divergences"]);
        assert!((e.value - d as f64).abs() <= 1.0, "d = {d}: {}", e.value);
        exact += (e.value == d as f64) as usize;
        assert_eq!(e.value, fit(None).value, "d = {d}");
        assert_eq!(e.value.fract(), 0.0);
    }
    assert!(exact >= 6, "{exact} of 8 exact");
}

/// n points of a standard Gaussian in the first `dim` of `ambient` coordinates, the first shifted by `shift`.
fn gaussian_block(rng: &mut Rng, n: usize, dim: usize, ambient: usize, shift: f64) -> Vec<f32> {
    let mut x = vec![0f32; n * ambient];
    for r in x.chunks_mut(ambient) {
        for v in r.iter_mut().take(dim) {
            *v = rng.normal() as f32;
        }
        r[0] += shift as f32;
    }
    x
}

#[test]
fn hidalgo_recovers_two_manifolds_and_their_points() {
    // A 2-D and a 5-D Gaussian in R^6, 1000 points each: apart, touching, and the plane through the blob's
    // centre. Each manifold's dimension within 10% and at least 90% of points on their own manifold.
    for shift in [10.0, 3.0, 0.0] {
        for seed in [1u64, 2] {
            let mut rng = Rng::new(seed);
            let mut x = gaussian_block(&mut rng, 1000, 2, 6, shift);
            x.extend(gaussian_block(&mut rng, 1000, 5, 6, 0.0));
            let m = Matrix::from_vec(2000, 6, x, "mixture").unwrap();
            let g = exact_knn(&m, 3, Metric::Euclidean, None).unwrap();
            let f = Method::by_name("hidalgo")
                .unwrap()
                .fit(&m, Metric::Euclidean, Some(&g), None)
                .unwrap();
            let dims: Vec<f64> = f.estimate.params["dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let what = format!("shift {shift}, seed {seed}: {dims:?}");
            close(dims[0], 2.0, 0.1, &what);
            close(dims[1], 5.0, 0.1, &what);
            let assign = &f.arrays.iter().find(|a| a.0 == "assignment").unwrap().1;
            let correct = (0..2000)
                .filter(|&i| assign[i] == if i < 1000 { 0.0 } else { 1.0 })
                .count() as f64
                / 2000.0;
            assert!(correct >= 0.9, "{what}: {correct} assigned correctly");
            // The per-point IDs follow the manifolds.
            let pw = f.per_point.unwrap();
            let mean =
                |r: std::ops::Range<usize>| pw[r.clone()].iter().sum::<f64>() / r.len() as f64;
            assert!(mean(0..1000) < 3.0 && mean(1000..2000) > 4.0, "{what}");
        }
    }
    // More manifolds than the points allow, and ζ outside (0, 1), are named.
    let mut rng = Rng::new(1);
    let m = Matrix::from_vec(20, 6, gaussian_block(&mut rng, 20, 3, 6, 0.0), "few").unwrap();
    let g = exact_knn(&m, 3, Metric::Euclidean, None).unwrap();
    let with = |k: usize, zeta: f64| {
        let mut h = Method::by_name("hidalgo").unwrap();
        if let Method::Hidalgo(hh) = &mut h {
            hh.k = k;
            hh.zeta = zeta;
        }
        h.fit(&m, Metric::Euclidean, Some(&g), None)
            .unwrap_err()
            .to_string()
    };
    assert!(
        with(6, 0.8).contains("more manifolds than the points allow"),
        "{}",
        with(6, 0.8)
    );
    assert!(with(2, 1.0).contains("ζ"), "{}", with(2, 1.0));
}

#[test]
fn mle_noise_model_equals_its_integrals() {
    // skdim's dnoise="dnoiseGaussH": log(T_k/T_j) replaced by its expectation under N(T_j, σ²) on
    // (0, T_k + 100σ). Checked with a plain midpoint rule on a fine grid, and against the noiseless MLE as
    // σ → 0.
    let m = manifold("M1_Sphere", 400, 3);
    let g = exact_knn(&m, 20, Metric::Euclidean, None).unwrap();
    let fit = |sigma: Option<f64>| {
        Method::Mle {
            k: 20,
            comb: repscope::intrinsic::local::Combine::Harmonic,
            unbiased: false,
            sigma,
        }
        .fit(&m, Metric::Euclidean, Some(&g), None)
        .unwrap()
    };
    let sigma = 0.05;
    let noisy = fit(Some(sigma));
    let pw = noisy.per_point.unwrap();
    for i in [0usize, 17, 123] {
        let r: Vec<f64> = g.lengths(i).take(20).collect();
        let rk = r[19];
        let upper = rk + 100.0 * sigma;
        let steps = 400_000;
        let h = upper / steps as f64;
        let mut sum = 0.0;
        for &rj in &r[..19] {
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for s in 0..steps {
                let x = (s as f64 + 0.5) * h;
                let w = (-0.5 * ((x - rj) / sigma).powi(2)).exp();
                num += w * (rk / x).ln();
                den += w;
            }
            sum += num / den;
        }
        close(pw[i], 19.0 / sum, 1e-7, "noisy MLE at a point");
    }
    let plain = fit(None).estimate.value;
    let tiny = fit(Some(1e-6)).estimate.value;
    close(tiny, plain, 1e-6, "σ → 0");
    assert!(
        noisy.estimate.value < plain,
        "noise lowers the estimate here"
    );
}

#[test]
fn danco_reads_a_calibration_handed_in_whole() {
    // The search stops early only among simulated dimensions: a table handed in for 1..20 is read to the
    // end, even where the divergence past the minimum would let the simulation stop (here after d = 7).
    use repscope::intrinsic::danco::{statistics, DancoStats};
    let mut rng = Rng::new(4);
    let m = Matrix::from_vec(300, 6, gaussian_block(&mut rng, 300, 2, 6, 0.0), "plane").unwrap();
    let g = exact_knn(&m, 11, Metric::Euclidean, None).unwrap();
    let own = statistics(&m, &g, 10, 6).unwrap();
    let table: Vec<DancoStats> = (1..=20)
        .map(|d| DancoStats {
            dhat: d as f64,
            ..own
        })
        .collect();
    let e = Method::Danco {
        k: 10,
        max_dim: Some(20),
        fractal: false,
        seed: 0,
        calibration: Some(table),
        table: false,
    }
    .fit(&m, Metric::Euclidean, Some(&g), None)
    .unwrap()
    .estimate;
    assert_eq!(e.params["calibrated_dims"], 20);
    assert_eq!(e.value, 2.0);
}
