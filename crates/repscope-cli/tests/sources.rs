//! Sources of many shards, as a user passes them: a folder, a pattern or a list of files, in .npy,
//! .safetensors and .npz shards, with --rows and --sample. The streamed numbers must equal those of the one
//! file holding the same rows, whatever the shard boundaries; bad shards are named in a one-line error.
mod common;

use std::path::{Path, PathBuf};

use common::{json, repscope, scratch, subspace_data, write_npy_f32, write_npz};

/// A `.safetensors` file holding one F32 tensor "x".
fn write_safetensors_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) {
    let len = data.len() * 4;
    let mut head = format!(
        "{{\"x\":{{\"dtype\":\"F32\",\"shape\":[{rows},{cols}],\"data_offsets\":[0,{len}]}}}}"
    );
    while (head.len() + 8) % 8 != 0 {
        head.push(' ');
    }
    let mut out = (head.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(head.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

fn npy_f32_member(rows: usize, cols: usize, data: &[f32]) -> Vec<u8> {
    common::npy_bytes("<f4", false, &[rows, cols], &common::f32_bytes(data))
}

fn ok(args: &[&str]) -> serde_json::Value {
    let r = repscope(args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    json(&r)
}

fn p(x: &Path) -> String {
    x.display().to_string()
}

/// Every number of two spectrum documents agrees to `tol` relative.
fn same_spectrum(a: &serde_json::Value, b: &serde_json::Value, tol: f64) {
    let close = |what: &str, x: f64, y: f64, scale: f64| {
        assert!(
            (x - y).abs() <= tol * scale.abs().max(x.abs()),
            "{what}: {x} against {y}"
        );
    };
    let ea = a["eigenvalues"].as_array().unwrap();
    let eb = b["eigenvalues"].as_array().unwrap();
    assert_eq!(ea.len(), eb.len());
    let l1 = ea[0].as_f64().unwrap();
    for (i, (x, y)) in ea.iter().zip(eb).enumerate() {
        // Eigenvalues near zero carry the rounding of λ₁.
        close(
            &format!("eigenvalue {i}"),
            x.as_f64().unwrap(),
            y.as_f64().unwrap(),
            1e-3 * l1,
        );
    }
    for k in [
        "total_variance",
        "participation_ratio",
        "anisotropy",
        "numerical_rank",
    ] {
        close(k, a[k].as_f64().unwrap(), b[k].as_f64().unwrap(), 0.0);
    }
    // The coding rate is there only when asked for (`--coding-rate`), on both sides or neither.
    assert_eq!(a["coding_rate"].is_null(), b["coding_rate"].is_null());
    for k in ["effective_rank", "rankme", "coding_rate"] {
        if k == "coding_rate" && a[k].is_null() {
            continue;
        }
        close(
            k,
            a[k]["value"].as_f64().unwrap(),
            b[k]["value"].as_f64().unwrap(),
            0.0,
        );
    }
    close(
        "alpha",
        a["alpha_req"]["alpha"].as_f64().unwrap(),
        b["alpha_req"]["alpha"].as_f64().unwrap(),
        0.0,
    );
    let ra = a["rogue_dimensions"].as_array().unwrap();
    let rb = b["rogue_dimensions"].as_array().unwrap();
    for (x, y) in ra.iter().zip(rb) {
        assert_eq!(x["dim"], y["dim"]);
        close(
            "rogue share",
            x["share"].as_f64().unwrap(),
            y["share"].as_f64().unwrap(),
            0.0,
        );
    }
    assert_eq!(a["n"], b["n"]);
    assert_eq!(a["d"], b["d"]);
}

/// 3,000 rows of 24 columns, low-rank plus noise, shifted away from the origin.
fn data() -> (usize, usize, Vec<f32>) {
    let (n, d) = (3000, 24);
    let mut x = subspace_data(n, d, 11);
    for (i, v) in x.iter_mut().enumerate() {
        *v += 3.0 + (i % d) as f32 * 0.25;
    }
    (n, d, x)
}

#[test]
fn shards_in_three_formats_give_the_numbers_of_one_file() {
    let dir = scratch("shards-formats");
    let (n, d, x) = data();
    let whole = dir.join("whole.npy");
    write_npy_f32(&whole, n, d, &x);
    let base = ok(&["spectrum", &p(&whole), "--coding-rate", "--json", "-q"]);
    assert_eq!(base["input"]["shards"], 1);
    // Boundaries that fall anywhere: 1 row, a prime, most of the rows.
    let cuts = [0usize, 1, 998, 1999, 2001, n];
    let shards = dir.join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    let mut files = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let (a, b) = (w[0], w[1]);
        let part = &x[a * d..b * d];
        // shard_2 sorts before shard_10 only in natural order: number them so that it matters.
        let stem = format!("shard_{}", i * 5);
        let f = match i % 3 {
            0 => {
                let f = shards.join(format!("{stem}.npy"));
                write_npy_f32(&f, b - a, d, part);
                f
            }
            1 => {
                let f = shards.join(format!("{stem}.safetensors"));
                write_safetensors_f32(&f, b - a, d, part);
                f
            }
            _ => {
                let f = shards.join(format!("{stem}.npz"));
                write_npz(&f, &[("x", npy_f32_member(b - a, d, part))], true);
                f
            }
        };
        files.push(f);
    }
    // A folder, in natural order.
    let v = ok(&[
        "spectrum",
        &p(&shards),
        "--key",
        "x",
        "--coding-rate",
        "--json",
        "-q",
    ]);
    assert_eq!(v["input"]["shards"], 5);
    assert_eq!(v["input"]["rows"], n);
    same_spectrum(&v, &base, 1e-12);
    // A pattern, and a list of files.
    let pat = format!("{}/shard_*", p(&shards));
    let v = ok(&[
        "spectrum",
        &pat,
        "--key",
        "x",
        "--coding-rate",
        "--json",
        "-q",
    ]);
    same_spectrum(&v, &base, 1e-12);
    let mut args: Vec<String> = vec!["spectrum".into()];
    args.extend(files.iter().map(|f| p(f)));
    args.extend(["--key", "x", "--coding-rate", "--json", "-q"].map(String::from));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    same_spectrum(&ok(&refs), &base, 1e-12);
    // The wrong order is a different matrix only in row order: the spectrum is the same, but a shuffled
    // list must still be read in the order given (checked by --rows below).
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rows_and_samples_select_rows_of_the_whole_source() {
    let dir = scratch("shards-select");
    let (n, d, x) = data();
    let shards = dir.join("s");
    std::fs::create_dir_all(&shards).unwrap();
    write_npy_f32(&shards.join("a_1.npy"), 1200, d, &x[..1200 * d]);
    write_npy_f32(&shards.join("a_2.npy"), n - 1200, d, &x[1200 * d..]);
    // Rows 1000:2100 cross the boundary.
    let part = dir.join("part.npy");
    write_npy_f32(&part, 1100, d, &x[1000 * d..2100 * d]);
    let a = ok(&[
        "spectrum",
        &p(&shards),
        "--rows",
        "1000:2100",
        "--json",
        "-q",
    ]);
    let b = ok(&["spectrum", &p(&part), "--json", "-q"]);
    same_spectrum(&a, &b, 1e-12);
    assert_eq!(a["input"]["row_range"], "1000:2100");
    // A sample is seeded, and a sample of every row is the whole source.
    let s1 = ok(&[
        "spectrum",
        &p(&shards),
        "--sample",
        "500",
        "--seed",
        "3",
        "--json",
        "-q",
    ]);
    let s2 = ok(&[
        "spectrum",
        &p(&shards),
        "--sample",
        "500",
        "--seed",
        "3",
        "--json",
        "-q",
    ]);
    let s3 = ok(&[
        "spectrum",
        &p(&shards),
        "--sample",
        "500",
        "--seed",
        "4",
        "--json",
        "-q",
    ]);
    assert_eq!(s1["eigenvalues"], s2["eigenvalues"]);
    assert_ne!(s1["eigenvalues"], s3["eigenvalues"]);
    assert_eq!(s1["n"], 500);
    let all = ok(&[
        "spectrum",
        &p(&shards),
        "--sample",
        &n.to_string(),
        "--json",
        "-q",
    ]);
    let whole = ok(&["spectrum", &p(&shards), "--json", "-q"]);
    same_spectrum(&all, &whole, 1e-12);
    // Out-of-range selections are refused.
    for bad in [
        vec!["--rows", "5:3"],
        vec!["--rows", "0:3001"],
        vec!["--rows", "x"],
        vec!["--sample", "0"],
        vec!["--sample", "3001"],
    ] {
        let mut args = vec!["spectrum".to_string(), p(&shards)];
        args.extend(bad.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let r = repscope(&refs);
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs spectrum on `args`, expects exit 2 and one line naming every `want`.
fn refused(args: &[&str], want: &[&str]) {
    let mut a = vec!["spectrum"];
    a.extend_from_slice(args);
    let r = repscope(&a);
    assert_eq!(r.code, 2, "{a:?}: {}", r.stderr);
    let line = r.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(!line.contains("panicked"), "{line}");
    for w in want {
        assert!(line.contains(w), "{a:?}: '{line}' lacks '{w}'");
    }
}

#[test]
fn bad_shards_are_named() {
    let dir = scratch("shards-bad");
    let (_, d, x) = data();
    let mk = |name: &str| -> PathBuf {
        let f = dir.join(name);
        std::fs::create_dir_all(&f).unwrap();
        f
    };
    // Widths.
    let w = mk("widths");
    write_npy_f32(&w.join("a.npy"), 100, d, &x[..100 * d]);
    write_npy_f32(&w.join("b.npy"), 100, d - 1, &x[..100 * (d - 1)]);
    refused(&[&p(&w)], &["b.npy", "23 columns", "same width"]);
    // Dtypes: f64 beside f32.
    let t = mk("dtypes");
    write_npy_f32(&t.join("a.npy"), 100, d, &x[..100 * d]);
    let wide: Vec<u8> = x[..100 * d]
        .iter()
        .flat_map(|&v| (v as f64).to_le_bytes())
        .collect();
    std::fs::write(
        t.join("b.npy"),
        common::npy_bytes("<f8", false, &[100, d], &wide),
    )
    .unwrap();
    refused(&[&p(&t)], &["b.npy", "float64", "float32"]);
    // An empty folder, a pattern that matches nothing.
    let e = mk("empty");
    std::fs::write(e.join("notes.txt"), "not a shard").unwrap();
    refused(&[&p(&e)], &["empty", "no .npy"]);
    refused(&[&format!("{}/*.npy", p(&e))], &["matches no file"]);
    // NaN in the second shard: the shard and its own row are named.
    let nan = mk("nan");
    write_npy_f32(&nan.join("s1.npy"), 100, d, &x[..100 * d]);
    let mut y = x[..100 * d].to_vec();
    y[37 * d + 5] = f32::NAN;
    write_npy_f32(&nan.join("s2.npy"), 100, d, &y);
    refused(&[&p(&nan)], &["s2.npy", "row 37", "column 5"]);
    // A shard shorter than its header.
    let tr = mk("truncated");
    write_npy_f32(&tr.join("s1.npy"), 100, d, &x[..100 * d]);
    let f = tr.join("s2.npy");
    write_npy_f32(&f, 100, d, &x[..100 * d]);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    refused(&[&p(&tr)], &["s2.npy", "truncated"]);
    // A safetensors shard whose offsets do not fit its shape.
    let st = mk("st");
    write_safetensors_f32(&st.join("a.safetensors"), 10, d, &x[..10 * d]);
    // The header promises 11 rows; the data holds 10.
    let bad = st.join("b.safetensors");
    let len = 10 * d * 4;
    let head =
        format!("{{\"x\":{{\"dtype\":\"F32\",\"shape\":[11,{d}],\"data_offsets\":[0,{len}]}}}}");
    let mut b = (head.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(head.as_bytes());
    b.extend(x[..10 * d].iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(&bad, b).unwrap();
    refused(&[&p(&st)], &["b.safetensors"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn activations_of_shards_are_those_of_one_file() {
    let dir = scratch("shards-activations");
    let (n, d, mut x) = data();
    // Massive values planted on both sides of a shard boundary.
    let planted = [(17usize, 3usize), (1199, 0), (1200, 9), (2500, 23)];
    for &(r, c) in &planted {
        x[r * d + c] = 1e5;
    }
    let whole = dir.join("whole.npy");
    write_npy_f32(&whole, n, d, &x);
    let shards = dir.join("s");
    std::fs::create_dir_all(&shards).unwrap();
    write_npy_f32(&shards.join("a_1.npy"), 1200, d, &x[..1200 * d]);
    write_safetensors_f32(&shards.join("a_2.safetensors"), n - 1200, d, &x[1200 * d..]);
    let ids: Vec<u8> = (0..n as i64).flat_map(|i| (i * 3).to_le_bytes()).collect();
    let idf = dir.join("ids.npy");
    std::fs::write(&idf, common::npy_bytes("<i8", false, &[n], &ids)).unwrap();
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("input");
        v
    };
    let base = ok(&[
        "activations",
        &p(&whole),
        "--token-ids",
        &p(&idf),
        "--json",
        "-q",
    ]);
    let sh = ok(&[
        "activations",
        &p(&shards),
        "--token-ids",
        &p(&idf),
        "--json",
        "-q",
    ]);
    assert_eq!(sh["input"]["shards"], 2);
    let listed = |v: &serde_json::Value| -> Vec<(u64, u64, u64)> {
        v["massive"]["listed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["row"].as_u64().unwrap(),
                    m["dim"].as_u64().unwrap(),
                    m["token_id"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let mut want: Vec<(u64, u64, u64)> = planted
        .iter()
        .map(|&(r, c)| (r as u64, c as u64, 3 * r as u64))
        .collect();
    let mut got = listed(&sh);
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Every statistic agrees (means and variances to the last digits, counts exactly).
    let (a, b) = (strip(sh.clone()), strip(base));
    assert_eq!(a["massive"], b["massive"]);
    assert_eq!(a["row_norm_quantiles"], b["row_norm_quantiles"]);
    assert_eq!(a["zero_fraction"], b["zero_fraction"]);
    let (ga, gb) = (
        a["outlier_ratio"].as_f64().unwrap(),
        b["outlier_ratio"].as_f64().unwrap(),
    );
    assert!((ga - gb).abs() < 1e-12 * gb);
    // A row range keeps the rows' own token ids: row 1199 of the source is row 199 of 1000:2100.
    let r = ok(&[
        "activations",
        &p(&shards),
        "--token-ids",
        &p(&idf),
        "--rows",
        "1000:2100",
        "--json",
        "-q",
    ]);
    let mut got = listed(&r);
    got.sort();
    assert_eq!(got, vec![(199, 0, 3597), (200, 9, 3600)]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sae_train_and_eval_read_shards() {
    let dir = scratch("shards-sae");
    let (n, d, x) = data();
    let whole = dir.join("whole.npy");
    write_npy_f32(&whole, n, d, &x);
    let shards = dir.join("s");
    std::fs::create_dir_all(&shards).unwrap();
    write_npy_f32(&shards.join("p_1.npy"), 1000, d, &x[..1000 * d]);
    write_safetensors_f32(&shards.join("p_2.safetensors"), n - 1000, d, &x[1000 * d..]);
    let train = |src: &Path, out: &Path| {
        ok(&[
            "sae",
            "train",
            &p(src),
            "-o",
            &p(out),
            "--width",
            "32",
            "-k",
            "4",
            "--batch",
            "250",
            "--seed",
            "1",
            "--json",
            "-q",
        ])
    };
    let (a, b) = (dir.join("sae_a"), dir.join("sae_b"));
    train(&whole, &a);
    train(&shards, &b);
    // The same rows in the same order: bit-identical weights.
    assert_eq!(
        std::fs::read(a.join("sae_weights.safetensors")).unwrap(),
        std::fs::read(b.join("sae_weights.safetensors")).unwrap()
    );
    let e1 = ok(&["sae", "eval", &p(&a), &p(&whole), "--json", "-q"]);
    let e2 = ok(&["sae", "eval", &p(&a), &p(&shards), "--json", "-q"]);
    for k in ["fvu", "l0", "mse", "dead_latents"] {
        assert_eq!(e1[k], e2[k], "{k}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Y: a linear map of X's first columns, a squared column and noise (3,000 × 10), so that every measure
/// is far from 0 and 1.
fn second_view(n: usize, d: usize, x: &[f32]) -> (usize, Vec<f32>) {
    let dy = 10;
    let mut g = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = || {
        g ^= g << 13;
        g ^= g >> 7;
        g ^= g << 17;
        (g >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut y = Vec::with_capacity(n * dy);
    for i in 0..n {
        let r = &x[i * d..(i + 1) * d];
        for j in 0..dy {
            let v = match j {
                0 => r[0] as f64 * r[0] as f64,
                _ => r[j] as f64 - 0.5 * r[j + 1] as f64 + 0.3 * noise(),
            };
            y.push(v as f32);
        }
    }
    (dy, y)
}

fn write_shards(dir: &Path, x: &[f32], d: usize, cuts: &[usize]) {
    std::fs::create_dir_all(dir).unwrap();
    for (s, w) in cuts.windows(2).enumerate() {
        write_npy_f32(
            &dir.join(format!("part_{s}.npy")),
            w[1] - w[0],
            d,
            &x[w[0] * d..w[1] * d],
        );
    }
}

fn close(what: &str, a: &serde_json::Value, b: &serde_json::Value, tol: f64) {
    let (x, y) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!(
        (x - y).abs() <= tol * x.abs().max(y.abs()).max(1e-300),
        "{what}: {x} against {y}"
    );
}

#[test]
fn compare_streams_shards_with_the_numbers_of_the_in_memory_path() {
    let dir = scratch("compare-stream");
    let (n, d, x) = data();
    let (dy, y) = second_view(n, d, &x);
    let (xf, yf) = (dir.join("x.npy"), dir.join("y.npy"));
    write_npy_f32(&xf, n, d, &x);
    write_npy_f32(&yf, n, dy, &y);
    write_shards(&dir.join("xs"), &x, d, &[0, 1, 1500, 2999, n]);
    write_shards(&dir.join("ys"), &y, dy, &[0, 1024, n]);
    let measures = "cka_linear,cka_linear_debiased,cca,procrustes";
    // In memory, each CCA route; streamed, from a folder and a pattern.
    let svd = ok(&[
        "compare",
        &p(&xf),
        &p(&yf),
        "-m",
        measures,
        "--cca-route",
        "svd",
        "--json",
        "-q",
    ]);
    let cov = ok(&[
        "compare",
        &p(&xf),
        &p(&yf),
        "-m",
        measures,
        "--cca-route",
        "covariance",
        "--json",
        "-q",
    ]);
    let pattern = p(&dir.join("ys").join("*.npy"));
    let st = ok(&[
        "compare",
        &p(&dir.join("xs")),
        &pattern,
        "-m",
        measures,
        "--stream",
        "--json",
        "-q",
    ]);
    assert_eq!(svd["params"]["cca_route"], "svd");
    assert_eq!(st["params"]["streamed"], true);
    assert_eq!(st["params"]["cca_route"], "covariance");
    assert_eq!(st["input"]["a"]["shards"], 4);
    assert_eq!(st["input"]["b"]["shards"], 2);
    let names = [
        "cka_linear",
        "cka_linear_debiased",
        "cca_mean_rho",
        "cca_r2",
        "svcca",
        "pwcca",
        "procrustes_angular",
        "procrustes_euclidean",
    ];
    for m in names {
        let v = st["measures"][m].as_f64().unwrap();
        assert!(v > 0.01 && v < 0.999, "{m} = {v}");
        // The same pass of sums in memory and streamed.
        close(m, &cov["measures"][m], &st["measures"][m], 1e-12);
        // The SVD route agrees with the covariance route on these well-conditioned sides.
        close(m, &svd["measures"][m], &st["measures"][m], 1e-9);
    }
    let rho_s = svd["details"]["cca"]["rho"].as_array().unwrap();
    let rho_c = st["details"]["cca"]["rho"].as_array().unwrap();
    assert_eq!(rho_s.len(), rho_c.len());
    for (a, b) in rho_s.iter().zip(rho_c) {
        assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9);
    }
    // Chunking does not matter: a selection of rows streams the numbers of that slice in memory.
    let part = ok(&[
        "compare",
        &p(&dir.join("xs")),
        &pattern,
        "-m",
        measures,
        "--rows",
        "100:2100",
        "--stream",
        "--json",
        "-q",
    ]);
    assert_eq!(part["params"]["streamed"], true);
    let (xs, ys) = (dir.join("x2.npy"), dir.join("y2.npy"));
    write_npy_f32(&xs, 2000, d, &x[100 * d..2100 * d]);
    write_npy_f32(&ys, 2000, dy, &y[100 * dy..2100 * dy]);
    let mem = ok(&[
        "compare",
        &p(&xs),
        &p(&ys),
        "-m",
        measures,
        "--cca-route",
        "covariance",
        "--json",
        "-q",
    ]);
    for m in names {
        close(m, &mem["measures"][m], &part["measures"][m], 1e-12);
    }
    // Default measures on a streamed pair are those that stream, with a note; rows must match.
    let r = repscope(&["compare", &p(&dir.join("xs")), &p(&xs), "--stream", "-q"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("rows") && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_labels(path: &Path, ids: &[i64]) {
    let bytes: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, common::npy_bytes("<i8", false, &[ids.len()], &bytes)).unwrap();
}

#[test]
fn classes_stream_shards_with_the_numbers_of_the_in_memory_path() {
    let dir = scratch("classes-stream");
    let (n, d, mut x) = data();
    // Five classes: each moves its rows along its own direction.
    let ids: Vec<i64> = (0..n).map(|i| ((i * 7) % 5) as i64).collect();
    for (i, &c) in ids.iter().enumerate() {
        x[i * d + c as usize] += 4.0;
    }
    let xf = dir.join("x.npy");
    write_npy_f32(&xf, n, d, &x);
    write_shards(&dir.join("xs"), &x, d, &[0, 700, 701, n]);
    let lf = dir.join("labels.npy");
    write_labels(&lf, &ids);
    let mem = ok(&["classes", &p(&xf), "--labels", &p(&lf), "--json", "-q"]);
    let st = ok(&[
        "classes",
        &p(&dir.join("xs")),
        "--labels",
        &p(&lf),
        "--stream",
        "--knn-sample",
        "3000",
        "--json",
        "-q",
    ]);
    assert_eq!(st["input"]["shards"], 3);
    let nc = |v: &serde_json::Value, k: &str| v["neural_collapse"][k].clone();
    for k in ["nc1", "nc2_equinorm", "nc2_equiangularity", "nc2_max_angle"] {
        close(k, &nc(&mem, k), &nc(&st, k), 1e-12);
    }
    for k in ["cdnv", "ncc_accuracy"] {
        close(k, &mem[k], &st[k], 1e-12);
    }
    let v = mem["neural_collapse"]["nc1"].as_f64().unwrap();
    assert!(v > 0.01 && v < 100.0, "nc1 = {v}");
    // A sample of every row is every row: the same vote.
    assert_eq!(
        mem["knn_accuracy"]["accuracy"],
        st["knn_accuracy"]["accuracy"]
    );
    // On a smaller sample the vote says so.
    let small = ok(&[
        "classes",
        &p(&dir.join("xs")),
        "--labels",
        &p(&lf),
        "--stream",
        "--knn-sample",
        "500",
        "--json",
        "-q",
    ]);
    assert_eq!(small["knn_accuracy"]["rows"], 500);
    assert_eq!(small["knn_accuracy"]["sample_seed"], 0);
    close("cdnv", &mem["cdnv"], &small["cdnv"], 1e-12);
    assert!(small["notes"].to_string().contains("sample of 500"));
    // --rows cuts the labels with the rows.
    let part = ok(&[
        "classes",
        &p(&dir.join("xs")),
        "--labels",
        &p(&lf),
        "--rows",
        "0:1500",
        "--json",
        "-q",
    ]);
    let (xs, ls) = (dir.join("x2.npy"), dir.join("l2.npy"));
    write_npy_f32(&xs, 1500, d, &x[..1500 * d]);
    write_labels(&ls, &ids[..1500]);
    let m2 = ok(&["classes", &p(&xs), "--labels", &p(&ls), "--json", "-q"]);
    for k in ["cdnv", "ncc_accuracy"] {
        close(k, &m2[k], &part[k], 1e-12);
    }
    assert_eq!(
        m2["knn_accuracy"]["accuracy"],
        part["knn_accuracy"]["accuracy"]
    );
    // Labels of another length are refused, naming the labels file.
    write_labels(&ls, &ids[..n - 1]);
    let r = repscope(&[
        "classes",
        &p(&dir.join("xs")),
        "--labels",
        &p(&ls),
        "--stream",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    for w in ["l2.npy", "2999 labels", "3000 rows"] {
        assert!(r.stderr.contains(w), "'{}' lacks '{w}'", r.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn npz_f64(path: &Path, key: &str) -> Vec<f64> {
    all_f64(&repscope::data::load_matrix(path, Some(key)).unwrap())
}

/// An integer member of an .npz file (uint32 indices, int64 row numbers).
fn npz_ints(path: &Path, key: &str) -> Vec<i64> {
    use std::io::Read;
    let mut ar = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut f = ar.by_name(&format!("{key}.npy")).unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    let h = repscope::data::npy::parse_header(&buf, path).unwrap();
    let data = &buf[h.data_offset..];
    match h.size {
        4 => data
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as i64)
            .collect(),
        8 => data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        s => panic!("{key}: {s}-byte integers"),
    }
}

/// A float64 member of an .npz file, read raw (1-D arrays too).
fn npz_f64_raw(path: &Path, key: &str) -> Vec<f64> {
    npz_ints(path, key)
        .into_iter()
        .map(|b| f64::from_bits(b as u64))
        .collect()
}

fn all_f64(m: &repscope::Matrix) -> Vec<f64> {
    let mut out = vec![0.0; m.rows() * m.cols()];
    for (i, o) in out.chunks_exact_mut(m.cols()).enumerate() {
        m.row_f64_into(i, o);
    }
    out
}

#[test]
fn neighbour_measures_read_sources_and_name_the_rows_of_a_sample() {
    let dir = scratch("shards-neighbours");
    let (n, d, x) = data();
    let shards = dir.join("s");
    std::fs::create_dir_all(&shards).unwrap();
    write_npy_f32(&shards.join("a_1.npy"), 1200, d, &x[..1200 * d]);
    write_safetensors_f32(&shards.join("a_2.safetensors"), n - 1200, d, &x[1200 * d..]);
    let whole = dir.join("whole.npy");
    write_npy_f32(&whole, n, d, &x);
    // The exact graph of a folder of shards is the graph of the one file.
    let (w, s) = (dir.join("w.npz"), dir.join("s.npz"));
    ok(&["knn", &p(&whole), "-k", "5", "-o", &p(&w), "--json", "-q"]);
    let v = ok(&["knn", &p(&shards), "-k", "5", "-o", &p(&s), "--json", "-q"]);
    assert_eq!(v["input"]["shards"], 2);
    assert!(v["selection"].is_null());
    assert_eq!(npz_ints(&w, "indices"), npz_ints(&s, "indices"));
    assert_eq!(npz_f64(&w, "distances"), npz_f64(&s, "distances"));
    let keys = repscope::data::list_keys(&s).unwrap();
    assert!(!keys.iter().any(|k| k == "rows"), "{keys:?}");
    // A seeded sample: the output names its source rows, and its graph is the graph of those rows alone.
    let (ks, m) = (dir.join("ks.npz"), 400usize);
    let v = ok(&[
        "knn",
        &p(&shards),
        "-k",
        "5",
        "--sample",
        "400",
        "--seed",
        "7",
        "-o",
        &p(&ks),
        "--json",
        "-q",
    ]);
    let note = v["selection"].as_str().unwrap();
    assert!(
        note.contains("sample of 400 of 3000 rows (seed 7)"),
        "{note}"
    );
    let rows: Vec<usize> = npz_ints(&ks, "rows").iter().map(|&r| r as usize).collect();
    assert_eq!(rows.len(), m);
    assert!(rows.windows(2).all(|w| w[0] < w[1]) && *rows.last().unwrap() < n);
    // Rows on both sides of the shard boundary are drawn.
    assert!(rows[0] < 1200 && rows[m - 1] >= 1200);
    let sub: Vec<f32> = rows
        .iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
        .collect();
    let subf = dir.join("sub.npy");
    write_npy_f32(&subf, m, d, &sub);
    let kw = dir.join("kw.npz");
    ok(&["knn", &p(&subf), "-k", "5", "-o", &p(&kw), "--json", "-q"]);
    assert_eq!(npz_ints(&ks, "indices"), npz_ints(&kw, "indices"));
    assert_eq!(npz_f64(&ks, "distances"), npz_f64(&kw, "distances"));
    // The same seed draws the same rows for lid, which needs an .npz to keep them.
    let r = repscope(&[
        "lid",
        &p(&shards),
        "--sample",
        "400",
        "--seed",
        "7",
        "-o",
        &p(&dir.join("l.npy")),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(".npz"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let (ls, lw) = (dir.join("ls.npz"), dir.join("lw.npy"));
    let v = ok(&[
        "lid",
        &p(&shards),
        "-k",
        "10",
        "--sample",
        "400",
        "--seed",
        "7",
        "-o",
        &p(&ls),
        "--json",
        "-q",
    ]);
    assert!(v["selection"].as_str().unwrap().contains("sample of 400"));
    ok(&["lid", &p(&subf), "-k", "10", "-o", &p(&lw), "--json", "-q"]);
    let rows2: Vec<usize> = npz_ints(&ls, "rows").iter().map(|&r| r as usize).collect();
    assert_eq!(rows2, rows);
    let buf = std::fs::read(&lw).unwrap();
    let h = repscope::data::npy::parse_header(&buf, &lw).unwrap();
    let lw_v: Vec<f64> = buf[h.data_offset..]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(lw_v.len(), m);
    let ls_v = npz_f64_raw(&ls, "lid");
    assert_eq!(ls_v, lw_v);
    // The ID suite on the sample is the suite on those rows (the one seed also seeds its decimation).
    let a = ok(&[
        "id",
        &p(&shards),
        "--sample",
        "400",
        "--seed",
        "7",
        "--json",
        "-q",
    ]);
    let b = ok(&["id", &p(&subf), "--seed", "7", "--json", "-q"]);
    assert!(a["selection"].as_str().unwrap().contains("sample of 400"));
    assert!(b["selection"].is_null());
    for key in ["estimates", "scale_curve", "dimension", "neighbours"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    // --rows: a range of rows across the boundary, said so.
    let v = ok(&[
        "id",
        &p(&shards),
        "--rows",
        "1000:1500",
        "-e",
        "twonn",
        "--json",
        "-q",
    ]);
    assert!(v["selection"]
        .as_str()
        .unwrap()
        .contains("rows 1000:1500 (500 of 3000 rows)"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Hugging Face activation-cache shard: records of `ctx` tokens, a column `hook` of
/// `list<list<float32>>` (an `Array2D(ctx, d)` per record) and a column `token_ids` of `list<int32>`
/// (`ids.1` per record).
fn write_cache_shard(
    path: &Path,
    x: &[f32],
    d: usize,
    ctx: usize,
    ids: (&[i32], usize),
    parquet: bool,
) {
    use arrow_array::builder::{Float32Builder, Int32Builder, ListBuilder};
    use std::sync::Arc;
    let mut h = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
    let mut t = ListBuilder::new(Int32Builder::new());
    for (rec, idr) in x.chunks(ctx * d).zip(ids.0.chunks(ids.1)) {
        for tok in rec.chunks(d) {
            h.values().values().append_slice(tok);
            h.values().append(true);
        }
        h.append(true);
        t.values().append_slice(idr);
        t.append(true);
    }
    let (h, t): (arrow_array::ArrayRef, arrow_array::ArrayRef) =
        (Arc::new(h.finish()), Arc::new(t.finish()));
    let batch = arrow_array::RecordBatch::try_from_iter([("token_ids", t), ("hook", h)]).unwrap();
    let f = std::fs::File::create(path).unwrap();
    if parquet {
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    } else {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(f, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
}

#[test]
fn activations_take_token_ids_from_the_cache_beside_the_rows() {
    let dir = scratch("cache-token-ids");
    let (n, d, mut x) = data();
    let ctx = 4;
    let planted = [(17usize, 3usize), (1199, 0), (1200, 9), (2500, 23)];
    for &(r, c) in &planted {
        x[r * d + c] = 1e5;
    }
    let ids: Vec<i32> = (0..n as i32).map(|i| 3 * i + 1).collect();
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // 300 records of 4 tokens in an Arrow stream, the other 450 in parquet.
    let cut = 1200;
    write_cache_shard(
        &cache.join("data-00000-of-00002.arrow"),
        &x[..cut * d],
        d,
        ctx,
        (&ids[..cut], ctx),
        false,
    );
    write_cache_shard(
        &cache.join("data-00001-of-00002.parquet"),
        &x[cut * d..],
        d,
        ctx,
        (&ids[cut..], ctx),
        true,
    );
    let listed = |v: &serde_json::Value| -> Vec<(u64, u64, u64)> {
        let mut out: Vec<(u64, u64, u64)> = v["massive"]["listed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let id = m["token_id"].as_u64().unwrap_or(u64::MAX);
                (m["row"].as_u64().unwrap(), m["dim"].as_u64().unwrap(), id)
            })
            .collect();
        out.sort();
        out
    };
    let v = ok(&["activations", &p(&cache), "--key", "hook", "--json", "-q"]);
    assert_eq!(v["input"]["rows"], n);
    let want: Vec<(u64, u64, u64)> = planted
        .iter()
        .map(|&(r, c)| (r as u64, c as u64, 3 * r as u64 + 1))
        .collect();
    assert_eq!(listed(&v), want);
    // A range keeps each row's own id.
    let v = ok(&[
        "activations",
        &p(&cache),
        "--key",
        "hook",
        "--rows",
        "1000:2100",
        "--json",
        "-q",
    ]);
    assert_eq!(listed(&v), vec![(199, 0, 3598), (200, 9, 3601)]);
    // A cache whose ids are one per record, not per token, gives no ids rather than wrong ones.
    let per_record = dir.join("per_record");
    std::fs::create_dir_all(&per_record).unwrap();
    let rec_ids: Vec<i32> = (0..(n / ctx) as i32).collect();
    write_cache_shard(
        &per_record.join("a.arrow"),
        &x,
        d,
        ctx,
        (&rec_ids, 1),
        false,
    );
    let v = ok(&[
        "activations",
        &per_record.join("a.arrow").display().to_string(),
        "--key",
        "hook",
        "--json",
        "-q",
    ]);
    assert!(
        listed(&v).iter().all(|m| m.2 == u64::MAX),
        "{:?}",
        listed(&v)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn neighbour_measures_refuse_a_source_larger_than_memory_before_reading_it() {
    let dir = scratch("neighbours-too-big");
    let shards = dir.join("s");
    std::fs::create_dir_all(&shards).unwrap();
    // A sparse 1 TiB shard (2^26 rows × 4096 f32): only its header is on disk.
    let (n, d) = (1usize << 26, 4096usize);
    let head = common::npy_bytes("<f4", false, &[n, d], &[]);
    let f = shards.join("big.npy");
    std::fs::write(&f, &head).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
    file.set_len((head.len() + n * d * 4) as u64).unwrap();
    drop(file);
    let g = dir.join("g.npz");
    for args in [
        vec!["knn".to_string(), p(&shards), "-o".into(), p(&g)],
        vec!["id".into(), p(&shards), "--rows".into(), format!("0:{n}")],
        vec!["lid".into(), p(&shards), "-o".into(), p(&dir.join("l.npz"))],
    ] {
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let r = repscope(&refs);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("--sample") && r.stderr.contains("GiB"),
            "{}",
            r.stderr
        );
        assert!(!g.exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Duplicates planted across shard boundaries, found by `spectrum --duplicates` and `activations` alike,
/// with the counts of a brute-force grouping; a row that differs from its twin in one value's last bit, or
/// only in the sign of a zero, is told apart (or not) exactly.
#[test]
fn duplicate_rows_are_found_across_shards() {
    let dir = scratch("shards-duplicates");
    let (n, d, mut x) = data();
    // Row 7's values copied to rows 1500, 2999 and 400; rows 10 and 2500 equal; row 20 a near twin of
    // 21 (one value one ulp apart); row 30 equal to row 31 but for a zero's sign.
    let copy = |x: &mut Vec<f32>, from: usize, to: usize| {
        let r: Vec<f32> = x[from * d..(from + 1) * d].to_vec();
        x[to * d..(to + 1) * d].copy_from_slice(&r);
    };
    for to in [1500, 2999, 400] {
        copy(&mut x, 7, to);
    }
    copy(&mut x, 10, 2500);
    copy(&mut x, 20, 21);
    x[21 * d + 3] = f32::from_bits(x[21 * d + 3].to_bits() + 1);
    x[30 * d + 5] = 0.0;
    copy(&mut x, 30, 31);
    x[31 * d + 5] = -0.0;
    // Brute force: group rows by their values as numbers.
    let mut groups: Vec<(usize, u64)> = Vec::new();
    let mut distinct = 0;
    for i in 0..n {
        let row = &x[i * d..(i + 1) * d];
        let first = (0..i).find(|&j| x[j * d..(j + 1) * d] == *row);
        if first.is_none() {
            distinct += 1;
            let c = (i..n).filter(|&j| x[j * d..(j + 1) * d] == *row).count() as u64;
            if c > 1 {
                groups.push((i, c));
            }
        }
    }
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(groups, vec![(7, 4), (10, 2), (30, 2)]);
    let shards = dir.join("shards");
    write_shards(&shards, &x, d, &[0, 1, 999, 2000, n]);
    let check = |doc: &serde_json::Value| {
        let dup = &doc["duplicates"];
        assert_eq!(dup["rows"], n);
        assert_eq!(dup["distinct"], distinct);
        assert_eq!(dup["merged"], n - distinct);
        assert_eq!(dup["groups"], groups.len());
        assert_eq!(dup["max_multiplicity"], 4);
        assert_eq!(dup["hash_collisions"], 0);
        assert_eq!(dup["verification_passes"], 1);
        let listed: Vec<(usize, u64)> = dup["largest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["first_row"].as_u64().unwrap() as usize,
                    g["rows"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed, groups);
    };
    let s = ok(&["spectrum", &p(&shards), "--duplicates", "--json", "-q"]);
    check(&s);
    assert!(
        s["notes"].as_array().unwrap().iter().any(|t| t
            .as_str()
            .unwrap()
            .contains("5 of 3000 rows repeat an earlier row")),
        "{}",
        s["notes"]
    );
    check(&ok(&["activations", &p(&shards), "--json", "-q"]));
    // Without the flag the spectrum says nothing about duplicates; activations can be told not to look.
    let s = ok(&["spectrum", &p(&shards), "--json", "-q"]);
    assert!(s["duplicates"].is_null());
    let a = ok(&[
        "activations",
        &p(&shards),
        "--no-duplicates",
        "--json",
        "-q",
    ]);
    assert!(a["duplicates"].is_null());
    // Distinct rows: no verification pass.
    let (_, _, y) = data();
    let whole = dir.join("distinct.npy");
    write_npy_f32(&whole, n, d, &y);
    let s = ok(&["spectrum", &p(&whole), "--duplicates", "--json", "-q"]);
    assert_eq!(s["duplicates"]["merged"], 0);
    assert_eq!(s["duplicates"]["verification_passes"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
