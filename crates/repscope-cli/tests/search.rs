//! search-study, index build/query and knn --approximate end to end, and their bad input (exit code 2).
mod common;
use std::path::Path;

use common::*;

/// A small input file: n × d rows near a 3-dimensional subspace.
fn input(dir: &Path, name: &str, n: usize, d: usize, seed: u64) -> String {
    let p = dir.join(name);
    write_npy_f32(&p, n, d, &subspace_data(n, d, seed));
    p.to_str().unwrap().to_string()
}

fn expect_error(args: &[&str], needles: &[&str]) {
    let r = repscope(args);
    assert_eq!(
        r.code, 2,
        "args {args:?}: exit {} stderr {}",
        r.code, r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    for n in needles {
        assert!(r.stderr.contains(n), "stderr lacks {n:?}:\n{}", r.stderr);
    }
}

#[test]
fn search_study_json_has_every_section() {
    let d = scratch("study-json");
    let x = input(&d, "x.npy", 700, 12, 1);
    let labels = d.join("labels.txt");
    std::fs::write(
        &labels,
        (0..700)
            .map(|i| format!("c{}\n", i % 3))
            .collect::<String>(),
    )
    .unwrap();
    let r = repscope(&[
        "search-study",
        &x,
        "--labels",
        labels.to_str().unwrap(),
        "--query-fraction",
        "0.1",
        "--order-repeats",
        "2",
        "--ef-sweep",
        "10,32",
        "--m",
        "8",
        "--ef-construction",
        "40",
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let doc = json(&r);
    assert_eq!(doc["n_queries"], 70);
    assert_eq!(doc["n_refs"], 630);
    let vendors: Vec<&str> = doc["vendor_defaults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vendors, ["hnswlib", "faiss", "usearch", "pgvector"]);
    assert_eq!(doc["vendor_defaults"][1]["m"], 32);
    assert_eq!(doc["user"]["m"], 8);
    assert_eq!(doc["lid_quartiles"].as_array().unwrap().len(), 4);
    let orders = &doc["insertion_orders"][0]["orders"];
    let names: Vec<&str> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["random", "lid_ascending", "lid_descending", "label_grouped"]
    );
    assert!(doc["insertion_orders"][0]["statement"]
        .as_str()
        .unwrap()
        .contains("repetitions"));
    assert!(doc["global_id"]["value"].as_f64().unwrap() > 1.0);
    let pts = doc["compression"]["points"].as_array().unwrap();
    assert!(pts.iter().any(|p| p["method"] == "random_projection"));
    assert!(pts.iter().any(|p| p["method"] == "sq" && p["bits"] == 4));
    assert!(doc["compression"]["advice"]["text"]
        .as_str()
        .unwrap()
        .contains("recall@10"));
    // The human report has the same sections.
    let h = repscope(&[
        "search-study",
        &x,
        "--no-orders",
        "--no-compression",
        "--quiet",
    ]);
    assert_eq!(h.code, 0, "{}", h.stderr);
    for needle in ["hnswlib", "pgvector", "quartile", "intrinsic dimension"] {
        assert!(h.stdout.contains(needle), "{needle}:\n{}", h.stdout);
    }
}

#[test]
fn search_study_bad_input_exits_2() {
    let d = scratch("study-bad");
    let x = input(&d, "x.npy", 300, 8, 2);
    let q = input(&d, "q.npy", 20, 7, 3);
    expect_error(
        &["search-study", &x, "--queries", &q, "--quiet"],
        &["q.npy", "7 columns", "8"],
    );
    expect_error(&["search-study", &x, "-k", "400", "--quiet"], &["k = 400"]);
    expect_error(
        &["search-study", &x, "--dims", "4,8", "--quiet"],
        &["m = 8", "m < 8"],
    );
    expect_error(
        &["search-study", &x, "--query-fraction", "1.5", "--quiet"],
        &["--query-fraction"],
    );
    expect_error(
        &["search-study", &x, "--m", "1000", "--quiet"],
        &["M = 1000"],
    );
}

#[test]
fn ef_search_below_k_is_raised_with_a_note() {
    let d = scratch("study-ef");
    let x = input(&d, "x.npy", 300, 8, 4);
    let r = repscope(&[
        "search-study",
        &x,
        "-k",
        "10",
        "--ef-search",
        "4",
        "--no-orders",
        "--no-compression",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("raised to 10"), "{}", r.stderr);
    let doc = json(&r);
    assert_eq!(doc["user"]["ef_search"], 10);
    assert!(doc["notes"].to_string().contains("raised"));
}

#[test]
fn index_build_query_round_trip_and_damaged_files() {
    let d = scratch("index");
    let x = input(&d, "x.npy", 800, 10, 5);
    let q = input(&d, "q.npy", 50, 10, 6);
    let idx = d.join("x.hnsw");
    let idx_s = idx.to_str().unwrap();
    let b = repscope(&[
        "index", "build", &x, "-o", idx_s, "--metric", "cosine", "--json", "--quiet",
    ]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert_eq!(json(&b)["rows_indexed"], 800);
    let out1 = d.join("a.npz");
    let out2 = d.join("b.npz");
    for out in [&out1, &out2] {
        let r = repscope(&[
            "index",
            "query",
            idx_s,
            "--queries",
            &q,
            "--ef-search",
            "16,64",
            "--recall",
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--quiet",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let doc = json(&r);
        assert!(doc["points"][1]["recall"].as_f64().unwrap() > 0.9);
    }
    assert_eq!(
        std::fs::read(&out1).unwrap(),
        std::fs::read(&out2).unwrap(),
        "two queries of one saved index differ"
    );
    // The same build again gives the same file.
    let idx2 = d.join("x2.hnsw");
    let b2 = repscope(&[
        "index",
        "build",
        &x,
        "-o",
        idx2.to_str().unwrap(),
        "--metric",
        "cosine",
        "--quiet",
        "--threads",
        "1",
    ]);
    assert_eq!(b2.code, 0, "{}", b2.stderr);
    assert_eq!(std::fs::read(&idx).unwrap(), std::fs::read(&idx2).unwrap());

    let bytes = std::fs::read(&idx).unwrap();
    let cut = d.join("cut.hnsw");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    expect_error(
        &["index", "query", cut.to_str().unwrap(), "--queries", &q],
        &["cut.hnsw", "truncated"],
    );
    let mut other = bytes.clone();
    other[8..12].copy_from_slice(&7u32.to_le_bytes());
    let v7 = d.join("v7.hnsw");
    std::fs::write(&v7, &other).unwrap();
    expect_error(
        &["index", "query", v7.to_str().unwrap(), "--queries", &q],
        &["v7.hnsw", "version 7", "Rebuild"],
    );
    let narrow = input(&d, "narrow.npy", 5, 9, 7);
    expect_error(
        &["index", "query", idx_s, "--queries", &narrow],
        &["narrow.npy", "9 columns"],
    );
    expect_error(
        &["index", "query", idx_s, "--queries", &q, "-k", "801"],
        &["k = 801"],
    );
}

#[test]
fn knn_approximate_says_so() {
    let d = scratch("knn-approx");
    let x = input(&d, "x.npy", 600, 8, 8);
    let out = d.join("g.npz");
    let r = repscope(&[
        "knn",
        &x,
        "-k",
        "5",
        "--approximate",
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = json(&r);
    assert_eq!(doc["exact"], false);
    assert_eq!(doc["approximate"]["method"], "hnsw");
    assert!(doc["approximate"]["sampled_recall"].as_f64().unwrap() > 0.9);
    let h = repscope(&[
        "knn",
        &x,
        "-k",
        "5",
        "--approximate",
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(h.code, 0, "{}", h.stderr);
    assert!(h.stdout.contains("approximate") && h.stdout.contains("not the exact"));
    let e = repscope(&[
        "knn",
        &x,
        "-k",
        "5",
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--quiet",
        "--force",
    ]);
    assert_eq!(json(&e)["exact"], true);
}
