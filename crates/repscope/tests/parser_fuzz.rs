//! Property-based fuzzing of the file parsers: `.npy` (matrices and labels), `.npz`, `.safetensors`, the
//! HNSW index file, and parquet and Arrow IPC files and streams (read whole and streamed).
//!
//! Two kinds of input per format: (a) arbitrary bytes behind the right magic prefix, and (b) a valid file
//! (the crate's own writer, or built by hand) with byte flips, truncations and edits of its header fields
//! (shape, dtype, offsets, fortran_order, header length, version; for the index every header field and any
//! word of its arrays, with the checksum and length fixed up so that the edit reaches the structural checks).
//!
//! Properties: no input panics (an `Err` is fine); a matrix that loads has rows × cols values, agrees with
//! the header it came from, and for an unmodified file holds exactly the values written; labels that load
//! have one id per row, each below the class count; an index that loads can be searched without a panic and
//! answers with row numbers of the index; an unmodified index file loads back to the same bytes.
//!
//! The configuration is fixed (cases, a fixed RNG seed, no failure persistence). More cases:
//! `PARSER_FUZZ_CASES=20000 cargo test --release -p repscope --test parser_fuzz`.
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use repscope::data::{list_keys, load_labels, load_matrix, npy, npz, Matrix};
use repscope::search::{Hnsw, HnswParams};
use repscope::Metric;

// ---------------------------------------------------------------------------------------------------------
// Harness

fn scratch(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "repscope-parser-fuzz-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PARSER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

/// Runs a property with a seed fixed per name (deterministic from run to run).
fn check<S: Strategy>(
    name: &'static str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut seed = [7u8; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] = seed[i % 32].wrapping_mul(31) ^ b;
    }
    quiet_panics();
    let mut runner = TestRunner::new_with_rng(
        config(cases),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
}

/// One line per caught panic instead of a backtrace per shrinking step (proptest reports the minimal case).
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("?");
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("panic at {at}: {msg}");
        }));
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Values of a loaded matrix agree bit for bit (NaN equals any NaN).
fn same_f32(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// The shape of a loaded matrix is consistent: rows × cols values, both positive, f64 copy the same size.
fn consistent(m: &Matrix) -> Result<(), TestCaseError> {
    prop_assert!(m.rows() > 0 && m.cols() > 0, "empty matrix loaded: {m:?}");
    prop_assert_eq!(m.rows().checked_mul(m.cols()), Some(m.as_slice().len()));
    if let Some(v) = m.values_f64() {
        prop_assert_eq!(v.len(), m.as_slice().len());
        for (a, b) in v.iter().zip(m.as_slice()) {
            prop_assert!(same_f32(*a as f32, *b), "f64 and f32 copies differ");
        }
    }
    // Every row is addressable.
    let last = m.row(m.rows() - 1);
    prop_assert_eq!(last.len(), m.cols());
    Ok(())
}

/// Interesting sizes for edited header fields.
fn dim_s() -> BoxedStrategy<u64> {
    prop_oneof![
        4 => 0u64..8,
        1 => 8u64..70,
        2 => prop::sample::select(vec![
            255u64,
            256,
            65535,
            65536,
            1 << 31,
            (1 << 32) - 1,
            1 << 32,
            1 << 40,
            1 << 61,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ]),
        1 => any::<u64>(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------------------
// .npy

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Float dtypes the matrix reader accepts: (descr, element size, big-endian).
const FLOAT_DESCRS: [(&str, usize, bool); 6] = [
    ("<f2", 2, false),
    ("<f4", 4, false),
    ("<f8", 8, false),
    (">f2", 2, true),
    (">f4", 4, true),
    (">f8", 8, true),
];

/// An `.npy` image from its parts, the header padded to 64 bytes as numpy does.
fn npy_image(version: u8, header_text: &str, data: &[u8]) -> Vec<u8> {
    let pre = if version == 1 { 10 } else { 12 };
    let mut h = header_text.to_string();
    let pad = (64 - (pre + h.len() + 1) % 64) % 64;
    h.push_str(&" ".repeat(pad));
    h.push('\n');
    let mut out = NPY_MAGIC.to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

fn shape_text(shape: &[u64]) -> String {
    match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn dict(descr: &str, fortran: &str, shape: &str) -> String {
    format!("{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}")
}

/// Decodes element `i` of raw data independently of the crate.
fn decode(data: &[u8], size: usize, big: bool, i: usize) -> f64 {
    let b = &data[i * size..(i + 1) * size];
    match (size, big) {
        (2, false) => half::f16::from_le_bytes([b[0], b[1]]).to_f64(),
        (2, true) => half::f16::from_be_bytes([b[0], b[1]]).to_f64(),
        (4, false) => f32::from_le_bytes(b.try_into().unwrap()) as f64,
        (4, true) => f32::from_be_bytes(b.try_into().unwrap()) as f64,
        (8, false) => f64::from_le_bytes(b.try_into().unwrap()),
        _ => f64::from_be_bytes(b.try_into().unwrap()),
    }
}

/// A matrix that loaded from `.npy` bytes agrees with the header that the crate parses from the same bytes,
/// and its values are the file's data, decoded independently.
fn npy_matrix_agrees(bytes: &[u8], m: &Matrix) -> Result<(), TestCaseError> {
    consistent(m)?;
    let h = npy::parse_header(bytes, Path::new("x.npy"));
    prop_assert!(h.is_ok(), "loaded, but the header does not parse");
    let h = h.unwrap();
    prop_assert_eq!(&h.shape, &vec![m.rows(), m.cols()]);
    prop_assert!(
        matches!(h.size, 2 | 4 | 8) && h.kind == npy::Kind::Float,
        "loaded a non-float dtype {}",
        h.descr
    );
    let need = m.rows() * m.cols() * h.size;
    prop_assert!(
        h.data_offset + need <= bytes.len(),
        "loaded {} × {} of {} from a file with {} data bytes",
        m.rows(),
        m.cols(),
        h.descr,
        bytes.len() - h.data_offset
    );
    let data = &bytes[h.data_offset..];
    let (r, c) = (m.rows(), m.cols());
    for i in 0..r {
        for j in 0..c {
            let src = if h.fortran_order {
                j * r + i
            } else {
                i * c + j
            };
            let want = decode(data, h.size, h.big_endian, src);
            let got = m.as_slice()[i * c + j];
            prop_assert!(
                same_f32(want as f32, got),
                "value ({i}, {j}) is {got}, the file holds {want}"
            );
            if let Some(v) = m.values_f64() {
                prop_assert!(same_f64(want, v[i * c + j]));
            }
        }
    }
    Ok(())
}

/// Labels that loaded have one id per row and every id names a class.
fn labels_agree(bytes: &[u8], l: &repscope::data::Labels) -> Result<(), TestCaseError> {
    let h = npy::parse_header(bytes, Path::new("l.npy"));
    prop_assert!(h.is_ok(), "labels loaded, but the header does not parse");
    let h = h.unwrap();
    let n = h.shape.first().copied().unwrap_or(0);
    prop_assert_eq!(l.ids.len(), n);
    prop_assert!(l.names.len() <= n.max(1));
    for &id in &l.ids {
        prop_assert!(
            (id as usize) < l.names.len(),
            "label id {id} of {} classes",
            l.names.len()
        );
    }
    Ok(())
}

/// Loads `.npy` bytes both as a matrix and as labels; checks whatever loads.
fn npy_any(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    let p = dir.join("fuzz.npy");
    std::fs::write(&p, bytes).unwrap();
    if let Ok(m) = load_matrix(&p, None) {
        npy_matrix_agrees(bytes, &m)?;
    }
    if let Ok(l) = npy::labels_from_npy(bytes, &p) {
        labels_agree(bytes, &l)?;
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct ValidNpy {
    descr: usize,
    fortran: bool,
    version: u8,
    rows: usize,
    cols: usize,
    /// Raw element bits (any pattern: NaN payloads, subnormals, infinities).
    bits: Vec<u64>,
}

fn valid_npy_s() -> BoxedStrategy<ValidNpy> {
    (0usize..6, any::<bool>(), 1u8..=3, 1usize..=6, 1usize..=6)
        .prop_flat_map(|(descr, fortran, version, rows, cols)| {
            prop::collection::vec(any::<u64>(), rows * cols).prop_map(move |bits| ValidNpy {
                descr,
                fortran,
                version,
                rows,
                cols,
                bits,
            })
        })
        .boxed()
}

impl ValidNpy {
    fn elem(&self, k: usize) -> Vec<u8> {
        let (_, size, big) = FLOAT_DESCRS[self.descr];
        let b = self.bits[k];
        let mut v = match size {
            2 => (b as u16).to_le_bytes().to_vec(),
            4 => (b as u32).to_le_bytes().to_vec(),
            _ => b.to_le_bytes().to_vec(),
        };
        if big {
            v.reverse();
        }
        v
    }
    fn data(&self) -> Vec<u8> {
        let (r, c) = (self.rows, self.cols);
        let mut out = Vec::new();
        for a in 0..r * c {
            // The k-th stored element: C order row-major, Fortran order column-major.
            let k = if self.fortran {
                let (j, i) = (a / r, a % r);
                i * c + j
            } else {
                a
            };
            out.extend(self.elem(k));
        }
        out
    }
    fn header(&self) -> String {
        let fo = if self.fortran { "True" } else { "False" };
        dict(
            &format!("'{}'", FLOAT_DESCRS[self.descr].0),
            fo,
            &shape_text(&[self.rows as u64, self.cols as u64]),
        )
    }
    fn bytes(&self) -> Vec<u8> {
        npy_image(self.version, &self.header(), &self.data())
    }
    /// Element (i, j) as the file means it, widened to f64.
    fn value(&self, i: usize, j: usize) -> f64 {
        let (_, size, _) = FLOAT_DESCRS[self.descr];
        let b = self.bits[i * self.cols + j];
        match size {
            2 => half::f16::from_bits(b as u16).to_f64(),
            4 => f32::from_bits(b as u32) as f64,
            _ => f64::from_bits(b),
        }
    }
}

#[test]
fn npy_valid_files_round_trip_exactly() {
    let d = scratch("npy-valid");
    check("npy_valid", 600, valid_npy_s(), |v| {
        let bytes = v.bytes();
        let p = d.join("valid.npy");
        std::fs::write(&p, &bytes).unwrap();
        let m = load_matrix(&p, None);
        prop_assert!(
            m.is_ok(),
            "a valid file is refused: {:?}",
            m.err().map(|e| e.to_string())
        );
        let m = m.unwrap();
        consistent(&m)?;
        prop_assert_eq!((m.rows(), m.cols()), (v.rows, v.cols));
        for i in 0..v.rows {
            for j in 0..v.cols {
                let want = v.value(i, j);
                prop_assert!(same_f32(want as f32, m.as_slice()[i * v.cols + j]));
                if let Some(x) = m.values_f64() {
                    prop_assert!(same_f64(want, x[i * v.cols + j]));
                }
            }
        }
        prop_assert_eq!(m.values_f64().is_some(), FLOAT_DESCRS[v.descr].1 == 8);
        Ok(())
    });
}

/// The crate's own writer round-trips exactly too.
#[test]
fn npy_writer_round_trips_exactly() {
    let d = scratch("npy-writer");
    check(
        "npy_writer",
        200,
        (1usize..=5, 1usize..=5, any::<u64>()),
        |(r, c, seed)| {
            let mut s = seed;
            let vals: Vec<f32> = (0..r * c)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    f32::from_bits((s >> 32) as u32)
                })
                .collect();
            let p = d.join("w.npy");
            npy::write(&p, &[r, c], &vals).unwrap();
            let m = load_matrix(&p, None).unwrap();
            prop_assert_eq!((m.rows(), m.cols()), (r, c));
            for (a, b) in vals.iter().zip(m.as_slice()) {
                prop_assert!(same_f32(*a, *b));
            }
            let v64: Vec<f64> = vals.iter().map(|&x| x as f64 * 1.5).collect();
            npy::write(&p, &[r, c], &v64).unwrap();
            let m = load_matrix(&p, None).unwrap();
            for (a, b) in v64.iter().zip(m.values_f64().unwrap()) {
                prop_assert!(same_f64(*a, *b));
            }
            Ok(())
        },
    );
}

#[test]
fn npy_random_bytes_after_the_magic() {
    let d = scratch("npy-random");
    let strat = (
        prop::sample::select(vec![1u8, 2, 3, 0, 4, 255]),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..300),
    );
    check("npy_random", 1200, strat, |(major, minor, tail)| {
        let mut b = NPY_MAGIC.to_vec();
        b.push(major);
        b.push(minor);
        b.extend_from_slice(&tail);
        npy_any(&d, &b)
    });
}

/// A plausible header text of random printable characters.
#[test]
fn npy_random_header_text() {
    let d = scratch("npy-text");
    check(
        "npy_random_text",
        800,
        (
            "[ -~]{0,160}",
            1u8..=3,
            prop::collection::vec(any::<u8>(), 0..200),
        ),
        |(text, version, data)| npy_any(&d, &npy_image(version, &text, &data)),
    );
}

/// An edit of one header field of a valid `.npy` file.
#[derive(Clone, Debug)]
enum NpyEdit {
    Descr(String),
    Fortran(String),
    Shape(Vec<u64>),
    ShapeText(String),
    /// Overwrites the header length field.
    HeaderLen(u32),
    Version(u8),
    DropKey(usize),
    /// Adds or removes data bytes.
    DataLen(i64),
}

fn npy_edit_s() -> BoxedStrategy<NpyEdit> {
    let descrs = vec![
        "'<f4'",
        "'<f8'",
        "'<f2'",
        "'>f4'",
        "'>f8'",
        "'>f2'",
        "'=f4'",
        "'|f4'",
        "'f4'",
        "'<f16'",
        "'<f12'",
        "'<f1'",
        "'<f0'",
        "'<f'",
        "'<f3'",
        "'<f99999999999999999999'",
        "'<i4'",
        "'<i8'",
        "'>i8'",
        "'<i16'",
        "'<i0'",
        "'<i'",
        "'<u16'",
        "'|u1'",
        "'|b1'",
        "'|b0'",
        "'|b16'",
        "'<c8'",
        "'|O'",
        "'<U3'",
        "'<U0'",
        "'|S0'",
        "'|S4'",
        "'<M8'",
        "'<V8'",
        "''",
        "'<'",
        "'é4'",
        "'<é'",
        "[('a', '<f4')]",
        "'<f4",
        "\"<f4\"",
        "4",
        "'<f-4'",
    ];
    prop_oneof![
        3 => prop::sample::select(descrs).prop_map(|s| NpyEdit::Descr(s.to_string())),
        1 => prop::sample::select(vec!["True", "False", "true", "1", "", "'False'", "Fals"])
            .prop_map(|s| NpyEdit::Fortran(s.to_string())),
        4 => prop::collection::vec(dim_s(), 0..=4).prop_map(NpyEdit::Shape),
        1 => prop::sample::select(vec![
            "(3 4)", "(3,,4)", "(-1, 4)", "(3L, 4L)", "[3, 4]", "()", "(,)", "((3, 4))", "(3, 4",
            "3, 4)", "(0x3, 4)", "(+3, 4)", "( 3 ,  4 , )", "(3.0, 4)", "(18446744073709551616, 1)",
        ])
        .prop_map(|s| NpyEdit::ShapeText(s.to_string())),
        2 => prop_oneof![0u32..200, any::<u32>()].prop_map(NpyEdit::HeaderLen),
        1 => any::<u8>().prop_map(NpyEdit::Version),
        1 => (0usize..3).prop_map(NpyEdit::DropKey),
        2 => (-40i64..40).prop_map(NpyEdit::DataLen),
    ]
    .boxed()
}

fn apply_npy_edit(v: &ValidNpy, e: &NpyEdit) -> Vec<u8> {
    let (descr0, _, _) = FLOAT_DESCRS[v.descr];
    let mut descr = format!("'{descr0}'");
    let mut fortran = if v.fortran { "True" } else { "False" }.to_string();
    let mut shape = shape_text(&[v.rows as u64, v.cols as u64]);
    let mut data = v.data();
    let mut version = v.version;
    match e {
        NpyEdit::Descr(s) => descr = s.clone(),
        NpyEdit::Fortran(s) => fortran = s.clone(),
        NpyEdit::Shape(sh) => shape = shape_text(sh),
        NpyEdit::ShapeText(s) => shape = s.clone(),
        NpyEdit::Version(x) => version = *x,
        NpyEdit::DataLen(n) => {
            if *n < 0 {
                data.truncate(data.len().saturating_sub(n.unsigned_abs() as usize));
            } else {
                data.extend(std::iter::repeat_n(0x3f, *n as usize));
            }
        }
        _ => {}
    }
    let text = match e {
        NpyEdit::DropKey(0) => format!("{{'fortran_order': {fortran}, 'shape': {shape}, }}"),
        NpyEdit::DropKey(1) => format!("{{'descr': {descr}, 'shape': {shape}, }}"),
        NpyEdit::DropKey(_) => format!("{{'descr': {descr}, 'fortran_order': {fortran}, }}"),
        _ => dict(&descr, &fortran, &shape),
    };
    let mut b = npy_image(
        if matches!(version, 1..=3) { version } else { 1 },
        &text,
        &data,
    );
    b[6] = version;
    if let NpyEdit::HeaderLen(hl) = e {
        if version == 1 || !matches!(version, 2 | 3) {
            b[8..10].copy_from_slice(&(*hl as u16).to_le_bytes());
        } else {
            b[8..12].copy_from_slice(&hl.to_le_bytes());
        }
    }
    b
}

/// A random damage of a byte image: flips, a truncation.
#[derive(Clone, Debug)]
struct Damage {
    flips: Vec<(prop::sample::Index, u8)>,
    cut: Option<prop::sample::Index>,
}

fn damage_s() -> BoxedStrategy<Damage> {
    (
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..=3),
        prop::option::weighted(0.4, any::<prop::sample::Index>()),
    )
        .prop_map(|(flips, cut)| Damage { flips, cut })
        .boxed()
}

fn apply_damage(b: &mut Vec<u8>, d: &Damage) {
    if b.is_empty() {
        return;
    }
    for (i, x) in &d.flips {
        let at = i.index(b.len());
        b[at] ^= x;
    }
    if let Some(c) = &d.cut {
        b.truncate(c.index(b.len() + 1));
    }
}

#[test]
fn npy_header_edits() {
    let d = scratch("npy-mutated");
    check(
        "npy_edits",
        3000,
        (
            valid_npy_s(),
            npy_edit_s(),
            prop::option::weighted(0.2, damage_s()),
        ),
        |(v, e, dmg)| {
            let mut b = apply_npy_edit(&v, &e);
            if let Some(dmg) = &dmg {
                apply_damage(&mut b, dmg);
            }
            npy_any(&d, &b)
        },
    );
}

#[test]
fn npy_damaged_files() {
    let d = scratch("npy-damaged");
    check(
        "npy_damage",
        1600,
        (valid_npy_s(), damage_s()),
        |(v, dmg)| {
            let mut b = v.bytes();
            apply_damage(&mut b, &dmg);
            npy_any(&d, &b)
        },
    );
}

/// 1-D label arrays of every dtype, with edited shapes and descrs.
#[test]
fn npy_labels() {
    let d = scratch("npy-labels");
    let descrs = vec![
        ("<i4", 4usize),
        ("<i8", 8),
        (">i2", 2),
        ("|u1", 1),
        ("|b1", 1),
        ("<u8", 8),
        ("<U3", 12),
        ("|S4", 4),
        ("<i16", 16),
        (">i16", 16),
        ("<u16", 16),
        ("<i0", 0),
        ("<i", 0),
        ("|b0", 0),
        ("<i3", 3),
        ("<U0", 0),
        ("|S0", 0),
        ("<f4", 4),
    ];
    let strat = (
        prop::sample::select(descrs),
        prop_oneof![4 => (0u64..12).prop_map(|n| vec![n]), 1 => (0u64..12).prop_map(|n| vec![n, 1]),
                    1 => prop::collection::vec(dim_s(), 0..=3)],
        prop::collection::vec(any::<u8>(), 0..100),
    );
    check("npy_labels", 2000, strat, |((descr, _), shape, data)| {
        let b = npy_image(
            1,
            &dict(&format!("'{descr}'"), "False", &shape_text(&shape)),
            &data,
        );
        let p = d.join("labels.npy");
        std::fs::write(&p, &b).unwrap();
        if let Ok(l) = load_labels(&p, None) {
            labels_agree(&b, &l)?;
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------------------
// .npz

/// A valid `.npz`: members x (f32 C order, mappable), y (another dtype, maybe Fortran order) and lab (i4
/// labels), written stored by the crate's writer, or deflated/stored by the zip crate.
#[derive(Clone, Debug)]
struct ValidNpz {
    x: ValidNpy,
    y: ValidNpy,
    labels: Vec<i32>,
    /// 0: npz::write; 1: zip stored; 2: zip deflated.
    writer: u8,
}

fn valid_npz_s() -> BoxedStrategy<ValidNpz> {
    (
        valid_npy_s(),
        valid_npy_s(),
        prop::collection::vec(-3i32..3, 0..8),
        0u8..3,
    )
        .prop_map(|(mut x, y, labels, writer)| {
            x.descr = 1; // <f4
            x.fortran = false;
            x.version = 1;
            ValidNpz {
                x,
                y,
                labels,
                writer,
            }
        })
        .boxed()
}

fn zip_members(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in members {
        w.start_file(format!("{name}.npy"), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn label_npy(labels: &[i32]) -> Vec<u8> {
    npy::encode(&[labels.len()], labels)
}

impl ValidNpz {
    fn members(&self, x_edit: Option<&NpyEdit>) -> Vec<(&'static str, Vec<u8>)> {
        let x = match x_edit {
            Some(e) => apply_npy_edit(&self.x, e),
            None => self.x.bytes(),
        };
        vec![
            ("x", x),
            ("y", self.y.bytes()),
            ("lab", label_npy(&self.labels)),
        ]
    }
    fn bytes(&self, dir: &Path, x_edit: Option<&NpyEdit>) -> Vec<u8> {
        let members = self.members(x_edit);
        match self.writer {
            0 if x_edit.is_none() => {
                // The crate's writer (stored, 64-byte aligned members).
                let xv: Vec<f32> = (0..self.x.rows * self.x.cols)
                    .map(|k| f32::from_bits(self.x.bits[k] as u32))
                    .collect();
                let p = dir.join("writer.npz");
                let shape = [self.x.rows, self.x.cols];
                let lshape = [self.labels.len()];
                let l64: Vec<i64> = self.labels.iter().map(|&v| v as i64).collect();
                let yv: Vec<f64> = (0..self.y.rows * self.y.cols)
                    .map(|k| {
                        let (i, j) = (k / self.y.cols, k % self.y.cols);
                        self.y.value(i, j)
                    })
                    .collect();
                let yshape = [self.y.rows, self.y.cols];
                npz::write(
                    &p,
                    &[
                        ("x", npz::NpzArray::F32(&shape, &xv)),
                        ("y", npz::NpzArray::F64(&yshape, &yv)),
                        ("lab", npz::NpzArray::I64(&lshape, &l64)),
                    ],
                )
                .unwrap();
                std::fs::read(&p).unwrap()
            }
            2 => zip_members(&members, true),
            _ => zip_members(&members, false),
        }
    }
}

/// Loads every key (and none, and a missing one) of `.npz` bytes as matrices and labels; checks what loads.
fn npz_any(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    let p = dir.join("fuzz.npz");
    std::fs::write(&p, bytes).unwrap();
    let keys = list_keys(&p).unwrap_or_default();
    for key in [None, Some("x"), Some("y"), Some("lab"), Some("missing")] {
        if let Ok(m) = load_matrix(&p, key) {
            consistent(&m)?;
        }
        if let Ok(l) = load_labels(&p, key) {
            for &id in &l.ids {
                prop_assert!((id as usize) < l.names.len());
            }
        }
    }
    for k in keys.iter().take(4) {
        if let Ok(m) = load_matrix(&p, Some(k)) {
            consistent(&m)?;
        }
    }
    Ok(())
}

#[test]
fn npz_valid_files_round_trip_exactly() {
    let d = scratch("npz-valid");
    check("npz_valid", 400, valid_npz_s(), |v| {
        let bytes = v.bytes(&d, None);
        let p = d.join("valid.npz");
        std::fs::write(&p, &bytes).unwrap();
        prop_assert_eq!(list_keys(&p).unwrap(), vec!["x", "y", "lab"]);
        let m = load_matrix(&p, Some("x"));
        prop_assert!(m.is_ok(), "x refused: {:?}", m.err().map(|e| e.to_string()));
        let m = m.unwrap();
        consistent(&m)?;
        if v.writer == 0 {
            prop_assert!(m.is_mapped(), "an aligned stored f32 member is not mapped");
        }
        for i in 0..v.x.rows {
            for j in 0..v.x.cols {
                prop_assert!(same_f32(
                    v.x.value(i, j) as f32,
                    m.as_slice()[i * v.x.cols + j]
                ));
            }
        }
        let m = load_matrix(&p, Some("y"));
        prop_assert!(m.is_ok(), "y refused: {:?}", m.err().map(|e| e.to_string()));
        let m = m.unwrap();
        consistent(&m)?;
        prop_assert_eq!((m.rows(), m.cols()), (v.y.rows, v.y.cols));
        for i in 0..v.y.rows {
            for j in 0..v.y.cols {
                let want = v.y.value(i, j);
                prop_assert!(same_f32(want as f32, m.as_slice()[i * v.y.cols + j]));
                if let Some(x) = m.values_f64() {
                    prop_assert!(same_f64(want, x[i * v.y.cols + j]));
                }
            }
        }
        let l = load_labels(&p, Some("lab"));
        prop_assert!(
            l.is_ok(),
            "labels refused: {:?}",
            l.err().map(|e| e.to_string())
        );
        let l = l.unwrap();
        prop_assert_eq!(l.ids.len(), v.labels.len());
        for (id, want) in l.ids.iter().zip(&v.labels) {
            prop_assert_eq!(&l.names[*id as usize], &want.to_string());
        }
        // Two arrays of floats (and labels): no key is ambiguous.
        prop_assert!(load_matrix(&p, None).is_err());
        Ok(())
    });
}

#[test]
fn npz_random_bytes_after_the_magic() {
    let d = scratch("npz-random");
    check(
        "npz_random",
        1000,
        prop::collection::vec(any::<u8>(), 0..400),
        |tail| {
            let mut b = b"PK\x03\x04".to_vec();
            b.extend_from_slice(&tail);
            npz_any(&d, &b)
        },
    );
}

/// An edit of a zip field of a valid archive: (which record, which field, new value).
#[derive(Clone, Debug)]
struct ZipEdit {
    /// 0: a local file header, 1: a central directory entry, 2: the end of central directory record.
    record: u8,
    /// Which occurrence of the record.
    nth: prop::sample::Index,
    field: prop::sample::Index,
    value: u64,
}

fn zip_edit_s() -> BoxedStrategy<ZipEdit> {
    (
        0u8..3,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        dim_s(),
    )
        .prop_map(|(record, nth, field, value)| ZipEdit {
            record,
            nth,
            field,
            value,
        })
        .boxed()
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..hay.len().saturating_sub(needle.len() - 1))
        .filter(|&i| &hay[i..i + needle.len()] == needle)
        .collect()
}

fn apply_zip_edit(b: &mut [u8], e: &ZipEdit) {
    // (signature, [(offset, width)]) of the numeric fields of each record.
    let (sig, fields): (&[u8], &[(usize, usize)]) = match e.record {
        // method, crc, compressed size, size, name length, extra length
        0 => (
            b"PK\x03\x04",
            &[(8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)],
        ),
        // method, crc, compressed size, size, name len, extra len, comment len, disk, local header offset
        1 => (
            b"PK\x01\x02",
            &[
                (10, 2),
                (16, 4),
                (20, 4),
                (24, 4),
                (28, 2),
                (30, 2),
                (32, 2),
                (34, 2),
                (42, 4),
            ],
        ),
        // entries on disk, entries, directory size, directory offset, comment length
        _ => (b"PK\x05\x06", &[(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]),
    };
    let at = find_all(b, sig);
    if at.is_empty() {
        return;
    }
    let base = at[e.nth.index(at.len())];
    let (off, w) = fields[e.field.index(fields.len())];
    let pos = base + off;
    if pos + w <= b.len() {
        b[pos..pos + w].copy_from_slice(&e.value.to_le_bytes()[..w]);
    }
}

#[test]
fn npz_zip_field_edits() {
    let d = scratch("npz-mutated");
    check(
        "npz_zip_fields",
        1000,
        (valid_npz_s(), prop::collection::vec(zip_edit_s(), 1..=2)),
        |(v, edits)| {
            let mut b = v.bytes(&d, None);
            for e in &edits {
                apply_zip_edit(&mut b, e);
            }
            npz_any(&d, &b)
        },
    );
}

#[test]
fn npz_member_header_edits() {
    let d = scratch("npz-member");
    check(
        "npz_member_header",
        1000,
        (valid_npz_s(), npy_edit_s()),
        |(v, e)| npz_any(&d, &v.bytes(&d, Some(&e))),
    );
}

#[test]
fn npz_damaged_files() {
    let d = scratch("npz-damaged");
    check(
        "npz_damage",
        1000,
        (valid_npz_s(), damage_s()),
        |(v, dmg)| {
            let mut b = v.bytes(&d, None);
            apply_damage(&mut b, &dmg);
            npz_any(&d, &b)
        },
    );
}

// ---------------------------------------------------------------------------------------------------------
// .safetensors

const ST_DTYPES: [(&str, usize); 4] = [("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8)];

#[derive(Clone, Debug)]
struct ValidSt {
    dtype: usize,
    rows: usize,
    cols: usize,
    bits: Vec<u64>,
    /// A second tensor named "z" (1-D) before "x" in the data.
    second: bool,
}

fn valid_st_s() -> BoxedStrategy<ValidSt> {
    (0usize..4, 1usize..=6, 1usize..=6, any::<bool>())
        .prop_flat_map(|(dtype, rows, cols, second)| {
            prop::collection::vec(any::<u64>(), rows * cols).prop_map(move |bits| ValidSt {
                dtype,
                rows,
                cols,
                bits,
                second,
            })
        })
        .boxed()
}

impl ValidSt {
    fn raw(&self) -> Vec<u8> {
        let size = ST_DTYPES[self.dtype].1;
        self.bits
            .iter()
            .flat_map(|&b| b.to_le_bytes()[..size].to_vec())
            .collect()
    }
    fn value(&self, k: usize) -> f64 {
        let b = self.bits[k];
        match ST_DTYPES[self.dtype].0 {
            "F32" => f32::from_bits(b as u32) as f64,
            "F16" => half::f16::from_bits(b as u16).to_f64(),
            "BF16" => half::bf16::from_bits(b as u16).to_f64(),
            _ => f64::from_bits(b),
        }
    }
    /// Serialised by the safetensors crate.
    fn bytes(&self) -> Vec<u8> {
        let dt = match ST_DTYPES[self.dtype].0 {
            "F32" => safetensors::Dtype::F32,
            "F16" => safetensors::Dtype::F16,
            "BF16" => safetensors::Dtype::BF16,
            _ => safetensors::Dtype::F64,
        };
        let raw = self.raw();
        let z = [1u8, 2, 3, 4, 5, 6];
        let mut views = vec![(
            "x".to_string(),
            safetensors::tensor::TensorView::new(dt, vec![self.rows, self.cols], &raw).unwrap(),
        )];
        if self.second {
            views.push((
                "z".to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![6], &z).unwrap(),
            ));
        }
        safetensors::serialize(views, None).unwrap()
    }
}

/// A hand-built header: every field can be edited.
#[derive(Clone, Debug)]
struct StEdit {
    dtype: Option<&'static str>,
    shape: Option<Vec<u64>>,
    offsets: Option<(u64, u64)>,
    /// Overwrites the 8-byte header length.
    header_len: Option<u64>,
    /// Extra JSON in the header.
    extra: Option<&'static str>,
    data_delta: i64,
}

fn st_edit_s() -> BoxedStrategy<StEdit> {
    (
        prop::option::weighted(
            0.4,
            prop::sample::select(vec![
                "F32", "F16", "BF16", "F64", "I32", "I64", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
                "I8", "U16", "C64", "F4", "f32", "", "X",
            ]),
        ),
        prop::option::weighted(0.4, prop::collection::vec(dim_s(), 0..=4)),
        prop::option::weighted(0.4, (dim_s(), dim_s())),
        prop::option::weighted(0.2, prop_oneof![0u64..200, dim_s()]),
        prop::option::weighted(
            0.2,
            prop::sample::select(vec![
                r#","__metadata__":{"a":"b"}"#,
                r#","__metadata__":{"a":1}"#,
                r#","x":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}"#,
                r#","y":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}"#,
                r#","":{"dtype":"U8","shape":[],"data_offsets":[0,0]}"#,
                r#","w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#,
            ]),
        ),
        prop_oneof![4 => Just(0i64), 1 => -20i64..20],
    )
        .prop_map(
            |(dtype, shape, offsets, header_len, extra, data_delta)| StEdit {
                dtype,
                shape,
                offsets,
                header_len,
                extra,
                data_delta,
            },
        )
        .boxed()
}

fn st_hand(v: &ValidSt, e: &StEdit) -> Vec<u8> {
    let mut data = v.raw();
    let dtype = e.dtype.unwrap_or(ST_DTYPES[v.dtype].0);
    let shape = e
        .shape
        .clone()
        .unwrap_or_else(|| vec![v.rows as u64, v.cols as u64]);
    let (a, b) = e.offsets.unwrap_or((0, data.len() as u64));
    let shape_s = shape
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut header = format!(
        r#"{{"x":{{"dtype":"{dtype}","shape":[{shape_s}],"data_offsets":[{a},{b}]}}{}}}"#,
        e.extra.unwrap_or("")
    );
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    if e.data_delta < 0 {
        data.truncate(
            data.len()
                .saturating_sub(e.data_delta.unsigned_abs() as usize),
        );
    } else {
        data.extend(std::iter::repeat_n(0u8, e.data_delta as usize));
    }
    let hl = e.header_len.unwrap_or(header.len() as u64);
    let mut out = hl.to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn st_any(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    let p = dir.join("fuzz.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let _ = list_keys(&p);
    for key in [None, Some("x"), Some("y"), Some("z"), Some("")] {
        if let Ok(m) = load_matrix(&p, key) {
            consistent(&m)?;
            // The values lie inside the file.
            prop_assert!(
                m.rows() * m.cols() <= bytes.len(),
                "{} values from {} bytes",
                m.rows() * m.cols(),
                bytes.len()
            );
        }
    }
    // Labels are never read from safetensors.
    prop_assert!(load_labels(&p, None).is_err());
    Ok(())
}

#[test]
fn safetensors_valid_files_round_trip_exactly() {
    let d = scratch("st-valid");
    check("st_valid", 600, valid_st_s(), |v| {
        // The crate's serialiser, and the hand-built header with no edit.
        let none = StEdit {
            dtype: None,
            shape: None,
            offsets: None,
            header_len: None,
            extra: None,
            data_delta: 0,
        };
        for (which, bytes) in [("serialize", v.bytes()), ("hand", st_hand(&v, &none))] {
            let p = d.join("valid.safetensors");
            std::fs::write(&p, &bytes).unwrap();
            let m = load_matrix(&p, Some("x"));
            prop_assert!(
                m.is_ok(),
                "{which}: refused: {:?}",
                m.err().map(|e| e.to_string())
            );
            let m = m.unwrap();
            consistent(&m)?;
            prop_assert_eq!((m.rows(), m.cols()), (v.rows, v.cols));
            for k in 0..v.rows * v.cols {
                let want = v.value(k);
                prop_assert!(same_f32(want as f32, m.as_slice()[k]), "{which}: value {k}");
                if let Some(x) = m.values_f64() {
                    prop_assert!(same_f64(want, x[k]));
                }
            }
        }
        Ok(())
    });
}

#[test]
fn safetensors_random_bytes_after_the_header_length() {
    let d = scratch("st-random");
    check(
        "st_random",
        800,
        (
            prop_oneof![0u64..300, dim_s()],
            prop::collection::vec(any::<u8>(), 0..300),
        ),
        |(hl, tail)| {
            let mut b = hl.to_le_bytes().to_vec();
            b.push(b'{');
            b.extend_from_slice(&tail);
            st_any(&d, &b)
        },
    );
}

#[test]
fn safetensors_header_edits() {
    let d = scratch("st-edits");
    check("st_edits", 2400, (valid_st_s(), st_edit_s()), |(v, e)| {
        st_any(&d, &st_hand(&v, &e))
    });
}

#[test]
fn safetensors_damaged_files() {
    let d = scratch("st-damaged");
    check("st_damage", 1200, (valid_st_s(), damage_s()), |(v, dmg)| {
        let mut b = v.bytes();
        apply_damage(&mut b, &dmg);
        st_any(&d, &b)
    });
}

// ---------------------------------------------------------------------------------------------------------
// The HNSW index file

const HEADER_LEN: usize = 76;
/// (offset, width) of the header fields after the magic: version, reserved, total length, metric, dim, n,
/// M, M0, ef_construction, max level, entry point, seed, upper-link length.
const INDEX_FIELDS: [(usize, usize); 13] = [
    (8, 4),
    (12, 4),
    (16, 8),
    (24, 4),
    (28, 4),
    (32, 8),
    (40, 4),
    (44, 4),
    (48, 4),
    (52, 4),
    (56, 4),
    (60, 8),
    (68, 8),
];

#[derive(Clone, Debug)]
struct IndexSpec {
    n: usize,
    dim: usize,
    m: usize,
    cosine: bool,
    seed: u64,
    /// Duplicate-heavy data (small integers).
    ties: bool,
}

fn index_spec_s() -> BoxedStrategy<IndexSpec> {
    (
        prop_oneof![1usize..=4, 5usize..=60],
        1usize..=4,
        2usize..=5,
        any::<bool>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(n, dim, m, cosine, seed, ties)| IndexSpec {
            n,
            dim,
            m,
            cosine,
            seed,
            ties,
        })
        .boxed()
}

impl IndexSpec {
    fn data(&self) -> Vec<f32> {
        let mut s = self.seed | 1;
        (0..self.n * self.dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if self.ties {
                    (s % 3) as f32 + 1.0
                } else {
                    ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 + 0.01
                }
            })
            .collect()
    }
    fn build(&self) -> (Hnsw, Vec<f32>) {
        let data = self.data();
        let mat = Matrix::from_vec(self.n, self.dim, data.clone(), "idx").unwrap();
        let params = HnswParams {
            m: self.m,
            ef_construction: 16,
            seed: self.seed,
        };
        let metric = if self.cosine {
            Metric::Cosine
        } else {
            Metric::Euclidean
        };
        (
            Hnsw::build(&mat, metric, &params, None, None).unwrap(),
            data,
        )
    }
}

/// Recomputes the total length and the CRC-32 of an edited image, so the edit reaches the structural checks.
fn fix_up(b: &mut [u8]) {
    if b.len() < HEADER_LEN + 4 {
        return;
    }
    let len = b.len() as u64;
    b[16..24].copy_from_slice(&len.to_le_bytes());
    let body = b.len() - 4;
    let crc = crc32fast::hash(&b[..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// An index that loads is searchable: every answer is a row number of the index, no panic, no hang.
fn index_usable(bytes: &[u8], h: &Hnsw, query_seed: u64) -> Result<(), TestCaseError> {
    let n = read_u64(bytes, 32) as usize;
    let dim = read_u32(bytes, 28) as usize;
    prop_assert_eq!(h.len(), n);
    prop_assert_eq!(h.dim(), dim);
    let mut s = query_seed | 1;
    let mut q = vec![0f32; dim];
    for x in q.iter_mut() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *x = ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
    }
    for k in [1usize, 3, n + 2] {
        for ef in [1usize, 10] {
            let r = h.search(&q, k, ef);
            prop_assert!(
                r.is_ok(),
                "search failed: {:?}",
                r.err().map(|e| e.to_string())
            );
            let r = r.unwrap();
            prop_assert!(r.len() <= k.min(n));
            for (id, d) in r {
                prop_assert!((id as usize) < n, "answer {id} outside {n} rows");
                prop_assert!(d >= 0.0 || d.is_nan());
            }
        }
    }
    // The indexed rows themselves as queries: the greedy descent visits their neighbourhoods.
    if let Ok(rows) = h.rows_matrix("rows") {
        for i in 0..rows.rows().min(12) {
            let r = h.search(rows.row(i), 2, 4);
            prop_assert!(r.is_ok());
        }
    }
    let qm = Matrix::from_vec(2, dim, [q.clone(), q].concat(), "q").unwrap();
    let r = h.search_batch(&qm, 2, 8);
    prop_assert!(r.is_ok());
    let (idx, _) = r.unwrap();
    for id in idx {
        prop_assert!(id == u32::MAX || (id as usize) < n);
    }
    let rows = h.rows_matrix("rows");
    if let Ok(m) = rows {
        prop_assert_eq!((m.rows(), m.cols()), (n, dim));
    }
    Ok(())
}

fn index_any(bytes: &[u8], query_seed: u64) -> Result<(), TestCaseError> {
    if let Ok(h) = Hnsw::from_bytes(bytes, Path::new("fuzz.index")) {
        index_usable(bytes, &h, query_seed)?;
    }
    Ok(())
}

#[test]
fn index_valid_files_round_trip_exactly() {
    let d = scratch("index-valid");
    check(
        "index_valid",
        300,
        (index_spec_s(), any::<u64>()),
        |(spec, qs)| {
            let (h, data) = spec.build();
            let bytes = h.to_bytes();
            let p = d.join("valid.index");
            h.save(&p).unwrap();
            prop_assert_eq!(&std::fs::read(&p).unwrap(), &bytes);
            let back = Hnsw::load(&p);
            prop_assert!(
                back.is_ok(),
                "refused: {:?}",
                back.err().map(|e| e.to_string())
            );
            let back = back.unwrap();
            prop_assert_eq!(
                back.to_bytes(),
                bytes.clone(),
                "the round trip changes the bytes"
            );
            prop_assert_eq!(back.len(), spec.n);
            prop_assert_eq!(back.dim(), spec.dim);
            prop_assert_eq!(back.params(), h.params());
            prop_assert_eq!(back.insertion_order(), h.insertion_order());
            prop_assert_eq!(back.max_level(), h.max_level());
            index_usable(&bytes, &back, qs)?;
            // The same answers as the index that was saved.
            let q = &data[..spec.dim];
            prop_assert_eq!(h.search(q, 3, 10).unwrap(), back.search(q, 3, 10).unwrap());
            Ok(())
        },
    );
}

#[test]
fn index_random_bytes_after_the_magic() {
    check(
        "index_random",
        1200,
        (
            prop::collection::vec(any::<u8>(), 0..400),
            any::<bool>(),
            any::<u64>(),
        ),
        |(tail, fix, qs)| {
            let mut b = b"RSCPHNSW\x01\x00\x00\x00".to_vec();
            b.extend_from_slice(&tail);
            if fix {
                fix_up(&mut b);
            }
            index_any(&b, qs)
        },
    );
}

/// An edit of an index image: a header field, or any 32-bit word of one of its arrays, set to a value;
/// then the length and checksum fixed up (or not).
#[derive(Clone, Debug)]
enum IndexEdit {
    Field(prop::sample::Index, u64),
    /// (array: 0 ids, 1 levels, 2 vectors, 3 layer-0 links, 4 upper links; which slot; value).
    Word(u8, prop::sample::Index, u32),
    Damage(Damage),
    /// A neighbour slot (not a count) of the upper layers set to a node of the index: a link that is in
    /// range but may point at a node whose level is below the layer.
    UpperLinkTo(prop::sample::Index, prop::sample::Index),
    /// Grow or shrink the file by some bytes before the checksum.
    Resize(i64),
}

fn index_edit_s() -> BoxedStrategy<IndexEdit> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), dim_s()).prop_map(|(f, v)| IndexEdit::Field(f, v)),
        5 => (
            0u8..5,
            any::<prop::sample::Index>(),
            prop_oneof![4 => 0u32..70, 1 => any::<u32>(), 1 => Just(f32::NAN.to_bits()),
                        1 => Just(f32::INFINITY.to_bits())],
        )
            .prop_map(|(a, i, v)| IndexEdit::Word(a, i, v)),
        2 => damage_s().prop_map(IndexEdit::Damage),
        3 => (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| IndexEdit::UpperLinkTo(a, b)),
        1 => (-12i64..12).prop_map(IndexEdit::Resize),
    ]
    .boxed()
}

fn apply_index_edit(b: &mut Vec<u8>, e: &IndexEdit) {
    // Saturating: an earlier edit may have set the fields to anything.
    let n = read_u64(b, 32).min(1 << 40) as usize;
    let dim = read_u32(b, 28) as usize;
    let m0 = read_u32(b, 44) as usize;
    let upper = read_u64(b, 68).min(1 << 40) as usize;
    let ids = HEADER_LEN;
    let levels = ids.saturating_add(n.saturating_mul(4));
    let vectors = levels.saturating_add(n + (4 - n % 4) % 4);
    let links0 = vectors.saturating_add(n.saturating_mul(dim).saturating_mul(4));
    let up = links0.saturating_add(n.saturating_mul(m0 + 1).saturating_mul(4));
    match e {
        IndexEdit::Field(f, v) => {
            let (off, w) = INDEX_FIELDS[f.index(INDEX_FIELDS.len())];
            b[off..off + w].copy_from_slice(&v.to_le_bytes()[..w]);
        }
        IndexEdit::Word(a, i, v) => {
            let (start, count) = match a {
                0 => (ids, n),
                1 => {
                    // One level byte.
                    if n > 0 {
                        let at = levels.saturating_add(i.index(n));
                        if at < b.len() {
                            b[at] = *v as u8;
                        }
                    }
                    return;
                }
                2 => (vectors, n.saturating_mul(dim)),
                3 => (links0, n.saturating_mul(m0 + 1)),
                _ => (up, upper),
            };
            if count > 0 {
                let at = start.saturating_add(i.index(count).saturating_mul(4));
                if at.saturating_add(4) <= b.len() {
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        IndexEdit::Damage(d) => apply_damage(b, d),
        IndexEdit::UpperLinkTo(slot, node) => {
            let m = read_u32(b, 40) as usize;
            // Only the slots present in the file (an earlier edit may have changed the upper length).
            let present = b.len().saturating_sub(4).saturating_sub(up) / 4;
            let slots: Vec<usize> = (0..upper.min(present))
                .filter(|k| k % (m + 1) != 0)
                .map(|k| up.saturating_add(4 * k))
                .filter(|&at| at.saturating_add(4) <= b.len().saturating_sub(4))
                .collect();
            if !slots.is_empty() && n > 0 {
                let at = slots[slot.index(slots.len())];
                let v = node.index(n) as u32;
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                // The count of that block covers the slot.
                let k = (at - up) / 4;
                let count_at = up + 4 * (k - k % (m + 1));
                let c = read_u32(b, count_at) as usize;
                let need = k % (m + 1);
                if c < need {
                    b[count_at..count_at + 4].copy_from_slice(&(need as u32).to_le_bytes());
                }
            }
        }
        IndexEdit::Resize(k) => {
            let body = b.len() - 4;
            if *k < 0 {
                let cut = (k.unsigned_abs() as usize).min(body.saturating_sub(HEADER_LEN));
                b.drain(body - cut..body);
            } else {
                let at = body;
                for _ in 0..*k {
                    b.insert(at, 0);
                }
            }
        }
    }
}

#[test]
fn index_mutated_files() {
    check(
        "index_edits",
        3000,
        (
            index_spec_s(),
            prop::collection::vec(index_edit_s(), 1..=2),
            prop::bool::weighted(0.85),
            any::<u64>(),
        ),
        |(spec, edits, fix, qs)| {
            let (h, _) = spec.build();
            let mut b = h.to_bytes();
            for e in &edits {
                if b.len() < HEADER_LEN + 4 {
                    break;
                }
                apply_index_edit(&mut b, e);
            }
            if fix {
                fix_up(&mut b);
            }
            let r = std::panic::catch_unwind(|| index_any(&b, qs));
            match r {
                Ok(res) => res,
                Err(_) => Err(TestCaseError::fail(format!(
                    "panic on an edited index file ({} bytes): {}",
                    b.len(),
                    hex(&b)
                ))),
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------------------
// Parquet and Arrow IPC (file and stream)

/// How a generated table holds its rows.
#[derive(Clone, Copy, Debug)]
enum ColLayout {
    /// One fixed-size list of f32 per row, beside an Int32 column.
    FixedF32,
    /// One variable list of f64 per row (all of the same length).
    ListF64,
    /// One f32 column per dimension.
    PerColumn,
    /// A list of fixed-size lists of f32 per row (Hugging Face Array2D): one row per inner list.
    Sequences,
}

#[derive(Clone, Debug)]
struct ValidTable {
    layout: ColLayout,
    /// Rows of the table (sequences for `Sequences`), with their token counts.
    tokens: Vec<usize>,
    cols: usize,
    /// Values of the logical matrix, row-major (finite).
    values: Vec<f64>,
    /// Rows per parquet row group or IPC record batch.
    unit: usize,
}

fn valid_table_s() -> BoxedStrategy<ValidTable> {
    (
        prop_oneof![
            Just(ColLayout::FixedF32),
            Just(ColLayout::ListF64),
            Just(ColLayout::PerColumn),
            Just(ColLayout::Sequences)
        ],
        prop::collection::vec(1usize..4, 1..24),
        1usize..6,
        1usize..9,
        any::<u64>(),
    )
        .prop_map(|(layout, seq, cols, unit, seed)| {
            let tokens = match layout {
                ColLayout::Sequences => seq,
                _ => vec![1; seq.len()],
            };
            let n: usize = tokens.iter().sum();
            let mut s = seed | 1;
            let values = (0..n * cols)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    // Values exact in f32, of mixed magnitude and sign.
                    let m = (s >> 40) as i64 - (1 << 23);
                    let e = ((s >> 8) % 40) as i32 - 20;
                    m as f32 as f64 * 2f64.powi(e)
                })
                .collect();
            ValidTable {
                layout,
                tokens,
                cols,
                values,
                unit,
            }
        })
        .boxed()
}

impl ValidTable {
    fn rows(&self) -> usize {
        self.tokens.iter().sum()
    }

    /// The table as record batches of `unit` table rows each.
    fn batches(&self) -> Vec<arrow_array::RecordBatch> {
        use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Float64Builder};
        use arrow_array::builder::{ListBuilder, PrimitiveBuilder};
        use arrow_array::{ArrayRef, Float32Array, Int32Array, RecordBatch};
        use std::sync::Arc;
        let d = self.cols;
        let mut first_token = vec![0usize];
        for t in &self.tokens {
            first_token.push(first_token.last().unwrap() + t);
        }
        let mut out = Vec::new();
        let nt = self.tokens.len();
        let mut r0 = 0;
        while r0 < nt {
            let r1 = (r0 + self.unit).min(nt);
            let row = |i: usize| &self.values[i * d..(i + 1) * d];
            let ids: ArrayRef = Arc::new(Int32Array::from_iter_values(r0 as i32..r1 as i32));
            let batch = match self.layout {
                ColLayout::FixedF32 => {
                    let mut b = FixedSizeListBuilder::new(Float32Builder::new(), d as i32);
                    for i in r0..r1 {
                        for &v in row(i) {
                            b.values().append_value(v as f32);
                        }
                        b.append(true);
                    }
                    let x: ArrayRef = Arc::new(b.finish());
                    RecordBatch::try_from_iter(vec![("token", ids), ("x", x)]).unwrap()
                }
                ColLayout::ListF64 => {
                    let mut b = ListBuilder::new(Float64Builder::new());
                    for i in r0..r1 {
                        for &v in row(i) {
                            b.values().append_value(v);
                        }
                        b.append(true);
                    }
                    let x: ArrayRef = Arc::new(b.finish());
                    RecordBatch::try_from_iter(vec![("token", ids), ("x", x)]).unwrap()
                }
                ColLayout::PerColumn => {
                    let cols: Vec<(String, ArrayRef)> = (0..d)
                        .map(|j| {
                            let c: ArrayRef = Arc::new(Float32Array::from_iter_values(
                                (r0..r1).map(|i| row(i)[j] as f32),
                            ));
                            (format!("d{j}"), c)
                        })
                        .collect();
                    RecordBatch::try_from_iter(cols).unwrap()
                }
                ColLayout::Sequences => {
                    let inner = FixedSizeListBuilder::new(
                        PrimitiveBuilder::<arrow_array::types::Float32Type>::new(),
                        d as i32,
                    );
                    let mut b = ListBuilder::new(inner);
                    for s in r0..r1 {
                        for t in first_token[s]..first_token[s + 1] {
                            for &v in row(t) {
                                b.values().values().append_value(v as f32);
                            }
                            b.values().append(true);
                        }
                        b.append(true);
                    }
                    let x: ArrayRef = Arc::new(b.finish());
                    RecordBatch::try_from_iter(vec![("token", ids), ("x", x)]).unwrap()
                }
            };
            out.push(batch);
            r0 = r1;
        }
        out
    }

    fn parquet(&self) -> Vec<u8> {
        let batches = self.batches();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(self.unit))
            .build();
        let mut buf = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut buf, batches[0].schema(), Some(props))
                .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        buf
    }

    fn ipc(&self, stream: bool) -> Vec<u8> {
        let batches = self.batches();
        let schema = batches[0].schema();
        let mut buf = Vec::new();
        if stream {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &schema).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            w.finish().unwrap();
        } else {
            let mut w = arrow_ipc::writer::FileWriter::try_new(&mut buf, &schema).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            w.finish().unwrap();
        }
        buf
    }
}

/// The column to choose for a table whose layout has an Int32 column beside the vectors.
fn vector_key(layout: ColLayout) -> Option<&'static str> {
    match layout {
        ColLayout::PerColumn => None,
        _ => Some("x"),
    }
}

/// Any columnar file: loading it whole and streaming it must not panic; what loads is consistent, and
/// the two readings agree value for value.
fn columnar_any(
    path: &Path,
    bytes: &[u8],
    key: Option<&str>,
) -> Result<Option<Vec<f64>>, TestCaseError> {
    std::fs::write(path, bytes).unwrap();
    let _ = list_keys(path);
    let whole = load_matrix(path, key);
    let streamed = repscope::data::source::open_file(path, key).and_then(|s| {
        // Damaged metadata may claim any size: read it all only when that is small, else the first row.
        if s.rows().saturating_mul(s.cols()) > 1 << 22 {
            let mut w = vec![0.0; s.cols().min(1 << 22)];
            if s.cols() <= 1 << 22 {
                s.read_f64(0, 1, &mut w)?;
            }
            return Ok(None);
        }
        let mut v = vec![0.0; s.rows() * s.cols()];
        s.read_f64(0, s.rows(), &mut v)?;
        // A read from the end backwards, across units.
        if s.rows() > 1 {
            let mut w = vec![0.0; s.cols()];
            s.read_f64(s.rows() - 1, 1, &mut w)?;
            if w[..] != v[v.len() - s.cols()..] {
                return Ok(Some(None));
            }
        }
        Ok(Some(Some((s.rows(), s.cols(), v))))
    });
    if let Ok(m) = &whole {
        consistent(m)?;
    }
    match (&whole, &streamed) {
        (Ok(m), Ok(Some(Some((r, c, v))))) => {
            prop_assert_eq!((m.rows(), m.cols()), (*r, *c));
            for (k, x) in v.iter().enumerate() {
                let got = m
                    .values_f64()
                    .map(|f| f[k])
                    .unwrap_or(m.as_slice()[k] as f64);
                prop_assert!(
                    same_f32(*x as f32, got as f32),
                    "value {k}: {x} against {got}"
                );
            }
            Ok(Some(v.clone()))
        }
        (_, Ok(Some(None))) => Err(TestCaseError::fail("a read of the last row disagrees")),
        _ => Ok(None),
    }
}

#[test]
fn columnar_valid_files_round_trip_exactly() {
    let d = scratch("columnar-valid");
    check("columnar_valid", 300, valid_table_s(), |t| {
        let files = [
            ("t.parquet", t.parquet()),
            ("t.arrow", t.ipc(false)),
            ("s.arrow", t.ipc(true)),
        ];
        for (name, bytes) in files {
            let p = d.join(name);
            let got = columnar_any(&p, &bytes, vector_key(t.layout))?;
            let v = got.ok_or_else(|| {
                TestCaseError::fail(format!(
                    "{name} ({:?}) refused: {:?}",
                    t.layout,
                    load_matrix(&p, vector_key(t.layout))
                        .err()
                        .map(|e| e.to_string())
                ))
            })?;
            prop_assert_eq!(v.len(), t.rows() * t.cols);
            for (k, (a, b)) in v.iter().zip(&t.values).enumerate() {
                prop_assert!(
                    same_f64(*a, *b),
                    "{}: value {}: {} against {}",
                    name,
                    k,
                    a,
                    b
                );
            }
        }
        Ok(())
    });
}

#[test]
fn columnar_damaged_files() {
    let d = scratch("columnar-damaged");
    check(
        "columnar_damage",
        900,
        (valid_table_s(), 0usize..3, damage_s()),
        |(t, which, dmg)| {
            let (name, mut b) = match which {
                0 => ("t.parquet", t.parquet()),
                1 => ("t.arrow", t.ipc(false)),
                _ => ("s.arrow", t.ipc(true)),
            };
            apply_damage(&mut b, &dmg);
            columnar_any(&d.join(name), &b, vector_key(t.layout))?;
            columnar_any(&d.join(name), &b, None).map(|_| ())
        },
    );
}

#[test]
fn columnar_random_bytes_behind_the_magic() {
    let d = scratch("columnar-random");
    check(
        "columnar_random",
        900,
        (0usize..3, prop::collection::vec(any::<u8>(), 0..400)),
        |(which, tail)| {
            let (name, mut b) = match which {
                0 => ("r.parquet", b"PAR1".to_vec()),
                1 => ("r.arrow", b"ARROW1\0\0".to_vec()),
                _ => ("q.arrow", vec![0xff, 0xff, 0xff, 0xff]),
            };
            b.extend_from_slice(&tail);
            if which == 0 {
                // A footer length and the closing magic, so the reader reaches the metadata.
                b.extend_from_slice(&(tail.len() as u32).to_le_bytes());
                b.extend_from_slice(b"PAR1");
            }
            columnar_any(&d.join(name), &b, None).map(|_| ())
        },
    );
}
