//! The CLI end to end: JSON shape, agreement with the oracle values, every input format, and outputs.
mod common;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/oracles"
    ))
    .join(rel)
}

fn oracle_case(id: &str) -> Value {
    let o: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("oracle.json")).unwrap()).unwrap();
    o["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone()
}

fn estimate(doc: &Value, name: &str) -> f64 {
    doc["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["estimator"] == name)
        .unwrap()["value"]
        .as_f64()
        .unwrap()
}

fn read_npz_member(path: &Path, name: &str) -> (Vec<usize>, Vec<u8>) {
    let mut ar = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut f = ar.by_name(&format!("{name}.npy")).unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    let h = repscope::data::npy::parse_header(&buf, path).unwrap();
    (h.shape.clone(), buf[h.data_offset..].to_vec())
}

#[test]
fn id_json_has_the_documented_shape_and_the_oracle_values() {
    let input = fixture("inputs/manifolds_M1_Sphere_0_1000.npy");
    let r = repscope(&["id", input.to_str().unwrap(), "--json", "--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.is_empty(),
        "--quiet leaves stderr empty: {}",
        r.stderr
    );
    let doc = json(&r);
    for key in [
        "input",
        "n",
        "d",
        "duplicates_merged",
        "dimension",
        "estimates",
        "scale_curve",
        "params",
    ] {
        assert!(doc.get(key).is_some(), "missing {key}");
    }
    assert_eq!(doc["n"], 1000);
    assert_eq!(doc["d"], 11);
    assert_eq!(doc["duplicates_merged"], 0);
    assert_eq!(doc["dimension"]["estimator"], "twonn_calibrated");
    assert!(doc["dimension"]["why"].as_str().unwrap().len() > 20);
    for e in doc["estimates"].as_array().unwrap() {
        for key in ["estimator", "value", "stderr", "params"] {
            assert!(e.get(key).is_some(), "estimate lacks {key}: {e}");
        }
    }
    let v = &oracle_case("id/M1_Sphere")["values"];
    let rel = |a: f64, b: f64| (a - b).abs() / b;
    assert!(
        rel(
            estimate(&doc, "twonn"),
            v["twonn"]["linear"].as_f64().unwrap()
        ) < 1e-9
    );
    assert!(
        rel(
            estimate(&doc, "twonn_mle"),
            v["twonn"]["mle_censored"].as_f64().unwrap()
        ) < 1e-9
    );
    assert!(
        rel(
            estimate(&doc, "mle"),
            v["mle_levina_bickel"]["mackay_ghahramani"]
                .as_f64()
                .unwrap()
        ) < 1e-9
    );
    assert!(rel(estimate(&doc, "gride"), v["gride"]["d"].as_f64().unwrap()) < 1e-9);
    assert_eq!(
        estimate(&doc, "pca_fo"),
        v["pca"]["fukunaga_olsen"].as_f64().unwrap()
    );
    let curve = doc["scale_curve"].as_array().unwrap();
    let gride: Vec<&Value> = curve.iter().filter(|p| p["method"] == "gride").collect();
    assert_eq!(gride.len(), 6);
    for (p, w) in gride.iter().zip(v["gride_multiscale"].as_array().unwrap()) {
        assert!(rel(p["d"].as_f64().unwrap(), w["d"].as_f64().unwrap()) < 1e-9);
    }
    assert!(curve.iter().any(|p| p["method"] == "decimation"));
}

#[test]
fn human_table_names_the_recommended_estimate() {
    let input = fixture("inputs/manifolds_M7_Roll_0_1000.npy");
    let r = repscope(&[
        "id",
        input.to_str().unwrap(),
        "--estimator",
        "twonn",
        "--estimator",
        "mle",
        "--no-scale",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("intrinsic dimension:"));
    assert!(r.stdout.contains("twonn") && r.stdout.contains("mle"));
    assert!(
        !r.stdout.contains("gride"),
        "only the requested estimators are run"
    );
}

#[test]
fn the_second_round_of_peer_estimators_runs_by_name() {
    // DANCo, PH, Hidalgo, k* and the fixed-radius binomial on the 2-dimensional Swiss roll, in one call.
    let input = fixture("inputs/manifolds_M7_Roll_0_1000.npy");
    let r = repscope(&[
        "id",
        input.to_str().unwrap(),
        "--estimator",
        "danco",
        "ph",
        "hidalgo",
        "kstar_gride",
        "kstar_binomial",
        "binomial_rk",
        "knn",
        "--no-scale",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    for name in [
        "danco",
        "ph",
        "hidalgo",
        "kstar_gride",
        "kstar_binomial",
        "binomial_rk",
    ] {
        let v = estimate(&doc, name);
        assert!((1.7..2.4).contains(&v), "{name}: {v}");
    }
    // Carter's kNN graph length at skdim's defaults (samples of 3..6 points) is an integer, and noisy.
    let knn = estimate(&doc, "knn");
    assert!(knn >= 1.0 && knn.fract() == 0.0, "{knn}");
    // Hidalgo reports each manifold's dimension and weight; PH its slope.
    let h = doc["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["estimator"] == "hidalgo")
        .unwrap();
    assert_eq!(h["params"]["dimensions"].as_array().unwrap().len(), 2);
    // A parameter outside its domain is named with the estimator's word for it.
    let bad = repscope(&["id", input.to_str().unwrap(), "--estimator", "nope"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn the_peers_estimators_run_by_name_on_one_graph() {
    let input = fixture("inputs/manifolds_M7_Roll_0_1000.npy");
    let r = repscope(&[
        "id",
        input.to_str().unwrap(),
        "--estimator",
        "mom",
        "tle",
        "corrint",
        "twonn_bayes",
        "pca_kaiser",
        "--no-scale",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = doc["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["estimator"].as_str().unwrap())
        .collect();
    // The canonical order: the default estimators first, then the peers' in their list's order.
    assert_eq!(
        names,
        ["mom", "tle", "corrint", "twonn_bayes", "pca_kaiser"]
    );
    // The Swiss roll is 2-dimensional; the neighbour estimators read about 2.
    for name in ["mom", "tle", "corrint", "twonn_bayes"] {
        let v = estimate(&doc, name);
        assert!((1.7..2.4).contains(&v), "{name}: {v}");
    }
    // One graph of 100 neighbours served them all (MOM's k), certified exact.
    assert_eq!(doc["neighbours"]["exact"], true, "{}", doc["neighbours"]);
    let bayes = doc["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["estimator"] == "twonn_bayes")
        .unwrap();
    let ci = &bayes["params"]["credible_interval"];
    let v = bayes["value"].as_f64().unwrap();
    assert!(ci["low"].as_f64().unwrap() < v && v < ci["high"].as_f64().unwrap());
    assert_eq!(ci["level"], 0.95);
}

#[test]
fn lid_writes_one_value_per_row_matching_the_oracle() {
    let d = scratch("lid");
    let input = fixture("inputs/manifolds_Mbeta_0_1000.npy");
    let out = d.join("lid.npy");
    let r = repscope(&[
        "lid",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let buf = std::fs::read(&out).unwrap();
    let h = repscope::data::npy::parse_header(&buf, &out).unwrap();
    assert_eq!(h.shape, vec![1000]);
    let vals: Vec<f64> = buf[h.data_offset..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want = &oracle_case("id/Mbeta")["values"]["lid_mle"]["first20"];
    for (i, w) in want.as_array().unwrap().iter().enumerate() {
        let w = w.as_f64().unwrap();
        assert!(
            (vals[i] - w).abs() / w < 1e-9,
            "lid[{i}] {} vs {w}",
            vals[i]
        );
    }
}

#[test]
fn knn_output_is_exact_and_maps_duplicates_to_their_representative() {
    let d = scratch("knn");
    let n = 300;
    let dim = 6;
    let mut v = subspace_data(n, dim, 9);
    // Row 299 duplicates row 10.
    let r10: Vec<f32> = v[10 * dim..11 * dim].to_vec();
    v[299 * dim..300 * dim].copy_from_slice(&r10);
    let input = d.join("x.npy");
    write_npy_f32(&input, n, dim, &v);
    let out = d.join("g.npz");
    let r = repscope(&[
        "knn",
        input.to_str().unwrap(),
        "-k",
        "5",
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["duplicates_merged"], 1);
    let (shape, idx_raw) = read_npz_member(&out, "indices");
    assert_eq!(shape, vec![n, 5]);
    let idx: Vec<u32> = idx_raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let (_, dist_raw) = read_npz_member(&out, "distances");
    let dist: Vec<f32> = dist_raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // Brute force over the distinct rows (row 299 excluded, being a copy of row 10).
    for i in [0usize, 10, 150, 298] {
        let mut all: Vec<(f64, u32)> = (0..299)
            .filter(|&j| j != i)
            .map(|j| {
                let s: f64 = (0..dim)
                    .map(|c| (v[i * dim + c] as f64 - v[j * dim + c] as f64).powi(2))
                    .sum();
                (s.sqrt(), j as u32)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<u32> = all.iter().take(5).map(|x| x.1).collect();
        assert_eq!(&idx[i * 5..i * 5 + 5], &want[..], "row {i}");
        for c in 0..5 {
            assert!((dist[i * 5 + c] as f64 - all[c].0).abs() <= 1e-6 * all[c].0);
        }
    }
    assert_eq!(
        &idx[299 * 5..300 * 5],
        &idx[10 * 5..11 * 5],
        "a duplicate lists its representative's neighbours"
    );
}

#[test]
fn every_input_format_gives_the_same_answer() {
    let d = scratch("formats");
    let (n, dim) = (400, 5);
    // Values exactly representable in f16 and bf16, so every format holds the same numbers.
    let v: Vec<f32> = subspace_data(n, dim, 12)
        .iter()
        .map(|x| half::bf16::from_f32(*x).to_f32())
        .collect();
    let raw32 = f32_bytes(&v);
    let raw64: Vec<u8> = v.iter().flat_map(|x| (*x as f64).to_le_bytes()).collect();
    let raw16: Vec<u8> = v
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    let rawbf: Vec<u8> = v
        .iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect();
    let be32: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
    let mut fortran = Vec::new();
    for c in 0..dim {
        for r in 0..n {
            fortran.extend_from_slice(&v[r * dim + c].to_le_bytes());
        }
    }
    let f16_exact = v.iter().all(|x| half::f16::from_f32(*x).to_f32() == *x);
    let mut files: Vec<(PathBuf, Option<&str>)> = Vec::new();
    let put = |files: &mut Vec<(PathBuf, Option<&str>)>,
               name: &str,
               bytes: Vec<u8>,
               key: Option<&'static str>| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        files.push((p, key));
    };
    put(
        &mut files,
        "a.npy",
        npy_bytes("<f4", false, &[n, dim], &raw32),
        None,
    );
    put(
        &mut files,
        "b.npy",
        npy_bytes("<f8", false, &[n, dim], &raw64),
        None,
    );
    put(
        &mut files,
        "c.npy",
        npy_bytes(">f4", false, &[n, dim], &be32),
        None,
    );
    put(
        &mut files,
        "d.npy",
        npy_bytes("<f4", true, &[n, dim], &fortran),
        None,
    );
    assert!(f16_exact, "the test data must be exact in f16 too");
    put(
        &mut files,
        "e.npy",
        npy_bytes("<f2", false, &[n, dim], &raw16),
        None,
    );
    let mk_st = |dtype: safetensors::Dtype, raw: &[u8]| {
        let t = safetensors::tensor::TensorView::new(dtype, vec![n, dim], raw).unwrap();
        let other =
            safetensors::tensor::TensorView::new(dtype, vec![1, dim], &raw[..raw.len() / n])
                .unwrap();
        safetensors::serialize([("emb", t), ("other", other)], None).unwrap()
    };
    put(
        &mut files,
        "f.safetensors",
        mk_st(safetensors::Dtype::F32, &raw32),
        Some("emb"),
    );
    put(
        &mut files,
        "g.safetensors",
        mk_st(safetensors::Dtype::F64, &raw64),
        Some("emb"),
    );
    put(
        &mut files,
        "h.safetensors",
        mk_st(safetensors::Dtype::BF16, &rawbf),
        Some("emb"),
    );
    let npz_stored = d.join("i.npz");
    write_npz(
        &npz_stored,
        &[("x", npy_bytes("<f4", false, &[n, dim], &raw32))],
        false,
    );
    files.push((npz_stored, None));
    let npz_deflated = d.join("j.npz");
    write_npz(
        &npz_deflated,
        &[
            ("x", npy_bytes("<f4", false, &[n, dim], &raw32)),
            ("y", npy_bytes("<f8", false, &[n, dim], &raw64)),
        ],
        true,
    );
    files.push((npz_deflated, Some("y")));
    let mut reference: Option<Value> = None;
    for (p, key) in &files {
        let mut args = vec!["id", p.to_str().unwrap(), "--json", "--quiet", "--no-scale"];
        if let Some(k) = key {
            args.extend(["--key", k]);
        }
        let r = repscope(&args);
        assert_eq!(r.code, 0, "{}: {}", p.display(), r.stderr);
        let doc = json(&r);
        let ests = doc["estimates"].clone();
        match &reference {
            None => reference = Some(ests),
            Some(want) => assert_eq!(&ests, want, "{} differs", p.display()),
        }
    }
}

#[test]
fn datasets_and_demo() {
    let d = scratch("datasets");
    let r = repscope(&[
        "datasets",
        "manifolds",
        "-o",
        d.to_str().unwrap(),
        "-n",
        "500",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let keys = repscope::data::list_keys(&d.join("manifolds.npz")).unwrap();
    assert_eq!(keys.len(), 24);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("manifolds_truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth["manifolds"]["M10d_Cubic"]["id"], 70);
    let r = repscope(&[
        "id",
        d.join("manifolds.npz").to_str().unwrap(),
        "--key",
        "M7_Roll",
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dim = json(&r)["dimension"]["value"].as_f64().unwrap();
    assert!((dim - 2.0).abs() < 0.3, "swiss roll: {dim}");

    let r = repscope(&["demo", "--json", "--quiet"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = json(&r);
    assert_eq!(doc["manifolds"].as_array().unwrap().len(), 24);
    let err = doc["mean_relative_error"]["recommended"].as_f64().unwrap();
    assert!(err <= 0.10, "demo mean relative error {err}");
}

#[test]
fn report_partial_failure_keeps_the_rest_and_exits_3() {
    let d = scratch("partial");
    // 15 rows: too few for the intrinsic-dimension suite's 20 neighbours, enough for the spectrum.
    let input = d.join("small.npy");
    write_npy_f32(&input, 15, 4, &subspace_data(15, 4, 21));
    let out = d.join("report");
    let r = repscope(&[
        "report",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let s = &doc["inputs"][0]["sections"];
    assert_eq!(s["intrinsic_dimension"]["status"], "failed");
    assert!(s["intrinsic_dimension"]["note"]
        .as_str()
        .unwrap()
        .contains("distinct rows"));
    assert_eq!(s["spectrum"]["status"], "ok");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("distinct rows"),
        "the failure note is on the page"
    );
    // The same bad input the other commands reject is rejected here, with exit code 2 and nothing written.
    let bad = d.join("bad.npy");
    let mut v = subspace_data(40, 4, 2);
    v[7] = f32::NAN;
    write_npy_f32(&bad, 40, 4, &v);
    let out2 = d.join("report2");
    let r = repscope(&[
        "report",
        bad.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("row 1, column 3"), "{}", r.stderr);
    assert!(!out2.join("report.json").exists());
}

#[test]
fn report_sample_is_seeded_and_said() {
    let d = scratch("sample");
    let input = fixture("inputs/minilm_sentences_0_2000.npy");
    let mut docs = Vec::new();
    for run in 0..2 {
        let out = d.join(format!("r{run}"));
        let r = repscope(&[
            "report",
            input.to_str().unwrap(),
            "--sample",
            "600",
            "--seed",
            "5",
            "-o",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        let inp = &doc["inputs"][0];
        assert_eq!(inp["n"], 600);
        assert_eq!(inp["sample"]["rows_in_file"], 2000);
        assert_eq!(inp["sample"]["seed"], 5);
        assert!(std::fs::read_to_string(out.join("report.html"))
            .unwrap()
            .contains("seeded sample of 600"));
        docs.push(inp["sections"].clone());
    }
    assert_eq!(docs[0], docs[1], "same seed, same report");
}

/// Real token states (MiniLM after block 3, with its 200 nearly identical [CLS] states): `knn` and `lid`
/// say how the graph was proven, the rows the f32 pass cannot rank are recomputed, and every written row
/// is the float64 brute force.
#[test]
fn knn_on_token_states_is_certified_and_exact() {
    let d = scratch("knn-tokens");
    let input = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/tokens/minilm_tokens_l3_sample.npy"
    ));
    let m = repscope::data::load_matrix(&input, None).unwrap();
    let (n, dim, k) = (m.rows(), m.cols(), 10);
    let out = d.join("g.npz");
    let r = repscope(&[
        "knn",
        input.to_str().unwrap(),
        "-k",
        "10",
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = &json(&r)["certificate"];
    assert_eq!(c["exact"], true);
    assert_eq!(c["rows"], n);
    let (cert, rec) = (
        c["certified"].as_u64().unwrap(),
        c["recomputed"].as_u64().unwrap(),
    );
    assert_eq!(cert + rec, n as u64);
    assert!(rec >= 100, "the [CLS] cluster needs the range pass: {c}");
    let (_, idx_raw) = read_npz_member(&out, "indices");
    let idx: Vec<u32> = idx_raw
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    for i in 0..n {
        let mut all: Vec<(f64, u32)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                let s: f64 = (0..dim)
                    .map(|c| (m.row(i)[c] as f64 - m.row(j)[c] as f64).powi(2))
                    .sum();
                (s.sqrt(), j as u32)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut want: Vec<u32> = all.iter().take(k).map(|x| x.1).collect();
        let mut got = idx[i * k..(i + 1) * k].to_vec();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "row {i}");
    }
    let lid = d.join("lid.npy");
    let r = repscope(&[
        "lid",
        input.to_str().unwrap(),
        "-o",
        lid.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["certificate"]["exact"], true);
    let r = repscope(&[
        "id",
        input.to_str().unwrap(),
        "--no-scale",
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["neighbours"]["rows"], n);
}

fn token_sample() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/tokens"
    ));
    (
        dir.join("minilm_tokens_l3_sample.npy"),
        dir.join("minilm_tokens_l3_sample_ids.npy"),
    )
}

#[test]
fn activations_report_the_special_token_outliers_of_minilm_token_states() {
    let (x, ids) = token_sample();
    let r = repscope(&[
        "activations",
        x.to_str().unwrap(),
        "--token-ids",
        ids.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = json(&r);
    assert_eq!(doc["n"], 1500);
    assert_eq!(doc["d"], 384);
    // Every [CLS] row of the sample (id 101, 200 of them) peaks at dimension 99, about 400 times its row's
    // median |a|; nothing else is a peak row.
    let groups = doc["peak_rows"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["token_id"], 101);
    assert_eq!(groups[0]["dim"], 99);
    assert_eq!(groups[0]["rows"], 200);
    assert!(groups[0]["median_ratio"].as_f64().unwrap() > 300.0);
    // Sun et al.'s thresholds: MiniLM has no |a| > 100, and the document states the thresholds.
    assert_eq!(doc["massive"]["count"], 0);
    assert_eq!(doc["params"]["massive_abs"], 100.0);
    assert_eq!(doc["params"]["massive_ratio"], 1000.0);
    assert_eq!(doc["per_dimension"]["mean"].as_array().unwrap().len(), 384);
    assert!(doc["outlier_dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["dim"] == 223));
    // With a ratio threshold MiniLM's scale allows, the [CLS] value at dimension 99 is massive.
    let r = repscope(&[
        "activations",
        x.to_str().unwrap(),
        "--token-ids",
        ids.to_str().unwrap(),
        "--massive-abs",
        "5",
        "--massive-ratio",
        "100",
        "--json",
        "--quiet",
    ]);
    let doc = json(&r);
    let listed = doc["massive"]["listed"].as_array().unwrap();
    assert!(!listed.is_empty());
    assert!(listed
        .iter()
        .all(|m| m["dim"] == 99 && m["token_id"] == 101));
    assert_eq!(doc["massive"]["by_dimension"][0][0], 99);
}

#[test]
fn activations_take_token_ids_from_the_input_archive_and_refuse_bad_input() {
    let d = scratch("activations");
    let (x, ids) = token_sample();
    let m = repscope::data::load_matrix(&x, None).unwrap();
    let idv = repscope::data::load_token_ids(&ids, None).unwrap();
    let mut vals = Vec::new();
    for i in 0..m.rows() {
        vals.extend_from_slice(m.row(i));
    }
    let ids_bytes: Vec<u8> = idv.iter().flat_map(|v| v.to_le_bytes()).collect();
    let npz = d.join("tok.npz");
    write_npz(
        &npz,
        &[
            (
                "tokens",
                npy_bytes("<f4", false, &[m.rows(), m.cols()], &f32_bytes(&vals)),
            ),
            (
                "token_ids",
                npy_bytes("<u4", false, &[m.rows()], &ids_bytes),
            ),
        ],
        false,
    );
    let r = repscope(&[
        "activations",
        npz.to_str().unwrap(),
        "--key",
        "tokens",
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = json(&r);
    assert_eq!(doc["peak_rows"]["groups"][0]["token_id"], 101);
    assert!(doc["tokens"]["token_ids"]
        .as_str()
        .unwrap()
        .ends_with("tok.npz:token_ids"));
    let bad = |r: &Run, words: &[&str]| {
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        for w in words {
            assert!(r.stderr.contains(w), "expected {w:?} in {}", r.stderr);
        }
    };
    // NaN: the row is named.
    let mut v = vals.clone();
    v[7 * m.cols() + 3] = f32::NAN;
    let nan = d.join("nan.npy");
    write_npy_f32(&nan, m.rows(), m.cols(), &v);
    bad(
        &repscope(&["activations", nan.to_str().unwrap()]),
        &["nan.npy", "row 7"],
    );
    // Token ids of another length.
    let short = d.join("short.npy");
    std::fs::write(&short, npy_bytes("<u4", false, &[10], &ids_bytes[..40])).unwrap();
    bad(
        &repscope(&[
            "activations",
            x.to_str().unwrap(),
            "--token-ids",
            short.to_str().unwrap(),
        ]),
        &["10 token ids for 1500 rows"],
    );
    // Negative token ids.
    let neg = d.join("neg.npy");
    std::fs::write(
        &neg,
        npy_bytes(
            "<i4",
            false,
            &[2],
            &[(-1i32).to_le_bytes(), 3i32.to_le_bytes()].concat(),
        ),
    )
    .unwrap();
    bad(
        &repscope(&[
            "activations",
            x.to_str().unwrap(),
            "--token-ids",
            neg.to_str().unwrap(),
        ]),
        &["neg.npy", "'-1'", "not a token id"],
    );
    // Thresholds out of range name their flags.
    for (flag, value) in [
        ("--massive-abs", "-1"),
        ("--massive-ratio", "nan"),
        ("--eps", "0"),
        ("--peak-factor", "0.5"),
        ("--outlier-sigma", "0"),
    ] {
        bad(
            &repscope(&["activations", x.to_str().unwrap(), flag, value]),
            &[flag],
        );
    }
    bad(
        &repscope(&[
            "activations",
            x.to_str().unwrap(),
            "--model",
            d.join("none").to_str().unwrap(),
        ]),
        &["no such model folder"],
    );
}

#[test]
fn sae_train_eval_and_encode_from_the_command_line() {
    let d = scratch("sae-cli");
    let p = repscope::sae::synthetic::planted(8192, 32, 24, 0.1, 0.0, 4);
    let x = d.join("acts.npy");
    write_npy_f32(&x, p.rows, 32, &p.x);
    let out = d.join("sae");
    let train = |extra: &[&str]| {
        let mut a = vec![
            "sae",
            "train",
            x.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--width",
            "48",
            "-k",
            "4",
            "--batch",
            "256",
            "--tokens",
            "65536",
            "--lr",
            "0.004",
            "--json",
            "--quiet",
        ];
        a.extend_from_slice(extra);
        repscope(&a)
    };
    let r = train(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = json(&r);
    assert_eq!(doc["summary"]["steps"], 256);
    assert_eq!(doc["summary"]["k"], 4);
    for f in [
        "cfg.json",
        "sae_weights.safetensors",
        "repscope_training.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["architecture"], "topk");
    assert_eq!(
        (
            cfg["d_in"].as_u64(),
            cfg["d_sae"].as_u64(),
            cfg["k"].as_u64()
        ),
        (Some(32), Some(48), Some(4))
    );
    // An existing folder needs --force.
    let again = train(&[]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let r = repscope(&[
        "sae",
        "eval",
        out.to_str().unwrap(),
        x.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ev = json(&r);
    assert!(ev["fvu"].as_f64().unwrap() < 0.1, "{ev}");
    assert!(ev["l0"].as_f64().unwrap() <= 4.0);
    assert!(ev["explained_variance_legacy"].is_number());
    let codes = d.join("codes.npz");
    let r = repscope(&[
        "sae",
        "encode",
        out.to_str().unwrap(),
        x.to_str().unwrap(),
        "-o",
        codes.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (shape, _) = read_npz_member(&codes, "indptr");
    assert_eq!(shape, vec![8193]);
    let (vshape, _) = read_npz_member(&codes, "values");
    assert!((vshape[0] as f64 / 8192.0 - ev["l0"].as_f64().unwrap()).abs() < 1e-12);
    // BatchTopK is saved as JumpReLU with its threshold.
    let bt = d.join("bt");
    let r = repscope(&[
        "sae",
        "train",
        x.to_str().unwrap(),
        "-o",
        bt.to_str().unwrap(),
        "--width",
        "48",
        "-k",
        "4",
        "--arch",
        "batchtopk",
        "--batch",
        "256",
        "--tokens",
        "8192",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(bt.join("cfg.json")).unwrap()).unwrap();
    assert_eq!(cfg["architecture"], "jumprelu");
}

#[test]
fn sae_commands_refuse_bad_input() {
    let d = scratch("sae-bad");
    let p = repscope::sae::synthetic::planted(600, 16, 8, 0.2, 0.0, 1);
    let x = d.join("x.npy");
    write_npy_f32(&x, p.rows, 16, &p.x);
    let bad = |args: &[&str], words: &[&str]| {
        let r = repscope(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        for w in words {
            assert!(
                r.stderr.contains(w),
                "{args:?}: expected {w:?} in {}",
                r.stderr
            );
        }
    };
    let o = d.join("o");
    let (xs, os) = (x.to_str().unwrap(), o.to_str().unwrap());
    bad(
        &["sae", "train", xs, "-o", os, "--width", "0"],
        &["--width"],
    );
    bad(
        &["sae", "train", xs, "-o", os, "--width", "8", "-k", "0"],
        &["-k"],
    );
    bad(
        &["sae", "train", xs, "-o", os, "--width", "8", "-k", "9"],
        &["-k", "1 to the width (8)"],
    );
    bad(
        &[
            "sae", "train", xs, "-o", os, "--width", "8", "--arch", "gated",
        ],
        &["--arch", "topk and batchtopk"],
    );
    bad(
        &[
            "sae", "train", xs, "-o", os, "--width", "8", "-k", "2", "--lr", "-1",
        ],
        &["--lr"],
    );
    bad(
        &[
            "sae", "train", xs, "-o", os, "--width", "8", "-k", "2", "--clip", "-1",
        ],
        &["--clip"],
    );
    bad(
        &[
            "sae",
            "train",
            xs,
            "-o",
            os,
            "--width",
            "8",
            "-k",
            "2",
            "--decay-fraction",
            "1.5",
        ],
        &["--decay-fraction", "from 0 to 1"],
    );
    let mut v = p.x.clone();
    v[5 * 16 + 2] = f32::NAN;
    let nan = d.join("nan.npy");
    write_npy_f32(&nan, p.rows, 16, &v);
    bad(
        &[
            "sae",
            "train",
            nan.to_str().unwrap(),
            "-o",
            os,
            "--width",
            "8",
            "-k",
            "2",
            "--batch",
            "100",
        ],
        &["nan.npy", "row 5"],
    );
    assert!(!o.exists(), "no folder is left behind by a failed run");
    let fixture = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sae/saelens_topk"
    ));
    let narrow = d.join("narrow.npy");
    write_npy_f32(&narrow, 4, 8, &[1.0; 32]);
    bad(
        &[
            "sae",
            "eval",
            fixture.to_str().unwrap(),
            narrow.to_str().unwrap(),
        ],
        &["d = 8", "d_in = 16"],
    );
    bad(&["sae", "eval", d.to_str().unwrap(), xs], &["neither"]);
    let identity = fixture.with_file_name("openai_topk_identity.pt");
    bad(
        &["sae", "eval", identity.to_str().unwrap(), xs],
        &["openai_topk_identity.pt", "postact_fn is Identity"],
    );
}

#[test]
fn sae_eval_reads_an_openai_state_dict() {
    // OpenAI's TopK SAE layer-normalises its input; the fixture's MSE is its reference definition's (torch).
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sae"
    ));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let out = repscope(&[
        "sae",
        "eval",
        dir.join("openai_topk.pt").to_str().unwrap(),
        dir.join("x.npy").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = json(&out);
    let want = expected["openai_topk"]["mse"].as_f64().unwrap();
    let mse = doc["mse"].as_f64().unwrap();
    assert!((mse - want).abs() <= 1e-5 * want, "MSE {mse} vs {want}");
    assert_eq!(doc["l0"].as_f64(), Some(4.0));
}

#[test]
fn sae_train_stops_and_resumes_bit_identically() {
    let d = scratch("sae-resume");
    let p = repscope::sae::synthetic::planted(3000, 16, 12, 0.15, 0.01, 6);
    let x = d.join("acts.npy");
    write_npy_f32(&x, p.rows, 16, &p.x);
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "sae",
            "train",
            x.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--width",
            "32",
            "-k",
            "3",
            "--batch",
            "128",
            "--tokens",
            "6400",
            "--quiet",
        ];
        a.extend_from_slice(extra);
        repscope(&a)
    };
    let (full, parts) = (d.join("full"), d.join("parts"));
    assert_eq!(run(&full, &[]).code, 0);
    let r = run(&parts, &["--checkpoint-every", "10", "--stop-after", "23"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("stopped after step 23 of 50"),
        "{}",
        r.stdout
    );
    assert!(!parts.exists(), "no output folder before the run ends");
    assert!(d.join("parts.checkpoint").join("state.json").is_file());
    let r = run(&parts, &["--resume"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let w = |dir: &Path| std::fs::read(dir.join("sae_weights.safetensors")).unwrap();
    assert_eq!(w(&full), w(&parts), "resumed weights differ");
    assert!(
        !d.join("parts.checkpoint").exists(),
        "the checkpoint is removed at the end"
    );
    // Resuming with nothing to resume from, or with other settings, is refused.
    let r = run(&d.join("none"), &["--resume"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no checkpoint"), "{}", r.stderr);
    let r = run(&parts, &["--stop-after", "5", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&parts, &["--resume", "--seed", "7", "--force"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("other settings"), "{}", r.stderr);
}

#[test]
fn report_with_an_sae_has_its_section() {
    let fx = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sae"
    ));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("expected.json")).unwrap()).unwrap();
    let d = scratch("report-sae");
    let narrow = d.join("narrow.npy");
    write_npy_f32(
        &narrow,
        64,
        8,
        &(0..512).map(|i| (i % 13) as f32).collect::<Vec<_>>(),
    );
    let out = d.join("r");
    let x = fx.join("x.npy");
    let r = repscope(&[
        "report",
        x.to_str().unwrap(),
        narrow.to_str().unwrap(),
        "--sae",
        fx.join("saelens_topk").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    // Two inputs of different widths: no layer study fails the run, and the narrow one skips the SAE.
    assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let s = &doc["inputs"][0]["sections"]["sae"];
    assert_eq!(s["status"], "ok", "{s}");
    let want = expected["saelens_topk"]["mse"].as_f64().unwrap();
    let mse = s["value"]["mse"].as_f64().unwrap();
    assert!(
        (mse - want).abs() <= 1e-5 * want,
        "MSE {mse} vs SAELens {want}"
    );
    assert_eq!(s["value"]["l0"].as_f64(), Some(4.0));
    let skipped = &doc["inputs"][1]["sections"]["sae"];
    assert_eq!(skipped["status"], "skipped");
    assert!(skipped["note"].as_str().unwrap().contains("d_in = 16"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<h3>Sparse autoencoder</h3>"));
    assert!(
        html.contains("id=\"sae-density-0\""),
        "the density histogram is drawn"
    );
    assert!(
        !html.contains("cannot be read"),
        "every section reads back as its typed struct"
    );
    assert!(html.contains("id=\"sae-density-0\""));
    // A bad SAE is refused before the folder is made.
    let none = d.join("r2");
    let r = repscope(&[
        "report",
        x.to_str().unwrap(),
        "--sae",
        d.to_str().unwrap(),
        "-o",
        none.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!none.exists());
}

/// Writes integer labels as an `.npy` of int64.
fn write_labels(path: &Path, labels: &[i64]) {
    let bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, npy_bytes("<i8", false, &[labels.len()], &bytes)).unwrap();
}

fn report_doc(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// The labelled MiniLM report opens with a summary whose every number is the JSON value it points at;
/// the ID sentence states the spread across the estimators and the scale curve; classes carry the names
/// of the names file; the map and the class heatmap hold what the pictures draw.
#[test]
fn report_answers_first_with_the_json_numbers_and_named_classes() {
    let d = scratch("summary");
    let out = d.join("r");
    let r = repscope(&[
        "report",
        fixture("inputs/minilm_sentences_0_2000.npy")
            .to_str()
            .unwrap(),
        "--labels",
        fixture("inputs/minilm_labels_0_2000.npy").to_str().unwrap(),
        "--label-names",
        fixture("inputs/minilm_label_names.txt").to_str().unwrap(),
        "--search",
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = report_doc(&out);
    assert_eq!(doc["schema"], "repscope.report/2");
    assert_eq!(doc["inputs"][0]["sections"]["search"]["status"], "ok");
    let inp = &doc["inputs"][0];
    let summary = &inp["summary"];
    let lines: Vec<&Value> = summary["lines"]
        .as_array()
        .unwrap()
        .iter()
        .chain(summary["warnings"].as_array().unwrap())
        .collect();
    let mut facts = 0;
    for l in &lines {
        for f in l["facts"].as_array().unwrap() {
            let at = inp
                .pointer(f["pointer"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{} points nowhere", f["pointer"]));
            assert_eq!(at.as_f64(), f["value"].as_f64(), "{}", f["pointer"]);
            facts += 1;
        }
    }
    assert!(facts >= 10, "{facts} numbers in the summary");
    let topics: Vec<&str> = lines.iter().map(|l| l["topic"].as_str().unwrap()).collect();
    for t in [
        "intrinsic_dimension",
        "spectrum",
        "classes",
        "search",
        "neighbours",
    ] {
        assert!(topics.contains(&t), "a {t} sentence in {topics:?}");
    }
    // The ID sentence: the recommended value, the smallest and largest neighbour estimate, and the scale
    // curve's smallest and largest reading.
    let id = &inp["sections"]["intrinsic_dimension"]["value"];
    let id_line = lines
        .iter()
        .find(|l| l["topic"] == "intrinsic_dimension")
        .unwrap();
    let values: Vec<f64> = id_line["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["value"].as_f64().unwrap())
        .collect();
    let knn: Vec<f64> = id["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["estimator"].as_str().unwrap().starts_with("pca_"))
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    let curve: Vec<f64> = id["scale_curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["d"].as_f64().unwrap())
        .collect();
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(values[0], id["dimension"]["value"].as_f64().unwrap());
    for want in [min(&knn), max(&knn), min(&curve), max(&curve)] {
        assert!(values.contains(&want), "{want} is in {values:?}");
    }
    let text = id_line["text"].as_str().unwrap();
    assert!(
        text.contains("range from") && text.contains("across scales"),
        "{text}"
    );
    // Names from the file, everywhere.
    let cls = &inp["sections"]["classes"]["value"];
    assert_eq!(cls["class_names"][1], "fortune:art");
    assert_eq!(cls["per_class"][1]["name"], "fortune:art");
    assert_eq!(cls["pairs"]["classes"].as_array().unwrap().len(), 49);
    let class_line = lines.iter().find(|l| l["topic"] == "classes").unwrap();
    assert!(class_line["text"].as_str().unwrap().contains("fortune:"));
    // The map: every row (2000 ≤ 3000), one class per point, the same classes as the labels.
    let map = &inp["map"];
    assert_eq!(map["rows"].as_array().unwrap().len(), 2000);
    assert_eq!(map["x"].as_array().unwrap().len(), 2000);
    let labels: Vec<u64> = map["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(labels.iter().max(), Some(&48));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("fortune:art"));
    assert!(
        !html.contains("cannot be read"),
        "every section reads back as its typed struct"
    );
    for block in [
        "id-block-0",
        "lid-block-0",
        "spectrum-block-0",
        "activations-block-0",
        "search-block-0",
        "classes-block-0",
        "map-block-0",
    ] {
        assert!(
            html.contains(&format!("id=\"{block}\"")),
            "{block} is drawn"
        );
    }
    assert_eq!(
        html.matches("class=\"mark cell\"").count(),
        49 * 49,
        "one heatmap cell per class pair"
    );
}

/// Labels the class pictures cannot use are handled, and a names file that does not fit is refused.
#[test]
fn report_handles_degenerate_labels_and_refuses_names_that_do_not_fit() {
    let d = scratch("degenerate-labels");
    let (n, dim) = (1000, 8);
    let input = d.join("x.npy");
    write_npy_f32(&input, n, dim, &subspace_data(n, dim, 4));
    let run = |labels: &[i64], extra: &[&str], tag: &str| {
        let lp = d.join(format!("{tag}.npy"));
        write_labels(&lp, labels);
        let out = d.join(tag);
        let mut args = vec![
            "report",
            input.to_str().unwrap(),
            "--labels",
            lp.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        (repscope(&args), out)
    };
    // One class: no class geometry and no heatmap, with a note saying why; the rest of the report is there.
    let (r, out) = run(&vec![7; n], &[], "one");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = report_doc(&out);
    let cls = &doc["inputs"][0]["sections"]["classes"];
    assert_eq!(cls["status"], "skipped");
    assert!(cls["note"].as_str().unwrap().contains("same label"));
    assert_eq!(doc["inputs"][0]["sections"]["spectrum"]["status"], "ok");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("same label") && !html.contains("class-cdnv"));
    // Every row its own class: the same.
    let own: Vec<i64> = (0..n as i64).collect();
    let (r, out) = run(&own, &[], "own");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cls = &report_doc(&out)["inputs"][0]["sections"]["classes"];
    assert_eq!(cls["status"], "skipped");
    assert!(cls["note"].as_str().unwrap().contains("its own class"));
    // 250 classes of 4 rows: the heatmap shows the 50 largest and says so.
    let many: Vec<i64> = (0..n as i64).map(|i| i % 250).collect();
    let (r, out) = run(&many, &[], "many");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = report_doc(&out);
    let pairs = &doc["inputs"][0]["sections"]["classes"]["value"]["pairs"];
    assert_eq!(pairs["classes"].as_array().unwrap().len(), 50);
    assert!(pairs["note"].as_str().unwrap().contains("50 largest"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("class=\"mark cell\"").count(), 50 * 50);
    assert!(html.contains("50 largest"));
    // Names: too few for the labels, for string labels, or without labels: exit 2, one line naming the file.
    let names = d.join("names.txt");
    std::fs::write(&names, "zero\none\ntwo\n").unwrap();
    let five: Vec<i64> = (0..n as i64).map(|i| i % 5).collect();
    let (r, out) = run(&five, &["--label-names", names.to_str().unwrap()], "short");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("names.txt") && r.stderr.contains("label 3 has no name"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(!out.join("report.json").exists());
    let (r, _) = run(
        &five,
        &["--label-names", d.join("missing.txt").to_str().unwrap()],
        "missing",
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing.txt"), "{}", r.stderr);
    let r = repscope(&[
        "report",
        input.to_str().unwrap(),
        "--label-names",
        names.to_str().unwrap(),
        "-o",
        d.join("nolabels").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--labels"), "{}", r.stderr);
    // Names that fit: the classes are named in the report and by `repscope classes`.
    let three: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    let (r, out) = run(&three, &["--label-names", names.to_str().unwrap()], "named");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = report_doc(&out);
    assert_eq!(
        doc["inputs"][0]["sections"]["classes"]["value"]["class_names"],
        serde_json::json!(["zero", "one", "two"])
    );
    let r = repscope(&[
        "classes",
        input.to_str().unwrap(),
        "--labels",
        d.join("named.npy").to_str().unwrap(),
        "--label-names",
        names.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        json(&r)["class_names"],
        serde_json::json!(["zero", "one", "two"])
    );
}
