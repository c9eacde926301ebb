//! The `spectrum`, `classes`, `compare` and `layers` commands run as a user runs them: JSON shape, values
//! against the oracle fixtures, sanity properties, and bad input (exit code 2 with a message that names the
//! problem).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use repscope::data::npy;
use repscope::data::npz::{self, NpzArray};
use repscope::rng::Rng;
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_repscope"))
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/oracles/"
    ))
    .join(rel)
}

fn oracle() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("oracle.json")).unwrap()).unwrap()
}

fn case(id: &str) -> Value {
    oracle()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone()
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("repscope-cli-sim-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gauss(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n * d).map(|_| r.normal() as f32).collect()
}

fn write(path: &Path, n: usize, d: usize, v: &[f32]) {
    npy::write(path, &[n, d], v).unwrap();
}

fn run(args: &[&str]) -> Output {
    bin().args(args).arg("--quiet").output().unwrap()
}

fn json_of(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("stdout is exactly one JSON object")
}

fn fails_with(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks '{n}': {err}");
    }
    assert!(o.stdout.is_empty(), "nothing on stdout when failing");
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn compare_json_matches_the_oracle_with_the_documented_names() {
    let c = case("sim/layer1_layer4");
    let x = fixture(c["input"]["local_copy"]["x"].as_str().unwrap());
    let y = fixture(c["input"]["local_copy"]["y"].as_str().unwrap());
    let o = run(&[
        "compare",
        x.to_str().unwrap(),
        y.to_str().unwrap(),
        "--json",
    ]);
    let v = json_of(&o);
    let v0 = &c["values"];
    assert_eq!(v["n"], 500);
    let m = &v["measures"];
    for (name, want) in [
        ("cka_linear", &v0["linear_cka_biased"]),
        ("cka_linear_debiased", &v0["linear_cka_debiased"]),
        ("cka_rbf", &v0["rbf_cka_biased"]),
        ("cca_mean_rho", &v0["cca"]["mean_rho"]),
        ("cca_r2", &v0["cca"]["r2_sum_rho2_over_min_d"]),
        ("svcca", &v0["svcca_99"]["value_mean_rho"]),
        ("procrustes_angular", &v0["procrustes"]["angular"]),
        ("procrustes_euclidean", &v0["procrustes"]["euclidean"]),
        ("rsa_spearman", &v0["rsa_spearman"]),
        ("mutual_knn", &v0["mutual_knn"]["mean_overlap"]),
        ("knn_jaccard", &v0["mutual_knn"]["mean_jaccard"]),
        (
            "relative_cos",
            &v0["relative_representation"]["mean_cos_all_rows"],
        ),
    ] {
        let ours = m[name]
            .as_f64()
            .unwrap_or_else(|| panic!("measures.{name} missing"));
        assert!(
            rel(ours, want.as_f64().unwrap()) < 1e-6,
            "{name}: {ours} vs {want}"
        );
    }
    // PWCCA is present but flagged: the oracle marks it not well posed here.
    assert!(m["pwcca"].is_number());
    assert!(m["cknna"].is_number());
    assert_eq!(v["details"]["pwcca"]["well_posed"], false);
    // n ≤ d for CCA: a warning in the output, not a silent near-1 number.
    let w = v["warnings"].as_array().unwrap();
    assert!(
        w.iter().any(|s| s.as_str().unwrap().contains("exactly 1")),
        "{w:?}"
    );
    assert!(v["params"].is_object());
    // Both CKA routes are reachable from the command line and agree.
    for route in ["feature", "gram"] {
        let o = run(&[
            "compare",
            x.to_str().unwrap(),
            y.to_str().unwrap(),
            "--json",
            "-m",
            "cka",
            "--cka-route",
            route,
        ]);
        let v = json_of(&o);
        assert_eq!(v["details"]["cka_linear"]["route"], route);
        let d = v["measures"]["cka_linear_debiased"].as_f64().unwrap();
        assert!(rel(d, v0["linear_cka_debiased"].as_f64().unwrap()) < 1e-12);
    }
    // The human table names the measures.
    let o = run(&[
        "compare",
        x.to_str().unwrap(),
        y.to_str().unwrap(),
        "-m",
        "cka",
        "-m",
        "mutual_knn",
    ]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("cka_linear_debiased") && text.contains("mutual_knn"),
        "{text}"
    );
}

#[test]
fn compare_sanity_rotation_scaling_self_and_independent() {
    let t = TempDir::new("sanity");
    let (n, d) = (400, 24);
    let x = gauss(n, d, 1);
    // Orthogonal Q by Gram–Schmidt of a Gaussian matrix, in f64.
    let g: Vec<f64> = gauss(d, d, 2).iter().map(|&v| v as f64).collect();
    let mut q = vec![0.0f64; d * d]; // columns q_j stored at q[j*d..]
    for j in 0..d {
        let mut v: Vec<f64> = (0..d).map(|i| g[i * d + j]).collect();
        for k in 0..j {
            let dot: f64 = (0..d).map(|i| v[i] * q[k * d + i]).sum();
            for i in 0..d {
                v[i] -= dot * q[k * d + i];
            }
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        for i in 0..d {
            q[j * d + i] = v[i] / norm;
        }
    }
    let xq: Vec<f32> = (0..n * d)
        .map(|t| {
            let (i, j) = (t / d, t % d);
            (0..d)
                .map(|k| x[i * d + k] as f64 * q[j * d + k])
                .sum::<f64>() as f32
        })
        .collect();
    let xs: Vec<f32> = x.iter().map(|v| v * 2.5).collect();
    write(&t.path("x.npy"), n, d, &x);
    write(&t.path("xq.npy"), n, d, &xq);
    write(&t.path("xs.npy"), n, d, &xs);
    let p = |s: &str| t.path(s).to_str().unwrap().to_string();
    let v = json_of(&run(&[
        "compare",
        &p("x.npy"),
        &p("xq.npy"),
        "--json",
        "-m",
        "cka,procrustes",
    ]));
    for name in ["cka_linear", "cka_linear_debiased"] {
        let c = v["measures"][name].as_f64().unwrap();
        assert!((c - 1.0).abs() < 1e-6, "CKA(X, XQ) {name} = {c}");
    }
    assert!(v["measures"]["procrustes_angular"].as_f64().unwrap() < 1e-3);
    let v = json_of(&run(&[
        "compare",
        &p("x.npy"),
        &p("xs.npy"),
        "--json",
        "-m",
        "cka",
        "cka_rbf",
    ]));
    for name in ["cka_linear", "cka_linear_debiased", "cka_rbf"] {
        let c = v["measures"][name].as_f64().unwrap();
        assert!((c - 1.0).abs() < 1e-9, "CKA(X, 2.5X) {name} = {c}");
    }
    let v = json_of(&run(&[
        "compare",
        &p("x.npy"),
        &p("x.npy"),
        "--json",
        "-m",
        "knn",
        "cknna",
    ]));
    assert_eq!(v["measures"]["mutual_knn"].as_f64(), Some(1.0));
    assert_eq!(v["measures"]["knn_jaccard"].as_f64(), Some(1.0));
    assert!((v["measures"]["cknna"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    // Independent Gaussians, 100 × 1000: debiased near 0, biased not.
    write(&t.path("g1.npy"), 100, 1000, &gauss(100, 1000, 11));
    write(&t.path("g2.npy"), 100, 1000, &gauss(100, 1000, 12));
    let v = json_of(&run(&[
        "compare",
        &p("g1.npy"),
        &p("g2.npy"),
        "--json",
        "-m",
        "cka",
    ]));
    let deb = v["measures"]["cka_linear_debiased"].as_f64().unwrap();
    let bia = v["measures"]["cka_linear"].as_f64().unwrap();
    assert!(deb.abs() < 0.05, "debiased {deb}");
    assert!(bia > 0.5, "biased {bia}");
    assert_eq!(v["details"]["cka_linear"]["route"], "gram");
}

#[test]
fn compare_bad_input_exits_2() {
    let t = TempDir::new("bad");
    let p = |s: &str| t.path(s).to_str().unwrap().to_string();
    write(&t.path("a.npy"), 10, 3, &gauss(10, 3, 1));
    write(&t.path("b.npy"), 12, 3, &gauss(12, 3, 2));
    fails_with(
        &run(&["compare", &p("a.npy"), &p("b.npy")]),
        &["10 and 12 rows"],
    );
    write(&t.path("s1.npy"), 3, 2, &gauss(3, 2, 1));
    write(&t.path("s2.npy"), 3, 2, &gauss(3, 2, 2));
    fails_with(
        &run(&[
            "compare",
            &p("s1.npy"),
            &p("s2.npy"),
            "-m",
            "cka_linear_debiased",
        ]),
        &["at least 4 rows"],
    );
    let mut bad = gauss(10, 3, 3);
    bad[7] = f32::NAN;
    write(&t.path("nan.npy"), 10, 3, &bad);
    fails_with(
        &run(&["compare", &p("a.npy"), &p("nan.npy")]),
        &["non-finite", "row 2"],
    );
    fails_with(
        &run(&["compare", &p("a.npy"), &p("a.npy"), "-m", "nonsense"]),
        &["unknown measure"],
    );
    npy::write(&t.path("l.npy"), &[9], &[0i32, 1, 0, 1, 0, 1, 0, 1, 0]).unwrap();
    fails_with(
        &run(&["compare", &p("a.npy"), &p("a.npy"), "--labels", &p("l.npy")]),
        &["9 labels for 10 rows"],
    );
    // CCA with n ≤ d: a warning, not an error.
    write(&t.path("w1.npy"), 20, 30, &gauss(20, 30, 4));
    write(&t.path("w2.npy"), 20, 30, &gauss(20, 30, 5));
    let v = json_of(&run(&[
        "compare",
        &p("w1.npy"),
        &p("w2.npy"),
        "--json",
        "-m",
        "cca",
    ]));
    assert!(v["details"]["cca"]["n_trivial_rho_eq_1"].as_u64().unwrap() > 0);
    assert!(!v["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn spectrum_and_classes_json_match_the_oracle() {
    let c = case("classes/minilm_sentences_0_2000");
    let x = fixture(c["input"]["local_copy"]["x"].as_str().unwrap());
    let l = fixture(c["input"]["local_copy"]["labels"].as_str().unwrap());
    let v = json_of(&run(&[
        "spectrum",
        x.to_str().unwrap(),
        "--coding-rate",
        "--json",
    ]));
    let s = &c["values"]["spectrum"];
    assert!(
        rel(
            v["effective_rank"]["value"].as_f64().unwrap(),
            s["effective_rank_centred"].as_f64().unwrap()
        ) < 1e-6
    );
    assert_eq!(v["effective_rank"]["centred"], true);
    assert!(
        rel(
            v["rankme"]["value"].as_f64().unwrap(),
            s["effective_rank_uncentred"].as_f64().unwrap()
        ) < 1e-6
    );
    assert_eq!(v["rankme"]["centred"], false);
    assert!(
        rel(
            v["alpha_req"]["alpha"].as_f64().unwrap(),
            s["alpha_req"]["alpha"].as_f64().unwrap()
        ) < 1e-6
    );
    assert!(
        rel(
            v["coding_rate"]["value"].as_f64().unwrap(),
            s["coding_rate"].as_f64().unwrap()
        ) < 1e-6
    );
    assert!(
        rel(
            v["anisotropy"].as_f64().unwrap(),
            s["anisotropy"].as_f64().unwrap()
        ) < 1e-6
    );
    assert_eq!(v["rogue_dimensions"][0]["dim"], 256);
    let v = json_of(&run(&[
        "classes",
        x.to_str().unwrap(),
        "--labels",
        l.to_str().unwrap(),
        "--json",
    ]));
    let o = &c["values"]["classes"];
    let nc = &o["neural_collapse_unweighted_global_mean"];
    assert!(
        rel(
            v["neural_collapse"]["nc1"].as_f64().unwrap(),
            nc["nc1"].as_f64().unwrap()
        ) < 1e-6
    );
    assert!(
        rel(
            v["cdnv"].as_f64().unwrap(),
            o["cdnv_mean_over_pairs"].as_f64().unwrap()
        ) < 1e-6
    );
    assert_eq!(v["ncc_accuracy"].as_f64(), o["ncc_accuracy"].as_f64());
    assert_eq!(
        v["knn_accuracy"]["accuracy"].as_f64(),
        o["knn_loo_accuracy"]["tie_break_nearest_among_tied"].as_f64()
    );
    assert_eq!(v["class_counts"], o["class_counts"]);
    assert!(v["nc3"].is_null());
}

#[test]
fn classes_with_string_labels_a_classifier_and_bad_input() {
    let t = TempDir::new("classes");
    let p = |s: &str| t.path(s).to_str().unwrap().to_string();
    // Three well separated classes in 4-D.
    let (n, d, c) = (60, 4, 3);
    let mut r = Rng::new(7);
    let mut x = Vec::new();
    let mut names = String::new();
    for i in 0..n {
        let k = i % c;
        for j in 0..d {
            x.push(if j == k { 5.0 } else { 0.0 } + 0.1 * r.normal() as f32);
        }
        names.push_str(["cat", "dog", "emu"][k]);
        names.push('\n');
    }
    write(&t.path("x.npy"), n, d, &x);
    std::fs::write(t.path("labels.txt"), &names).unwrap();
    // The simplex the centred class means form: e_k − (1/C)·(1, 1, 1, 0).
    let w: Vec<f32> = (0..c * d)
        .map(|t| {
            let on = if t / d == t % d { 1.0 } else { 0.0 };
            on - if t % d < c { 1.0 / c as f32 } else { 0.0 }
        })
        .collect();
    write(&t.path("w.npy"), c, d, &w);
    npy::write(&t.path("b.npy"), &[c], &[0.0f32, 0.0, 0.0]).unwrap();
    let v = json_of(&run(&[
        "classes",
        &p("x.npy"),
        "--labels",
        &p("labels.txt"),
        "--classifier",
        &p("w.npy"),
        "--bias",
        &p("b.npy"),
        "--json",
    ]));
    assert_eq!(v["class_names"], serde_json::json!(["cat", "dog", "emu"]));
    assert_eq!(v["ncc_accuracy"].as_f64(), Some(1.0));
    assert_eq!(v["nc4"].as_f64(), Some(0.0));
    assert!(v["nc3"].as_f64().unwrap() < 0.01, "{}", v["nc3"]);
    assert!(v["neural_collapse"]["nc1"].as_f64().unwrap() < 0.01);
    // Bad input.
    std::fs::write(t.path("short.txt"), "a\nb\n").unwrap();
    fails_with(
        &run(&["classes", &p("x.npy"), "--labels", &p("short.txt")]),
        &["2 labels for 60 rows"],
    );
    std::fs::write(t.path("one.txt"), "a\n".repeat(n)).unwrap();
    fails_with(
        &run(&["classes", &p("x.npy"), "--labels", &p("one.txt")]),
        &["same label", "at least two classes"],
    );
    write(&t.path("wt.npy"), d, c, &w);
    fails_with(
        &run(&[
            "classes",
            &p("x.npy"),
            "--labels",
            &p("labels.txt"),
            "--classifier",
            &p("wt.npy"),
        ]),
        &["transposed"],
    );
    npy::write(&t.path("b2.npy"), &[2], &[0.0f32, 0.0]).unwrap();
    fails_with(
        &run(&[
            "classes",
            &p("x.npy"),
            "--labels",
            &p("labels.txt"),
            "--classifier",
            &p("w.npy"),
            "--bias",
            &p("b2.npy"),
        ]),
        &["bias has 2 values", "3 classes"],
    );
    let mut bad = x.clone();
    bad[5] = f32::INFINITY;
    write(&t.path("inf.npy"), n, d, &bad);
    fails_with(
        &run(&["classes", &p("inf.npy"), "--labels", &p("labels.txt")]),
        &["non-finite"],
    );
}

#[test]
fn layers_gives_symmetric_matrices_with_unit_diagonals() {
    let t = TempDir::new("layers");
    let n = 300;
    let base = gauss(n, 16, 1);
    let noisy = |s: u64, w: f32, d: usize| -> Vec<f32> {
        let e = gauss(n, d, s);
        (0..n * d)
            .map(|i| base[(i / d) * 16 + (i % d) % 16] + w * e[i])
            .collect()
    };
    let (l0, l1, l2) = (noisy(2, 0.1, 16), noisy(3, 0.5, 32), noisy(4, 1.0, 8));
    let ids: Vec<i64> = (0..n as i64).collect();
    let (s0, s1, s2, si) = ([n, 16], [n, 32], [n, 8], [n]);
    let arrays = vec![
        ("l0", NpzArray::F32(&s0, &l0)),
        ("l1", NpzArray::F32(&s1, &l1)),
        ("ids", NpzArray::I64(&si, &ids)),
        ("l2", NpzArray::F32(&s2, &l2)),
    ];
    npz::write(&t.path("layers.npz"), &arrays).unwrap();
    let v = json_of(&run(&[
        "layers",
        t.path("layers.npz").to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        v["keys"],
        serde_json::json!(["l0", "l1", "l2"]),
        "1-D arrays are skipped"
    );
    for key in ["cka_linear_debiased", "mutual_knn"] {
        let m = v[key].as_array().unwrap();
        assert_eq!(m.len(), 3);
        for (i, row) in m.iter().enumerate() {
            assert_eq!(row[i].as_f64(), Some(1.0));
            for (j, v) in row.as_array().unwrap().iter().enumerate() {
                assert_eq!(*v, m[j][i], "{key} symmetric");
            }
        }
    }
    let layers = v["layers"].as_array().unwrap();
    assert!(layers
        .iter()
        .all(|l| l["id"]["value"].as_f64().unwrap() > 0.0));
    assert!(layers
        .iter()
        .all(|l| l["spectrum"]["effective_rank"].as_f64().unwrap() > 1.0));
    // --keys picks and orders layers.
    let v = json_of(&run(&[
        "layers",
        t.path("layers.npz").to_str().unwrap(),
        "--keys",
        "l2,l0",
        "--json",
    ]));
    assert_eq!(v["keys"], serde_json::json!(["l2", "l0"]));
    // The table prints both matrices.
    let o = run(&["layers", t.path("layers.npz").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("linear CKA (debiased)") && text.contains("mutual kNN"),
        "{text}"
    );
    // Layers with different row counts: exit 2.
    let (ga, gb) = (gauss(n, 4, 1), gauss(n - 1, 4, 2));
    let (sa, sb) = ([n, 4], [n - 1, 4]);
    let arrays = vec![
        ("a", NpzArray::F32(&sa, &ga)),
        ("b", NpzArray::F32(&sb, &gb)),
    ];
    npz::write(&t.path("bad.npz"), &arrays).unwrap();
    fails_with(
        &run(&["layers", t.path("bad.npz").to_str().unwrap()]),
        &["rows"],
    );
}

#[test]
fn compare_all_without_labels_skips_stitching_with_a_note() {
    let t = TempDir::new("all-no-labels");
    let (a, b) = (t.path("a.npy"), t.path("b.npy"));
    write(&a, 300, 6, &gauss(300, 6, 1));
    write(&b, 300, 5, &gauss(300, 5, 2));
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    let doc = json_of(&run(&["compare", sa, sb, "-m", "all", "--json"]));
    assert!(doc["measures"].get("stitching_accuracy").is_none(), "{doc}");
    assert!(doc["measures"]["cka_linear"].is_number());
    assert!(doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("stitching_accuracy skipped")));
    // Asked for by name, it still needs labels.
    fails_with(
        &run(&["compare", sa, sb, "-m", "stitching_accuracy"]),
        &["stitching_accuracy needs labels", "--labels"],
    );
}
