//! Regressions of the hostile-input probe: existing outputs, diagnoses of odd paths, self-consistent advice,
//! silent results that now carry an error or a note, parameters out of range, a truncated input, and results
//! that do not depend on the thread count.
mod common;
use common::*;

/// Exit code 2, one error line containing every needle, nothing on stdout, no panic.
fn expect_error(args: &[&str], needles: &[&str]) -> String {
    let r = repscope(args);
    assert_eq!(
        r.code, 2,
        "args {args:?}: exit {} stderr {}",
        r.code, r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    assert!(r.stdout.is_empty(), "{args:?}: stdout {}", r.stdout);
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "args {args:?}: stderr lacks {n:?}:\n{}",
            r.stderr
        );
    }
    r.stderr
}

fn ok(args: &[&str]) -> Run {
    let r = repscope(args);
    assert_eq!(r.code, 0, "args {args:?}: {}", r.stderr);
    r
}

fn data(d: &std::path::Path, name: &str, n: usize, dim: usize) -> String {
    let p = d.join(name);
    write_npy_f32(&p, n, dim, &subspace_data(n, dim, 5));
    p.to_str().unwrap().to_string()
}

#[test]
fn existing_outputs_need_force() {
    let d = scratch("force");
    let x = data(&d, "x.npy", 120, 4);
    let g = d.join("g.npz");
    let gs = g.to_str().unwrap();
    ok(&["knn", &x, "-k", "3", "-o", gs, "-q"]);
    let before = std::fs::read(&g).unwrap();
    expect_error(
        &["knn", &x, "-k", "4", "-o", gs, "-q"],
        &["g.npz", "exists", "--force"],
    );
    assert_eq!(std::fs::read(&g).unwrap(), before, "refused output changed");
    ok(&["knn", &x, "-k", "4", "-o", gs, "-q", "--force"]);
    assert_ne!(std::fs::read(&g).unwrap(), before);
    let l = d.join("l.npy");
    let ls = l.to_str().unwrap();
    ok(&["lid", &x, "-k", "5", "-o", ls, "-q"]);
    expect_error(&["lid", &x, "-k", "5", "-o", ls], &["exists", "--force"]);
    let h = d.join("i.hnsw");
    let hs = h.to_str().unwrap();
    ok(&["index", "build", &x, "-o", hs, "-q"]);
    expect_error(&["index", "build", &x, "-o", hs], &["exists", "--force"]);
    let q = d.join("q.npz");
    let qs = q.to_str().unwrap();
    ok(&[
        "index",
        "query",
        hs,
        "--queries",
        &x,
        "-k",
        "3",
        "-o",
        qs,
        "-q",
    ]);
    expect_error(
        &["index", "query", hs, "--queries", &x, "-k", "3", "-o", qs],
        &["exists", "--force"],
    );
    // datasets into a folder that already holds files.
    let ds = d.join("ds");
    let dss = ds.to_str().unwrap();
    ok(&[
        "datasets",
        "manifolds",
        "-o",
        dss,
        "-n",
        "50",
        "--name",
        "M1_Sphere",
        "-q",
    ]);
    expect_error(
        &[
            "datasets",
            "manifolds",
            "-o",
            dss,
            "-n",
            "50",
            "--name",
            "M1_Sphere",
        ],
        &["not empty", "--force"],
    );
    ok(&[
        "datasets",
        "manifolds",
        "-o",
        dss,
        "-n",
        "50",
        "--name",
        "M1_Sphere",
        "-q",
        "--force",
    ]);
}

#[test]
fn odd_paths_are_diagnosed() {
    let d = scratch("paths");
    let folder = d.join("dir.npy");
    std::fs::create_dir_all(&folder).unwrap();
    // A command of one file says the path is a folder; one that reads shards, that it holds none.
    let out = d.join("i.hnsw");
    expect_error(
        &[
            "index",
            "build",
            folder.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &["dir.npy", "is a folder"],
    );
    expect_error(
        &["id", folder.to_str().unwrap()],
        &["dir.npy", "holds no .npy, .npz or .safetensors file"],
    );
    let bare = d.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    expect_error(
        &[
            "index",
            "build",
            bare.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        &["is a folder"],
    );
    expect_error(
        &[
            "knn",
            bare.to_str().unwrap(),
            "-o",
            d.join("g.npz").to_str().unwrap(),
        ],
        &["holds no"],
    );
    #[cfg(unix)]
    {
        let a = d.join("a.npy");
        let b = d.join("b.npy");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        expect_error(&["id", a.to_str().unwrap()], &["loop of symbolic links"]);
        let dangling = d.join("dangling.npy");
        std::os::unix::fs::symlink(d.join("gone.npy"), &dangling).unwrap();
        expect_error(
            &["id", dangling.to_str().unwrap()],
            &["target does not exist"],
        );
        // A FIFO would block a reader forever: it is refused before it is opened.
        let fifo = d.join("fifo.npy");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            expect_error(&["id", fifo.to_str().unwrap()], &["not a regular file"]);
        }
    }
}

#[test]
fn label_files_are_diagnosed() {
    let d = scratch("labels");
    let x = data(&d, "x.npy", 60, 3);
    // Two arrays in a labels .npz: the flag named is --labels-key.
    let ids: Vec<u8> = (0..60i64).flat_map(|i| (i % 3).to_le_bytes()).collect();
    let member = npy_bytes("<i8", false, &[60], &ids);
    let z = d.join("labs.npz");
    write_npz(&z, &[("a", member.clone()), ("b", member)], false);
    let e = expect_error(
        &["classes", &x, "--labels", z.to_str().unwrap()],
        &["--labels-key: a, b"],
    );
    assert!(!e.contains("--key:"), "{e}");
    ok(&[
        "classes",
        &x,
        "--labels",
        z.to_str().unwrap(),
        "--labels-key",
        "a",
        "-q",
    ]);
    let st = d.join("labels.safetensors");
    std::fs::write(&st, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ").unwrap();
    expect_error(
        &["classes", &x, "--labels", st.to_str().unwrap()],
        &["not read from .safetensors", ".npy"],
    );
    let bin = d.join("labels.txt");
    std::fs::write(&bin, b"\xff\xfe\x00").unwrap();
    expect_error(
        &["classes", &x, "--labels", bin.to_str().unwrap()],
        &["invalid UTF-8", "one label per line"],
    );
}

#[test]
fn advice_never_contradicts_itself() {
    let d = scratch("advice");
    let two = d.join("two.npy");
    write_npy_f32(&two, 2, 2, &[0.0, 0.0, 1.0, 1.0]);
    let t = two.to_str().unwrap();
    let e = expect_error(&["id", t], &["at least 3 distinct rows"]);
    assert!(!e.contains("k ≤ 1"), "{e}");
    // PCA alone needs no neighbours.
    ok(&["id", t, "-e", "pca", "-q"]);
    let x = data(&d, "x.npy", 80, 3);
    let e = expect_error(
        &[
            "lid",
            &x,
            "-k",
            "1",
            "-o",
            d.join("l.npy").to_str().unwrap(),
        ],
        &["k ≥ 2"],
    );
    assert!(!e.contains("≤ 1"), "{e}");
    let rows3 = d.join("rows3.npy");
    write_npy_f32(&rows3, 3, 2, &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    let e = expect_error(
        &["search-study", rows3.to_str().unwrap(), "-k", "1"],
        &["needs at least 3"],
    );
    assert!(!e.contains("fewer than k = 1"), "{e}");
}

#[test]
fn sizes_are_checked_against_memory() {
    expect_error(&["demo", "-n", "1000000000"], &["GiB", "-n"]);
    let d = scratch("sizes");
    expect_error(
        &[
            "datasets",
            "manifolds",
            "-o",
            d.join("o").to_str().unwrap(),
            "-n",
            "1000000000",
        ],
        &["GiB", "fewer"],
    );
}

#[test]
fn silent_results_now_speak() {
    let d = scratch("silent");
    let x = data(&d, "x.npy", 90, 4);
    // Every row its own class.
    let own: Vec<u8> = (0..90i64).flat_map(|i| i.to_le_bytes()).collect();
    let lp = d.join("own.npy");
    std::fs::write(&lp, npy_bytes("<i8", false, &[90], &own)).unwrap();
    expect_error(
        &["classes", &x, "--labels", lp.to_str().unwrap()],
        &["single row", "several rows per class"],
    );
    // k = 0 and k ≥ n: the kNN accuracy is absent with a note saying why.
    let three: Vec<u8> = (0..90i64).flat_map(|i| (i % 3).to_le_bytes()).collect();
    let l3 = d.join("three.npy");
    std::fs::write(&l3, npy_bytes("<i8", false, &[90], &three)).unwrap();
    for k in ["0", "90", "500"] {
        let r = ok(&[
            "classes",
            &x,
            "--labels",
            l3.to_str().unwrap(),
            "-k",
            k,
            "--json",
        ]);
        let v = json(&r);
        assert!(v["knn_accuracy"].is_null(), "k = {k}");
        let notes = v["notes"].to_string();
        assert!(
            notes.contains("kNN accuracy not computed"),
            "k = {k}: {notes}"
        );
    }
    // A constant B in compare: a clear error, not NaN.
    let c = d.join("const.npy");
    write_npy_f32(&c, 90, 2, &[1.5; 180]);
    expect_error(
        &["compare", &x, c.to_str().unwrap(), "-m", "cka_linear"],
        &["const.npy", "no variance"],
    );
    // A zero row: the spectrum runs and says what it left out.
    let mut v = subspace_data(90, 4, 5);
    v[4..8].fill(0.0);
    let z = d.join("zero_row.npy");
    write_npy_f32(&z, 90, 4, &v);
    let r = ok(&["spectrum", z.to_str().unwrap(), "--json"]);
    let doc = json(&r);
    assert!(
        doc["notes"].to_string().contains("1 all-zero rows"),
        "{}",
        doc["notes"]
    );
    assert!(doc["anisotropy"].as_f64().is_some_and(f64::is_finite));
}

#[test]
fn out_of_range_values_are_refused_or_stated() {
    let d = scratch("range");
    let x = data(&d, "x.npy", 80, 4);
    expect_error(
        &["compare", &x, &x, "--svcca-threshold", "2"],
        &["--svcca-threshold", "(0, 1]"],
    );
    for rm in ["0", "1"] {
        expect_error(&["id", &x, "--range-max", rm], &["--range-max", "≥ 2"]);
    }
    let mut members = Vec::new();
    for s in 0..2u64 {
        let v = subspace_data(40, 3, 10 + s);
        members.push((
            format!("l{s}"),
            npy_bytes("<f4", false, &[40, 3], &f32_bytes(&v)),
        ));
    }
    let z = d.join("layers.npz");
    let refs: Vec<(&str, Vec<u8>)> = members
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    write_npz(&z, &refs, false);
    let zs = z.to_str().unwrap();
    expect_error(&["layers", zs, "--keys", "l0,l0"], &["named twice"]);
    let r = ok(&["layers", zs, "-k", "10000", "--json"]);
    let v = json(&r);
    assert_eq!(v["k"], 39);
    assert!(
        v["notes"].to_string().contains("k = 10000"),
        "{}",
        v["notes"]
    );
}

/// A file truncated while it is read ends with a message and exit code 2, never a silent SIGBUS.
#[cfg(target_os = "linux")]
#[test]
fn a_truncated_input_ends_with_a_message() {
    let d = scratch("sigbus");
    let (n, dim) = (60_000, 128);
    let p = d.join("big.npy");
    write_npy_f32(&p, n, dim, &subspace_data(n, dim, 2));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_repscope"))
        .args(["spectrum", p.to_str().unwrap(), "--threads", "1", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Truncated before the run mapped it: a header error; during the run: the SIGBUS message; after: 0.
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(2)),
        "exit {code:?} (a signal?) stderr {stderr}"
    );
    if code == Some(2) {
        assert!(
            stderr.contains("truncated") || stderr.contains("promises"),
            "{stderr}"
        );
    }
}

/// Runs with 1, 2 and 3 threads print byte-identical documents (200 columns: large enough for parallel
/// decompositions and several row chunks).
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let d = scratch("threads");
    let x = data(&d, "x.npy", 6000, 200);
    let y = d.join("y.npy");
    let mut v = subspace_data(6000, 200, 9);
    for (a, b) in v.iter_mut().zip(subspace_data(6000, 200, 5)) {
        *a += 0.5 * b;
    }
    write_npy_f32(&y, 6000, 200, &v);
    let ys = y.to_str().unwrap();
    let labels: Vec<u8> = (0..6000i64).flat_map(|i| (i % 7).to_le_bytes()).collect();
    let lp = d.join("labels.npy");
    std::fs::write(&lp, npy_bytes("<i8", false, &[6000], &labels)).unwrap();
    let lps = lp.to_str().unwrap();
    let runs: Vec<Vec<&str>> = vec![
        vec!["spectrum", &x],
        vec!["id", &x],
        vec!["classes", &x, "--labels", lps],
        vec!["compare", &x, ys, "-m", "cka,cca,procrustes"],
    ];
    for args in runs {
        let mut docs = Vec::new();
        for t in ["1", "2", "3"] {
            let mut a = args.clone();
            a.extend(["--json", "--threads", t]);
            let mut v = json(&ok(&a));
            // Wall-clock timings are the one thing allowed to differ.
            let o = v.as_object_mut().unwrap();
            o.remove("timing");
            o.remove("timing_s");
            docs.push(v.to_string());
        }
        assert_eq!(docs[0], docs[1], "{args:?}: 1 vs 2 threads");
        assert_eq!(docs[0], docs[2], "{args:?}: 1 vs 3 threads");
    }
}

/// f64 values so small that their squares underflow (1e-310 is subnormal; below about 1e-154 squares
/// underflow) give the spectrum and the dimension of the same data at ordinary scale, with a note, instead
/// of "zero variance". Exact: the engine scales by a power of two, and the values here have few enough
/// significant bits to survive as subnormals.
#[test]
fn tiny_f64_values_measure_as_the_same_data_at_ordinary_scale() {
    let d = scratch("tiny-f64");
    let (n, dim) = (400, 6);
    let base: Vec<f64> = subspace_data(n, dim, 9)
        .iter()
        .map(|&v| (v as f64 * 65536.0).round() / 65536.0)
        .collect();
    // 2^e in two factors: powi of a power beyond 2^1023 would overflow on the way.
    let pow2 = |e: i32| 2f64.powi(e / 2) * 2f64.powi(e - e / 2);
    let write = |name: &str, e: i32| {
        let scale = pow2(e);
        let bytes: Vec<u8> = base
            .iter()
            .flat_map(|v| (v * scale).to_le_bytes())
            .collect();
        let p = d.join(name);
        std::fs::write(&p, npy_bytes("<f8", false, &[n, dim], &bytes)).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ordinary = write("x.npy", 0);
    let spec = |f: &str| json(&ok(&["spectrum", f, "--coding-rate", "--json", "--quiet"]));
    let want = spec(&ordinary);
    for (name, e) in [("x450.npy", -450), ("x600.npy", -600), ("x1040.npy", -1040)] {
        let f = write(name, e);
        let got = spec(&f);
        // The same to rounding: the eigensolver is not exactly scale-equivariant.
        let close = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * b.abs() + 1e-15,
                "{name} {what}: {a} {b}"
            );
        };
        for key in ["effective_rank", "rankme", "coding_rate"] {
            close(&got[key]["value"], &want[key]["value"], key);
        }
        for key in ["participation_ratio", "anisotropy"] {
            close(&got[key], &want[key], key);
        }
        assert_eq!(got["numerical_rank"], want["numerical_rank"], "{name}");
        let (ga, wa) = (
            got["explained_variance_ratio"].as_array().unwrap(),
            want["explained_variance_ratio"].as_array().unwrap(),
        );
        for (a, b) in ga.iter().zip(wa) {
            close(a, b, "explained_variance_ratio");
        }
        // Variances in the data's units: λ·2^(2e), which underflows to 0 below 1e-308.
        let (w, g) = (
            want["eigenvalues"].as_array().unwrap(),
            got["eigenvalues"].as_array().unwrap(),
        );
        for (a, b) in w.iter().zip(g) {
            let expect = a.as_f64().unwrap() * pow2(e) * pow2(e);
            let b = b.as_f64().unwrap();
            assert!(
                (b - expect).abs() <= 1e-9 * expect.abs() + 1e-320,
                "{name}: {b} against {expect}"
            );
        }
        let notes = got["notes"].to_string();
        assert!(notes.contains("below 2^-400"), "{name}: {notes}");
        // The ID suite (neighbour and PCA estimators) gives the same dimension.
        let id = |f: &str| json(&ok(&["id", f, "--json", "--quiet"]));
        let (a, b) = (id(&ordinary), id(&f));
        close(
            &a["dimension"]["value"],
            &b["dimension"]["value"],
            "dimension",
        );
        let values = |v: &serde_json::Value| -> Vec<(String, f64)> {
            v["estimates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["estimator"].to_string(), e["value"].as_f64().unwrap()))
                .collect()
        };
        let (ea, eb) = (values(&a), values(&b));
        assert_eq!(ea.len(), eb.len(), "{name}: {ea:?} against {eb:?}");
        for ((na, va), (nb, vb)) in ea.iter().zip(&eb) {
            assert_eq!(na, nb);
            assert!((va - vb).abs() <= 1e-9 * va.abs(), "{name} {na}: {va} {vb}");
        }
    }
    // The approximate index stores f32 rows, which cannot hold these values: a clear refusal.
    let f = write("x600.npy", -600);
    let out = d.join("g.npz");
    expect_error(
        &["knn", &f, "--approximate", "-o", out.to_str().unwrap()],
        &["x600.npy", "smallest normal", "exact search"],
    );
    assert!(!out.exists());
}
