//! Intrinsic-dimension estimators against the oracle values (float64 reference definitions, cross-checked
//! against skdim and DADApy), on the exact input rows stored in tests/fixtures/oracles.
use std::path::PathBuf;

use repscope::data::load_matrix;
use repscope::intrinsic::gride::{multiscale, Gride};
use repscope::intrinsic::lid::Lid;
use repscope::intrinsic::mle::{Aggregation, Mle};
use repscope::intrinsic::pca::{PcaRule, Spectrum};
use repscope::intrinsic::twonn::{self, TwoNN, TwoNNFit};
use repscope::neighbors::{exact_knn, Metric};
use repscope::Dataset;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/oracles"
    ))
}

fn oracle() -> Value {
    let text = std::fs::read_to_string(fixtures().join("oracle.json")).expect("oracle fixture");
    serde_json::from_str(&text).expect("oracle json")
}

/// Relative closeness; the distances are exact f64 of f32 inputs, so agreement is near machine precision.
fn close(got: f64, want: f64, rel: f64, what: &str) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        err <= rel,
        "{what}: got {got}, oracle {want}, relative error {err:e} > {rel:e}"
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// (case id, values of the intrinsic-dimension part, input file).
fn id_cases() -> Vec<(String, Value, PathBuf)> {
    let o = oracle();
    let mut out = Vec::new();
    for c in o["cases"].as_array().unwrap() {
        let (vals, input) = match c["kind"].as_str().unwrap() {
            "intrinsic_dimension" => (
                c["values"].clone(),
                c["input"]["local_copy"].as_str().unwrap().to_string(),
            ),
            "spectrum_and_classes" => (
                c["values"]["intrinsic_dimension"].clone(),
                c["input"]["local_copy"]["x"].as_str().unwrap().to_string(),
            ),
            _ => continue,
        };
        out.push((
            c["id"].as_str().unwrap().to_string(),
            vals,
            fixtures().join(input),
        ));
    }
    assert!(
        out.len() >= 6,
        "expected the 5 manifold cases and the sentence case"
    );
    out
}

const TOL: f64 = 1e-9;

#[test]
fn every_intrinsic_dimension_oracle_value_matches() {
    for (id, v, path) in id_cases() {
        let m = load_matrix(&path, None).unwrap();
        let ds = Dataset::new(m).unwrap();
        assert_eq!(
            ds.original().rows() as u64,
            v["n_rows"].as_u64().unwrap(),
            "{id}"
        );
        assert_eq!(
            ds.dedup.n_distinct() as u64,
            v["n_distinct"].as_u64().unwrap(),
            "{id}"
        );
        assert_eq!(
            ds.dedup.merged as u64,
            v["n_merged_duplicates"].as_u64().unwrap(),
            "{id}"
        );
        let g = exact_knn(ds.distinct(), 64, Metric::Euclidean, None).unwrap();

        // TwoNN: linear, censored MLE, full MLE, and the per-point ratios.
        let t = &v["twonn"];
        let lin = TwoNN::default().fit(&g).unwrap();
        close(
            lin.value,
            f(&t["linear"]),
            TOL,
            &format!("{id} twonn linear"),
        );
        assert_eq!(lin.params["n_kept"], t["n_kept"], "{id}");
        let cens = TwoNN::default().fit_method(TwoNNFit::Mle).fit(&g).unwrap();
        close(
            cens.value,
            f(&t["mle_censored"]),
            TOL,
            &format!("{id} twonn censored mle"),
        );
        let (mu, ties) = twonn::mu(&g).unwrap();
        assert_eq!(ties as u64, t["n_ties_mu_eq_1"].as_u64().unwrap());
        close(
            twonn::mle_full(&mu),
            f(&t["mle_full"]),
            TOL,
            &format!("{id} twonn full mle"),
        );
        let mu_o = &t["mu_per_distinct_row"];
        for (i, want) in mu_o["first20"].as_array().unwrap().iter().enumerate() {
            close(mu[i], f(want), TOL, &format!("{id} mu[{i}]"));
        }
        let s = repscope::intrinsic::Summary::of(&mu);
        close(s.mean, f(&mu_o["mean"]), TOL, &format!("{id} mu mean"));
        close(
            s.median,
            f(&mu_o["median"]),
            TOL,
            &format!("{id} mu median"),
        );
        close(s.max, f(&mu_o["max"]), TOL, &format!("{id} mu max"));

        // Levina–Bickel, both aggregations and per point.
        let l = &v["mle_levina_bickel"];
        close(
            Mle::default().fit(&g).unwrap().value,
            f(&l["mackay_ghahramani"]),
            TOL,
            &format!("{id} mle MG"),
        );
        let am = Mle::default()
            .aggregation(Aggregation::ArithmeticMean)
            .fit(&g)
            .unwrap();
        close(
            am.value,
            f(&l["arithmetic_mean_of_m_i"]),
            TOL,
            &format!("{id} mle arithmetic"),
        );
        let pp = Mle::default().per_point(&g).unwrap();
        for (i, want) in l["per_point_m_i_distinct_rows"]["first20"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            close(pp[i], f(want), TOL, &format!("{id} m_i[{i}]"));
        }

        // GRIDE at (1, 2) and the multiscale curve.
        let gr = &v["gride"];
        let p = Gride::default().fit_point(&g).unwrap();
        close(p.d, f(&gr["d"]), TOL, &format!("{id} gride d"));
        close(p.se, f(&gr["se"]), TOL, &format!("{id} gride se"));
        assert_eq!(p.n_used as u64, gr["n_used"].as_u64().unwrap());
        let curve = multiscale(&g, 64).unwrap();
        let want_curve = v["gride_multiscale"].as_array().unwrap();
        assert_eq!(curve.len(), want_curve.len(), "{id} multiscale length");
        for (c, w) in curve.iter().zip(want_curve) {
            let tag = format!("{id} gride ({}, {})", c.n1, c.n2);
            assert_eq!(c.n1 as u64, w["n1"].as_u64().unwrap(), "{tag}");
            close(c.d, f(&w["d"]), TOL, &format!("{tag} d"));
            close(c.se, f(&w["se"]), TOL, &format!("{tag} se"));
            close(
                c.mean_r_n1,
                f(&w["mean_r_n1"]),
                TOL,
                &format!("{tag} mean r_n1"),
            );
            close(
                c.mean_r_n2,
                f(&w["mean_r_n2"]),
                TOL,
                &format!("{tag} mean r_n2"),
            );
        }

        // PCA rules (all rows; these cases have no duplicates).
        let pc = &v["pca"];
        let sp = Spectrum::of(ds.original()).unwrap();
        assert_eq!(
            sp.dimension(PcaRule::ExplainedVariance(0.95)),
            f(&pc["explained_variance"]),
            "{id} pca ev"
        );
        assert_eq!(
            sp.dimension(PcaRule::FukunagaOlsen(0.05)),
            f(&pc["fukunaga_olsen"]),
            "{id} pca fo"
        );
        close(
            sp.dimension(PcaRule::ParticipationRatio),
            f(&pc["participation_ratio"]),
            1e-9,
            &format!("{id} pr"),
        );
        let lmax = sp.eigenvalues[0];
        for (i, w) in pc["eigenvalues_cov_n_minus_1"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let err = (sp.eigenvalues[i] - f(w)).abs() / lmax;
            assert!(
                err < 1e-10,
                "{id} eigenvalue {i}: {} vs {} ({err:e})",
                sp.eigenvalues[i],
                f(w)
            );
        }

        // Per-point LID, one value per input row.
        let lo = &v["lid_mle"];
        let lid = Lid { k: 20 }.per_point(&g).unwrap();
        let per_row: Vec<f64> = ds
            .dedup
            .representative
            .iter()
            .map(|&r| lid[r as usize].unwrap())
            .collect();
        assert_eq!(per_row.len() as u64, lo["n"].as_u64().unwrap());
        for (i, want) in lo["first20"].as_array().unwrap().iter().enumerate() {
            close(per_row[i], f(want), TOL, &format!("{id} lid[{i}]"));
        }
        let s = repscope::intrinsic::Summary::of(&per_row);
        close(s.mean, f(&lo["mean"]), TOL, &format!("{id} lid mean"));
        close(s.median, f(&lo["median"]), TOL, &format!("{id} lid median"));
        close(s.min, f(&lo["min"]), TOL, &format!("{id} lid min"));
    }
}
