//! Accuracy against known ground truth: the 24 benchmark manifolds of known intrinsic dimension, and the
//! invariance of every estimate to duplicated rows.
use repscope::datasets::manifolds::{generate, info, MANIFOLDS};
use repscope::intrinsic::suite::{self, IdConfig, IdReport};
use repscope::progress::Silent;
use repscope::rng::Rng;
use repscope::{Dataset, Matrix};

fn manifold(name: &str, n: usize, seed: u64) -> Matrix {
    let m = info(name).unwrap();
    Matrix::from_vec(n, m.ambient_dim, generate(name, n, seed).unwrap(), name).unwrap()
}

fn run(m: Matrix, scale: bool) -> IdReport {
    let cfg = IdConfig {
        scale_curve: scale,
        ..IdConfig::default()
    };
    suite::run(&Dataset::new(m).unwrap(), &cfg, &Silent).unwrap()
}

fn mean_relative_error(seed: u64) -> f64 {
    let mut total = 0.0;
    for m in MANIFOLDS {
        let r = run(manifold(m.name, 2500, seed), false);
        let d = r.dimension.expect("a recommended dimension");
        assert!(
            d.value.is_finite() && d.value > 0.0,
            "{}: {}",
            m.name,
            d.value
        );
        total += (d.value - m.id as f64).abs() / m.id as f64;
    }
    total / MANIFOLDS.len() as f64
}

/// The bar is 0.12 (scikit-dimension's best estimator scores 0.118); the recommended estimate
/// reaches 0.06–0.075 on seeds 0–2, so 0.10 leaves room for sampling noise without hiding a regression.
#[test]
fn recommended_estimate_is_accurate_on_the_benchmark_manifolds() {
    for seed in [0, 7] {
        let err = mean_relative_error(seed);
        assert!(
            err <= 0.10,
            "seed {seed}: mean relative error {err:.4} > 0.10"
        );
    }
}

fn with_duplicates(m: &Matrix, fraction: f64, seed: u64) -> Matrix {
    let n = m.rows();
    let extra = ((n as f64) * fraction).round() as usize;
    let mut rng = Rng::new(seed);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.extend((0..extra).map(|_| rng.below(n as u64) as usize));
    m.select_rows(&idx)
}

#[test]
fn duplicated_rows_move_no_estimate_by_two_percent() {
    for name in [
        "M1_Sphere",
        "M7_Roll",
        "M10b_Cubic",
        "Mbeta",
        "Mp2_Paraboloid",
    ] {
        let base = manifold(name, 2000, 3);
        let clean = run(base.clone(), true);
        for fraction in [0.01, 0.15] {
            let dup = with_duplicates(&base, fraction, 11);
            let r = run(dup, true);
            assert_eq!(r.duplicates_merged, (2000.0 * fraction) as usize, "{name}");
            for (a, b) in clean.estimates.iter().zip(&r.estimates) {
                assert_eq!(a.estimator, b.estimator);
                assert!(
                    b.value.is_finite() && b.value > 0.0,
                    "{name} {}: {}",
                    b.estimator,
                    b.value
                );
                let rel = (a.value - b.value).abs() / a.value;
                assert!(
                    rel < 0.02,
                    "{name} {} moved {rel:.4} with {fraction} duplicates",
                    b.estimator
                );
            }
            let (da, db) = (
                clean.dimension.as_ref().unwrap(),
                r.dimension.as_ref().unwrap(),
            );
            assert!(
                (da.value - db.value).abs() / da.value < 0.02,
                "{name}: recommended moved"
            );
        }
    }
}

#[test]
fn quantised_data_with_ties_gives_finite_positive_estimates() {
    // Points on a coarse grid: many exact ties among neighbour distances and many duplicate rows.
    let mut rng = Rng::new(9);
    let n = 3000;
    let d = 3;
    let v: Vec<f32> = (0..n * d)
        .map(|_| (rng.uniform() * 12.0).floor() as f32)
        .collect();
    let r = run(Matrix::from_vec(n, d, v, "grid").unwrap(), true);
    assert!(r.duplicates_merged > 0);
    for e in &r.estimates {
        assert!(
            e.value.is_finite() && e.value > 0.0,
            "{}: {}",
            e.estimator,
            e.value
        );
    }
    // Every r1 = r2 on a full lattice: TwoNN has no signal and says so instead of returning 0 or inf.
    assert!(
        r.notes.iter().any(|n| n.contains("twonn not computed")),
        "{:?}",
        r.notes
    );
    let d = r
        .dimension
        .expect("a recommended value from a larger scale");
    assert!(
        d.value.is_finite() && d.value > 1.5 && d.value < 4.5,
        "{d:?}"
    );
}

/// On unit-norm rows the cosine metric is the euclidean one in disguise (the chord √(2(1 − cos)) is the
/// euclidean distance), so every estimator, the scale curve and per-point LID must agree to 1e-9. Reading
/// 1 − cos directly, a squared length, halved every dimension.
#[test]
fn cosine_and_euclidean_agree_on_unit_rows() {
    use repscope::intrinsic::lid::Lid;
    use repscope::intrinsic::suite::ScalePoint;
    use repscope::neighbors::{exact_knn, Metric};
    // Unit rows in f64 (an f32 row is unit only to about 1e-7, which would be the disagreement measured).
    let m = manifold("M1_Sphere", 2000, 4);
    let d = m.cols();
    let mut v: Vec<f64> = m.as_slice().iter().map(|&x| x as f64).collect();
    for row in v.chunks_exact_mut(d) {
        let n = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        row.iter_mut().for_each(|x| *x /= n);
    }
    let unit = Matrix::from_f64(2000, d, v, "unit").unwrap();
    let ds = Dataset::new(unit.clone()).unwrap();
    let run = |metric| {
        let cfg = IdConfig {
            metric,
            ..IdConfig::default()
        };
        suite::run(&ds, &cfg, &Silent).unwrap()
    };
    let (e, c) = (run(Metric::Euclidean), run(Metric::Cosine));
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);
    assert_eq!(e.estimates.len(), c.estimates.len());
    for (a, b) in e.estimates.iter().zip(&c.estimates) {
        assert_eq!(a.estimator, b.estimator);
        assert!(
            close(a.value, b.value),
            "{}: {} vs {}",
            a.estimator,
            a.value,
            b.value
        );
    }
    assert!(e
        .estimates
        .iter()
        .any(|x| x.estimator == "twonn" && x.value > 1.5));
    assert_eq!(e.scale_curve.len(), c.scale_curve.len());
    for (a, b) in e.scale_curve.iter().zip(&c.scale_curve) {
        let (x, y) = match (a, b) {
            (ScalePoint::Gride(a), ScalePoint::Gride(b)) => (a.d, b.d),
            (ScalePoint::Decimation(a), ScalePoint::Decimation(b)) => (a.d, b.d),
            _ => panic!("scale curves differ in shape"),
        };
        assert!(close(x, y), "scale curve: {x} vs {y}");
    }
    let lid = Lid { k: 20 };
    let le = lid
        .per_point(&exact_knn(&unit, 20, Metric::Euclidean, None).unwrap())
        .unwrap();
    let lc = lid
        .per_point(&exact_knn(&unit, 20, Metric::Cosine, None).unwrap())
        .unwrap();
    for (i, (a, b)) in le.iter().zip(&lc).enumerate() {
        assert!(close(a.unwrap(), b.unwrap()), "LID row {i}: {a:?} vs {b:?}");
    }
}
