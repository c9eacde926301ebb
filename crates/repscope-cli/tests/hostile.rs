//! Hostile inputs for every subcommand of the binary (embed and analyze-model excepted: they need a model).
//!
//! Generated matrices have 0 to 3 rows or 5 to 40, widths 0 to 2 (a few wider), values of every magnitude
//! (zeros, ±1e-30, f32 subnormals, ±1e19, ±1e30, ±3e38, integers, ties, duplicate and all-zero rows, and a
//! few non-finite or beyond-f32 values), in every dtype (f16, f32, f64, bf16, big-endian f32/f64, Fortran
//! order, and int/bool dtypes that must be refused) and container (.npy, .npz stored or deflated,
//! .safetensors, and for single arrays a parquet file or an Arrow IPC file or stream with a fixed-size-list
//! column). The options are drawn too (small k, sometimes above n). Half the cases are "tame" (enough
//! rows, float dtypes, finite values of any magnitude) so that the measures themselves run on the values.
//!
//! Every run must:
//! - exit with 0 or 2 (never a panic, an abort or a signal); `report` may also exit 3 (some sections
//!   failed, the rest written), and then report.json must be there and `--json` stdout must say
//!   `"partial_failure": true`,
//! - print no "panicked" and no "RUST_BACKTRACE" on stderr, and say something on stderr when it exits 2,
//! - leave every input file byte for byte as it was,
//! - with `--json` and exit 0, print exactly one JSON object on stdout,
//! - refuse int/bool data (exit 2).
//!
//! The configuration is fixed (60 to 250 cases per group, a fixed RNG seed per group, no failure
//! persistence), so the run is deterministic and writes nothing into the source tree. On a failure the
//! case's files are copied to `target/tmp/hostile-failures/<group>/` and the message gives the command
//! line to rerun there. `--nocapture` prints the exit codes seen per group (how far the cases got);
//! `HOSTILE_VERBOSE=1` also prints the last stderr line of every run.
//! More cases: `HOSTILE_CASES=500 cargo test --release -p repscope-cli --test hostile`.
mod common;
use common::*;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

// ---------------------------------------------------------------------------------------------------------
// Generated data

/// A tiny deterministic generator for the values of one matrix (proptest shrinks its seed, rows and cols).
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

const EXTREMES: [f64; 13] = [
    0.0, 1e-30, -1e-30, 1e-40, -1e-40, 1e-45, 1e19, -1e19, 1e30, -1e30, 3e38, -3e38, 1.0,
];
const SCALES: [f64; 7] = [1e-40, 1e-30, 1e-20, 1e19, 1e30, 1e37, 3e37];
const NON_FINITE: [f64; 6] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e300,
    -1e39,
    4e38,
];

/// How the values of a matrix are drawn.
#[derive(Clone, Copy, Debug)]
enum Profile {
    /// Uniform in [-10, 10].
    Normal,
    /// Integers in -2..=2: many exact ties and duplicates.
    Integers,
    /// Uniform times one huge or tiny scale (1e-40 .. 3e37).
    Scaled,
    /// Normal values with a quarter of the entries replaced by extremes (0, ±1e-30, ±1e-40, ±1e19, ±1e30, ±3e38).
    Mixed,
    /// Every value 0.
    Zeros,
    /// Every row the same.
    Identical,
    /// Magnitudes 10^-45 .. 10^38 entry by entry.
    Magnitudes,
    /// Normal values and one non-finite or beyond-f32 value.
    NonFinite,
}

const PROFILES: [Profile; 15] = [
    Profile::Normal,
    Profile::Normal,
    Profile::Normal,
    Profile::Normal,
    Profile::Integers,
    Profile::Integers,
    Profile::Scaled,
    Profile::Scaled,
    Profile::Mixed,
    Profile::Mixed,
    Profile::Zeros,
    Profile::Identical,
    Profile::Magnitudes,
    Profile::Magnitudes,
    Profile::NonFinite,
];

#[derive(Clone, Debug)]
struct Mat {
    rows: usize,
    cols: usize,
    profile: Profile,
    /// Row-major values.
    vals: Vec<f64>,
}

fn gen_mat(rows: usize, cols: usize, profile: Profile, seed: u64) -> Mat {
    let mut g = Mix(seed);
    let scale = SCALES[g.below(SCALES.len())];
    // Duplicate rows in a third of the matrices, all-zero rows in a fifth.
    let dup_rate = if g.below(3) == 0 { 15 } else { 0 };
    let zero_rate = if g.below(5) == 0 { 8 } else { 0 };
    let mut v = vec![0.0f64; rows * cols];
    for i in 0..rows {
        let row_mode = g.below(100);
        for j in 0..cols {
            let u = g.unit() * 10.0;
            v[i * cols + j] = match profile {
                Profile::Normal | Profile::NonFinite => u,
                Profile::Integers => g.below(5) as f64 - 2.0,
                Profile::Scaled => u * scale,
                Profile::Mixed => {
                    if g.below(4) == 0 {
                        EXTREMES[g.below(EXTREMES.len())]
                    } else {
                        u
                    }
                }
                Profile::Zeros => 0.0,
                Profile::Identical => (j as f64 + 1.0) * 0.5,
                Profile::Magnitudes => u * 10f64.powi(g.below(84) as i32 - 45),
            };
        }
        let shaped = !matches!(profile, Profile::Zeros | Profile::Identical);
        if shaped && i > 0 && row_mode < dup_rate {
            // An exact duplicate of an earlier row.
            let src = g.below(i);
            for j in 0..cols {
                v[i * cols + j] = v[src * cols + j];
            }
        } else if shaped && row_mode >= dup_rate && row_mode < dup_rate + zero_rate {
            for j in 0..cols {
                v[i * cols + j] = 0.0;
            }
        }
    }
    if matches!(profile, Profile::NonFinite) && !v.is_empty() {
        let at = g.below(v.len());
        v[at] = NON_FINITE[g.below(NON_FINITE.len())];
    }
    Mat {
        rows,
        cols,
        profile,
        vals: v,
    }
}

/// Half the cases are "tame": enough rows and columns, float dtypes, the right keys and finite values (of
/// any magnitude, with ties and duplicates), so that the measures run on hostile values instead of stopping
/// at the first check; the other half draws everything.
fn tame_s() -> BoxedStrategy<bool> {
    any::<bool>().boxed()
}

fn rows_s(tame: bool) -> BoxedStrategy<usize> {
    if tame {
        (8usize..=40).boxed()
    } else {
        prop_oneof![1 => 0usize..=3, 3 => 5usize..=40].boxed()
    }
}

fn cols_s(tame: bool) -> BoxedStrategy<usize> {
    if tame {
        prop_oneof![1 => Just(1usize), 4 => 2usize..=9, 1 => 10usize..=24].boxed()
    } else {
        prop_oneof![1 => Just(0usize), 5 => 1usize..=2, 2 => 3usize..=9, 1 => 10usize..=24].boxed()
    }
}

/// Profiles of finite values (the tame cases).
const TAME_PROFILES: [Profile; 10] = [
    Profile::Normal,
    Profile::Normal,
    Profile::Normal,
    Profile::Integers,
    Profile::Scaled,
    Profile::Scaled,
    Profile::Mixed,
    Profile::Mixed,
    Profile::Magnitudes,
    Profile::Magnitudes,
];

fn profile_s(tame: bool) -> BoxedStrategy<Profile> {
    prop::sample::select(if tame {
        TAME_PROFILES.to_vec()
    } else {
        PROFILES.to_vec()
    })
    .boxed()
}

fn mat_with(rows: usize, tame: bool) -> BoxedStrategy<Mat> {
    (cols_s(tame), profile_s(tame), any::<u64>())
        .prop_map(move |(c, p, s)| gen_mat(rows, c, p, s))
        .boxed()
}

/// Rows of a second array that should match the first: the same in tame cases, mostly the same otherwise.
fn companion_rows(rows: usize, tame: bool) -> BoxedStrategy<usize> {
    if tame {
        Just(rows).boxed()
    } else {
        prop_oneof![6 => Just(rows), 1 => 0usize..=rows + 2].boxed()
    }
}

/// Tame arrays stay finite in their dtype: f16 data beyond the f16 range is written as f32 instead.
fn keep_finite(mut a: Array) -> Array {
    if a.dtype == Dtype::F2 && a.mat.vals.iter().any(|v| v.abs() > 65504.0) {
        a.dtype = Dtype::F4;
    }
    a
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    F2,
    F4,
    F8,
    F4Be,
    F8Be,
    Bf16,
    I4,
    I8,
    U1,
    B1,
}

impl Dtype {
    /// Integer and boolean data is refused.
    fn refused(self) -> bool {
        matches!(self, Dtype::I4 | Dtype::I8 | Dtype::U1 | Dtype::B1)
    }
}

fn dtype_s() -> BoxedStrategy<Dtype> {
    prop_oneof![
        7 => float_dtype_s(),
        1 => prop::sample::select(vec![Dtype::I4, Dtype::I8, Dtype::U1, Dtype::B1]),
    ]
    .boxed()
}

/// Only float dtypes (for arrays whose refusal would hide the rest of the command).
fn float_dtype_s() -> BoxedStrategy<Dtype> {
    prop::sample::select(vec![
        Dtype::F4,
        Dtype::F4,
        Dtype::F8,
        Dtype::F2,
        Dtype::F4Be,
        Dtype::F8Be,
        Dtype::Bf16,
    ])
    .boxed()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Container {
    Npy,
    NpzStored,
    NpzDeflated,
    Safetensors,
    /// A parquet file: one fixed-size-list column per array (f16, f32, f64, or an int/bool leaf).
    Parquet,
    /// An Arrow IPC file (`stream` false) or stream, laid out as the parquet file.
    Arrow {
        stream: bool,
    },
}

impl Container {
    fn ext(self) -> &'static str {
        match self {
            Container::Npy => "npy",
            Container::NpzStored | Container::NpzDeflated => "npz",
            Container::Safetensors => "safetensors",
            Container::Parquet => "parquet",
            Container::Arrow { .. } => "arrow",
        }
    }
}

fn container_s() -> BoxedStrategy<Container> {
    prop::sample::select(vec![
        Container::Npy,
        Container::Npy,
        Container::NpzStored,
        Container::NpzDeflated,
        Container::Safetensors,
        Container::Parquet,
        Container::Arrow { stream: false },
        Container::Arrow { stream: true },
    ])
    .boxed()
}

fn multi_container_s() -> BoxedStrategy<Container> {
    prop::sample::select(vec![
        Container::NpzStored,
        Container::NpzDeflated,
        Container::Safetensors,
    ])
    .boxed()
}

/// One array as it is written: values, dtype, order.
#[derive(Clone, Debug)]
struct Array {
    mat: Mat,
    dtype: Dtype,
    fortran: bool,
}

/// How the key of a single-array input is passed.
#[derive(Clone, Copy, Debug)]
enum KeyMode {
    None,
    Right,
    Wrong,
}

#[derive(Clone, Debug)]
struct Input {
    arr: Array,
    container: Container,
    key: KeyMode,
}

impl Input {
    fn refused(&self) -> bool {
        self.arr.dtype.refused()
    }
}

fn array_with(mat: BoxedStrategy<Mat>, dt: BoxedStrategy<Dtype>) -> BoxedStrategy<Array> {
    (mat, dt, prop::bool::weighted(0.2))
        .prop_map(|(mat, dtype, fortran)| Array {
            mat,
            dtype,
            fortran,
        })
        .boxed()
}

fn key_s() -> BoxedStrategy<KeyMode> {
    prop_oneof![7 => Just(KeyMode::None), 3 => Just(KeyMode::Right), 1 => Just(KeyMode::Wrong)]
        .boxed()
}

fn input_from(
    mat: BoxedStrategy<Mat>,
    dt: BoxedStrategy<Dtype>,
    key: BoxedStrategy<KeyMode>,
) -> BoxedStrategy<Input> {
    (array_with(mat, dt), container_s(), key)
        .prop_map(|(arr, container, key)| Input {
            arr,
            container,
            key,
        })
        .boxed()
}

/// One input of `rows` rows.
fn input_with(rows: usize, tame: bool) -> BoxedStrategy<Input> {
    if tame {
        input_from(
            mat_with(rows, true),
            float_dtype_s(),
            prop_oneof![Just(KeyMode::None), Just(KeyMode::Right)].boxed(),
        )
        .prop_map(|mut i| {
            i.arr = keep_finite(i.arr);
            i
        })
        .boxed()
    } else {
        input_from(mat_with(rows, false), dtype_s(), key_s())
    }
}

fn input_s() -> BoxedStrategy<Input> {
    tame_s()
        .prop_flat_map(|t| rows_s(t).prop_flat_map(move |r| input_with(r, t)))
        .boxed()
}

/// A group's strategy: (tame, rows) drawn first, then `f(rows, tame)`.
fn with_rows<S: Strategy + 'static>(
    f: impl Fn(usize, bool) -> S + Clone + 'static,
) -> BoxedStrategy<S::Value>
where
    S::Value: std::fmt::Debug,
{
    tame_s()
        .prop_flat_map(move |t| {
            let f = f.clone();
            rows_s(t).prop_flat_map(move |r| f(r, t))
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------------------
// Writing the files

fn npy_descr(d: Dtype) -> &'static str {
    match d {
        Dtype::F2 => "<f2",
        // numpy has no bfloat16: .npy files get f4.
        Dtype::F4 | Dtype::Bf16 => "<f4",
        Dtype::F8 => "<f8",
        Dtype::F4Be => ">f4",
        Dtype::F8Be => ">f8",
        Dtype::I4 => "<i4",
        Dtype::I8 => "<i8",
        Dtype::U1 => "|u1",
        Dtype::B1 => "|b1",
    }
}

fn elem_bytes(d: Dtype, v: f64, npy: bool, out: &mut Vec<u8>) {
    match d {
        Dtype::F2 => out.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
        Dtype::Bf16 if !npy => out.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
        Dtype::F4 | Dtype::Bf16 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        Dtype::F4Be if npy => out.extend_from_slice(&(v as f32).to_be_bytes()),
        Dtype::F4Be => out.extend_from_slice(&(v as f32).to_le_bytes()),
        Dtype::F8 => out.extend_from_slice(&v.to_le_bytes()),
        Dtype::F8Be if npy => out.extend_from_slice(&v.to_be_bytes()),
        Dtype::F8Be => out.extend_from_slice(&v.to_le_bytes()),
        Dtype::I4 => out.extend_from_slice(&(v as i32).to_le_bytes()),
        Dtype::I8 => out.extend_from_slice(&(v as i64).to_le_bytes()),
        Dtype::U1 => out.push(v as u8),
        Dtype::B1 => out.push((v != 0.0) as u8),
    }
}

fn raw_data(a: &Array, npy: bool) -> Vec<u8> {
    let (r, c) = (a.mat.rows, a.mat.cols);
    let mut out = Vec::new();
    if a.fortran && npy {
        for j in 0..c {
            for i in 0..r {
                elem_bytes(a.dtype, a.mat.vals[i * c + j], npy, &mut out);
            }
        }
    } else {
        for &v in &a.mat.vals {
            elem_bytes(a.dtype, v, npy, &mut out);
        }
    }
    out
}

fn npy_of(a: &Array) -> Vec<u8> {
    npy_bytes(
        npy_descr(a.dtype),
        a.fortran,
        &[a.mat.rows, a.mat.cols],
        &raw_data(a, true),
    )
}

fn st_dtype(d: Dtype) -> safetensors::Dtype {
    match d {
        Dtype::F2 => safetensors::Dtype::F16,
        Dtype::F4 | Dtype::F4Be => safetensors::Dtype::F32,
        Dtype::F8 | Dtype::F8Be => safetensors::Dtype::F64,
        Dtype::Bf16 => safetensors::Dtype::BF16,
        Dtype::I4 => safetensors::Dtype::I32,
        Dtype::I8 => safetensors::Dtype::I64,
        Dtype::U1 => safetensors::Dtype::U8,
        Dtype::B1 => safetensors::Dtype::BOOL,
    }
}

/// Writes named arrays into one file of the container; returns its path (`stem` plus the extension).
fn write_arrays(stem: &Path, container: Container, arrays: &[(&str, &Array)]) -> PathBuf {
    let path = stem.with_extension(container.ext());
    match container {
        Container::Npy => {
            assert_eq!(arrays.len(), 1);
            std::fs::write(&path, npy_of(arrays[0].1)).unwrap();
        }
        Container::NpzStored | Container::NpzDeflated => {
            let members: Vec<(&str, Vec<u8>)> =
                arrays.iter().map(|(n, a)| (*n, npy_of(a))).collect();
            write_npz(&path, &members, container == Container::NpzDeflated);
        }
        Container::Safetensors => {
            let raws: Vec<Vec<u8>> = arrays.iter().map(|(_, a)| raw_data(a, false)).collect();
            let views: Vec<(String, safetensors::tensor::TensorView)> = arrays
                .iter()
                .zip(&raws)
                .map(|((n, a), raw)| {
                    let t = safetensors::tensor::TensorView::new(
                        st_dtype(a.dtype),
                        vec![a.mat.rows, a.mat.cols],
                        raw,
                    )
                    .unwrap();
                    (n.to_string(), t)
                })
                .collect();
            let bytes = safetensors::serialize(views, None).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        Container::Parquet => {
            let batch = record_batch(arrays);
            let f = std::fs::File::create(&path).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        }
        Container::Arrow { stream } => {
            let batch = record_batch(arrays);
            let f = std::fs::File::create(&path).unwrap();
            if stream {
                let mut w = arrow_ipc::writer::StreamWriter::try_new(f, &batch.schema()).unwrap();
                w.write(&batch).unwrap();
                w.finish().unwrap();
            } else {
                let mut w = arrow_ipc::writer::FileWriter::try_new(f, &batch.schema()).unwrap();
                w.write(&batch).unwrap();
                w.finish().unwrap();
            }
        }
    }
    path
}

/// One record batch with a fixed-size-list column per array, its leaf of the array's dtype (bf16, which
/// Arrow lacks, as f32; the byte order is the format's own).
fn record_batch(arrays: &[(&str, &Array)]) -> arrow_array::RecordBatch {
    use arrow_array::{
        Array, ArrayRef, BooleanArray, FixedSizeListArray, Float16Array, Float32Array,
        Float64Array, Int32Array, Int64Array, UInt8Array,
    };
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (name, a) in arrays {
        let v = &a.mat.vals;
        let values: ArrayRef = match a.dtype {
            Dtype::F2 => Arc::new(Float16Array::from_iter_values(
                v.iter().map(|&x| half::f16::from_f64(x)),
            )),
            Dtype::F4 | Dtype::F4Be | Dtype::Bf16 => {
                Arc::new(Float32Array::from_iter_values(v.iter().map(|&x| x as f32)))
            }
            Dtype::F8 | Dtype::F8Be => Arc::new(Float64Array::from_iter_values(v.iter().copied())),
            Dtype::I4 => Arc::new(Int32Array::from_iter_values(v.iter().map(|&x| x as i32))),
            Dtype::I8 => Arc::new(Int64Array::from_iter_values(v.iter().map(|&x| x as i64))),
            Dtype::U1 => Arc::new(UInt8Array::from_iter_values(v.iter().map(|&x| x as u8))),
            Dtype::B1 => Arc::new(BooleanArray::from(
                v.iter().map(|&x| x != 0.0).collect::<Vec<bool>>(),
            )),
        };
        let item = Arc::new(Field::new("item", values.data_type().clone(), true));
        let list = FixedSizeListArray::try_new(item, a.mat.cols as i32, values, None).unwrap();
        fields.push(Field::new(*name, list.data_type().clone(), true));
        columns.push(Arc::new(list));
    }
    arrow_array::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// Writes a single-array input; returns its path and the key arguments to pass.
fn write_input(dir: &Path, stem: &str, inp: &Input, key_flag: &str) -> (PathBuf, Vec<String>) {
    let p = write_arrays(&dir.join(stem), inp.container, &[("x", &inp.arr)]);
    let key = match (inp.key, inp.container) {
        (KeyMode::None, _) => vec![],
        (KeyMode::Right, Container::Npy) => vec![],
        (KeyMode::Right, _) => vec![key_flag.to_string(), "x".to_string()],
        (KeyMode::Wrong, _) => vec![key_flag.to_string(), "nope".to_string()],
    };
    (p, key)
}

#[derive(Clone, Copy, Debug)]
enum LabelKind {
    I4,
    I8,
    U1,
    B1,
    I2Be,
    Str,
    Bytes,
    Text,
    NpzI4,
    /// Float labels, which are not labels.
    F4,
}

#[derive(Clone, Debug)]
struct Labels {
    kind: LabelKind,
    n: usize,
    classes: usize,
    seed: u64,
}

fn labels_s(rows: usize, tame: bool) -> BoxedStrategy<Labels> {
    let mut kinds = vec![
        LabelKind::I4,
        LabelKind::I4,
        LabelKind::I8,
        LabelKind::U1,
        LabelKind::B1,
        LabelKind::I2Be,
        LabelKind::Str,
        LabelKind::Bytes,
        LabelKind::Text,
        LabelKind::Text,
        LabelKind::NpzI4,
        LabelKind::F4,
    ];
    if tame {
        // Float labels are refused.
        kinds.pop();
    }
    (
        prop::sample::select(kinds),
        companion_rows(rows, tame),
        1usize..=5,
        any::<u64>(),
    )
        .prop_map(|(kind, n, classes, seed)| Labels {
            kind,
            n,
            classes,
            seed,
        })
        .boxed()
}

/// The distinct labels of a labels file.
fn label_classes(l: &Labels) -> usize {
    let mut ids = label_ids(l);
    ids.sort();
    ids.dedup();
    ids.len()
}

fn label_ids(l: &Labels) -> Vec<i64> {
    let mut g = Mix(l.seed);
    (0..l.n)
        .map(|i| {
            if g.below(3) == 0 {
                g.below(l.classes) as i64
            } else {
                (i % l.classes) as i64
            }
        })
        .map(|c| c * 7 - 3)
        .collect()
}

fn write_labels(dir: &Path, l: &Labels) -> PathBuf {
    let ids = label_ids(l);
    let npy = |descr: &str, data: Vec<u8>| npy_bytes(descr, false, &[l.n], &data);
    match l.kind {
        LabelKind::I4 => {
            let p = dir.join("labels.npy");
            let d = ids.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect();
            std::fs::write(&p, npy("<i4", d)).unwrap();
            p
        }
        LabelKind::I8 => {
            let p = dir.join("labels.npy");
            let d = ids.iter().flat_map(|&x| x.to_le_bytes()).collect();
            std::fs::write(&p, npy("<i8", d)).unwrap();
            p
        }
        LabelKind::U1 => {
            let p = dir.join("labels.npy");
            let d = ids.iter().map(|&x| x as u8).collect();
            std::fs::write(&p, npy("|u1", d)).unwrap();
            p
        }
        LabelKind::B1 => {
            let p = dir.join("labels.npy");
            let d = ids.iter().map(|&x| (x > 0) as u8).collect();
            std::fs::write(&p, npy("|b1", d)).unwrap();
            p
        }
        LabelKind::I2Be => {
            let p = dir.join("labels.npy");
            let d = ids.iter().flat_map(|&x| (x as i16).to_be_bytes()).collect();
            std::fs::write(&p, npy(">i2", d)).unwrap();
            p
        }
        LabelKind::Str => {
            let p = dir.join("labels.npy");
            let d = ids
                .iter()
                .flat_map(|&x| {
                    let s: Vec<char> = format!("c{}", x.rem_euclid(100)).chars().collect();
                    (0..3).flat_map(move |k| (s.get(k).map_or(0, |&c| c as u32)).to_le_bytes())
                })
                .collect();
            std::fs::write(&p, npy("<U3", d)).unwrap();
            p
        }
        LabelKind::Bytes => {
            let p = dir.join("labels.npy");
            let d = ids
                .iter()
                .flat_map(|&x| {
                    let mut b = format!("k{}", x.rem_euclid(10)).into_bytes();
                    b.resize(4, 0);
                    b
                })
                .collect();
            std::fs::write(&p, npy("|S4", d)).unwrap();
            p
        }
        LabelKind::Text => {
            let p = dir.join("labels.txt");
            let text: String = ids
                .iter()
                .map(|&x| {
                    if x % 2 == 0 {
                        format!("class {x}\n")
                    } else {
                        format!("{x}\n")
                    }
                })
                .collect();
            std::fs::write(&p, text).unwrap();
            p
        }
        LabelKind::NpzI4 => {
            let p = dir.join("labels.npz");
            let d = ids.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect();
            write_npz(&p, &[("y", npy("<i4", d))], false);
            p
        }
        LabelKind::F4 => {
            let p = dir.join("labels.npy");
            let d = ids.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect();
            std::fs::write(&p, npy("<f4", d)).unwrap();
            p
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Running and checking

/// Global options drawn for every run.
#[derive(Clone, Debug)]
struct Global {
    json: bool,
    quiet: bool,
    threads: u8,
}

fn global_s() -> BoxedStrategy<Global> {
    (prop::bool::weighted(0.6), any::<bool>(), 1u8..=2)
        .prop_map(|(json, quiet, threads)| Global {
            json,
            quiet,
            threads,
        })
        .boxed()
}

impl Global {
    fn args(&self) -> Vec<String> {
        let mut a = vec!["--threads".to_string(), self.threads.to_string()];
        if self.json {
            a.push("--json".into());
        }
        if self.quiet {
            a.push("-q".into());
        }
        a
    }
}

/// A fresh, empty folder for one case of a group.
fn case_dir(group: &str) -> PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("repscope-hostile-{}-{group}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn failure_dir(group: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hostile-failures")
        .join(group)
}

/// Copies the case's files next to the build, for a reproducer that outlives the test.
fn keep_case(group: &str, dir: &Path) -> PathBuf {
    let keep = failure_dir(group);
    let _ = std::fs::remove_dir_all(&keep);
    std::fs::create_dir_all(&keep).unwrap();
    copy_tree(dir, &keep);
    keep
}

fn copy_tree(from: &Path, to: &Path) {
    if let Ok(rd) = std::fs::read_dir(from) {
        for e in rd.flatten() {
            let p = e.path();
            let q = to.join(e.file_name());
            if p.is_dir() {
                let _ = std::fs::create_dir_all(&q);
                copy_tree(&p, &q);
            } else {
                let _ = std::fs::copy(&p, &q);
            }
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn head(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

thread_local! {
    /// Exit codes seen by this thread's group: printed at the end (`--nocapture`), to see the coverage.
    static EXITS: std::cell::RefCell<std::collections::BTreeMap<i32, usize>> = Default::default();
}

/// A check of what an accepted exit besides 0 and 2 must leave behind.
type ExitCheck<'b> = dyn Fn(&Run) -> Result<(), String> + 'b;

/// One run of the binary, checked against the properties every run must have.
struct Check<'a> {
    group: &'a str,
    dir: &'a Path,
    /// Files the command reads: they must not change.
    inputs: Vec<PathBuf>,
    json: bool,
    /// The run must exit 2 (int/bool data).
    must_refuse: bool,
    /// What the case is, for the failure message.
    what: String,
    /// Exit codes accepted besides 0 and 2, with a check of what such an exit must leave behind.
    also_ok: Option<(i32, &'a ExitCheck<'a>)>,
}

/// `report` exits 3 when some sections failed and the rest was written: report.json must then be there, and
/// with `--json` stdout must say `partial_failure`.
fn partial_report(out: &Path, json: bool) -> impl Fn(&Run) -> Result<(), String> + '_ {
    move |r: &Run| {
        let text = std::fs::read_to_string(out.join("report.json"))
            .map_err(|e| format!("exit 3 but no report.json ({e})"))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("exit 3 and report.json is not JSON ({e})"))?;
        if json {
            let v: serde_json::Value = serde_json::from_str(&r.stdout)
                .map_err(|e| format!("exit 3 and stdout is not one JSON object ({e})"))?;
            if v.get("partial_failure") != Some(&serde_json::Value::Bool(true)) {
                return Err("exit 3 without \"partial_failure\": true on stdout".into());
            }
        }
        Ok(())
    }
}

impl Check<'_> {
    fn run(&self, args: &[String]) -> Result<Run, TestCaseError> {
        let before: Vec<Option<Vec<u8>>> =
            self.inputs.iter().map(|p| std::fs::read(p).ok()).collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = repscope(&argv);
        EXITS.with(|e| *e.borrow_mut().entry(r.code).or_insert(0) += 1);
        if std::env::var_os("HOSTILE_VERBOSE").is_some() {
            println!(
                "{} exit {}: {}",
                self.group,
                r.code,
                r.stderr
                    .lines()
                    .last()
                    .unwrap_or("")
                    .replace(&self.dir.display().to_string(), "")
            );
        }
        let after: Vec<Option<Vec<u8>>> =
            self.inputs.iter().map(|p| std::fs::read(p).ok()).collect();
        let mut problems = Vec::new();
        match self.also_ok {
            Some((code, check)) if r.code == code => {
                if let Err(e) = check(&r) {
                    problems.push(e);
                }
            }
            _ if r.code != 0 && r.code != 2 => {
                problems.push(format!("exit code {} (expected 0 or 2)", r.code));
            }
            _ => {}
        }
        if r.stderr.contains("panicked") || r.stderr.contains("RUST_BACKTRACE") {
            problems.push("a panic on stderr".to_string());
        }
        for (i, p) in self.inputs.iter().enumerate() {
            if before[i] != after[i] {
                problems.push(format!("input {} changed", p.display()));
            }
        }
        if self.must_refuse && r.code != 2 {
            problems.push(format!(
                "int/bool data was not refused with exit 2 (exit {})",
                r.code
            ));
        }
        if r.code == 2 && r.stderr.trim().is_empty() {
            problems.push("exit 2 with nothing on stderr".to_string());
        }
        if self.json && r.code == 0 {
            match serde_json::from_str::<serde_json::Value>(&r.stdout) {
                Ok(v) if v.is_object() => {}
                Ok(_) => problems.push("stdout is JSON but not an object".to_string()),
                Err(e) => problems.push(format!("stdout is not exactly one JSON object ({e})")),
            }
        }
        if problems.is_empty() {
            return Ok(r);
        }
        let keep = keep_case(self.group, self.dir);
        let d = self.dir.display().to_string();
        let k = keep.display().to_string();
        let cmd: Vec<String> = args
            .iter()
            .map(|a| shell_quote(&a.replace(&d, &k)))
            .collect();
        Err(TestCaseError::fail(format!(
            "{}\n  case: {}\n  rerun: target/release/repscope {}\n  exit {}\n  stderr:\n{}\n  stdout:\n{}",
            problems.join("; "),
            self.what,
            cmd.join(" "),
            r.code,
            head(&r.stderr, 3000),
            head(&r.stdout, 1500),
        )))
    }
}

fn s(x: impl ToString) -> String {
    x.to_string()
}

fn p(x: &Path) -> String {
    x.display().to_string()
}

fn opt<T: ToString>(args: &mut Vec<String>, flag: &str, v: &Option<T>) {
    if let Some(v) = v {
        args.push(flag.to_string());
        args.push(v.to_string());
    }
}

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        max_shrink_iters: 400,
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// Runs one group's property with a fixed seed (deterministic from run to run).
fn check_group<S: Strategy>(
    group: &'static str,
    cases: u32,
    strategy: S,
    test: impl Fn(&Path, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut seed = [0u8; 32];
    for (i, b) in group.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(config(cases), rng);
    let result = runner.run(&strategy, |v| {
        let dir = case_dir(group);
        test(&dir, v)
    });
    let _ = std::fs::remove_dir_all(case_dir(group));
    EXITS.with(|e| println!("{group}: exit codes (code: runs) {:?}", e.borrow()));
    if let Err(e) = result {
        panic!("{group}: {e}");
    }
}

fn describe(inp: &Input) -> String {
    format!(
        "{}x{} {:?} {:?}{} in {:?}, key {:?}",
        inp.arr.mat.rows,
        inp.arr.mat.cols,
        inp.arr.mat.profile,
        inp.arr.dtype,
        if inp.arr.fortran { " fortran" } else { "" },
        inp.container,
        inp.key
    )
}

fn k_s() -> BoxedStrategy<Option<usize>> {
    prop_oneof![1 => Just(None), 6 => (1usize..=5).prop_map(Some), 1 => Just(Some(0)), 1 => (6usize..=60).prop_map(Some)].boxed()
}

fn metric_s() -> BoxedStrategy<Option<&'static str>> {
    prop::sample::select(vec![None, Some("euclidean"), Some("cosine")]).boxed()
}

// ---------------------------------------------------------------------------------------------------------
// The groups

#[test]
fn id() {
    let est = prop::sample::subsequence(
        vec![
            "twonn",
            "twonn_mle",
            "mle",
            "gride",
            "pca_ev",
            "pca_fo",
            "pca_pr",
            "pca",
            "all",
            "default",
            "mom",
            "tle",
            "mada",
            "mle_unbiased",
            "mle_global",
            "corrint",
            "mind_mlk",
            "mind_mli",
            "mind_kl",
            "twonn_bayes",
            "binomial",
            "binomial_rk",
            "danco",
            "danco_fit",
            "knn",
            "ph",
            "kstar_gride",
            "kstar_binomial",
            "hidalgo",
            "pca_maxgap",
            "pca_ratio",
            "pca_kaiser",
            "pca_broken_stick",
            "pca_fan",
        ],
        0..=3,
    );
    let strat = (
        input_s(),
        global_s(),
        est,
        k_s(),
        prop::option::of(prop::sample::select(vec![1usize, 2, 3, 4, 100])),
        metric_s(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![0.0f64, 0.5, 0.99])),
        prop::option::of(0u64..3),
    );
    check_group(
        "id",
        200,
        strat,
        |dir, (inp, g, est, k, range_max, metric, no_scale, discard, seed)| {
            let (f, key) = write_input(dir, "x", &inp, "--key");
            let mut a = vec![s("id"), p(&f)];
            a.extend(key);
            a.extend(g.args());
            for e in est {
                a.push("-e".into());
                a.push(e.into());
            }
            opt(&mut a, "-k", &k);
            opt(&mut a, "--range-max", &range_max);
            opt(&mut a, "--metric", &metric);
            opt(&mut a, "--discard-fraction", &discard);
            opt(&mut a, "--seed", &seed);
            if no_scale {
                a.push("--no-scale".into());
            }
            Check {
                group: "id",
                dir,
                inputs: vec![f],
                json: g.json,
                must_refuse: inp.refused(),
                what: describe(&inp),
                also_ok: None,
            }
            .run(&a)?;
            Ok(())
        },
    );
}

#[test]
fn lid() {
    let strat = (input_s(), global_s(), k_s(), metric_s());
    check_group("lid", 150, strat, |dir, (inp, g, k, metric)| {
        let (f, key) = write_input(dir, "x", &inp, "--key");
        let out = dir.join("out.npy");
        let mut a = vec![s("lid"), p(&f), s("-o"), p(&out)];
        a.extend(key);
        a.extend(g.args());
        opt(&mut a, "-k", &k);
        opt(&mut a, "--metric", &metric);
        Check {
            group: "lid",
            dir,
            inputs: vec![f],
            json: g.json,
            must_refuse: inp.refused(),
            what: describe(&inp),
            also_ok: None,
        }
        .run(&a)?;
        Ok(())
    });
}

#[test]
fn knn() {
    let approx = prop::option::of((
        prop::option::of(prop::sample::select(vec![2usize, 3, 16])),
        prop::option::of(prop::sample::select(vec![1usize, 4, 50])),
        prop::option::of(prop::sample::select(vec![1usize, 3, 64])),
        prop::option::of(0u64..3),
    ));
    let strat = (input_s(), global_s(), k_s(), metric_s(), approx);
    check_group("knn", 200, strat, |dir, (inp, g, k, metric, approx)| {
        let (f, key) = write_input(dir, "x", &inp, "--key");
        let out = dir.join("out.npz");
        let mut a = vec![s("knn"), p(&f), s("-o"), p(&out)];
        a.extend(key);
        a.extend(g.args());
        opt(&mut a, "-k", &k);
        opt(&mut a, "--metric", &metric);
        if let Some((m, efc, efs, seed)) = approx {
            a.push("--approximate".into());
            opt(&mut a, "--m", &m);
            opt(&mut a, "--ef-construction", &efc);
            opt(&mut a, "--ef-search", &efs);
            opt(&mut a, "--seed", &seed);
        }
        Check {
            group: "knn",
            dir,
            inputs: vec![f],
            json: g.json,
            must_refuse: inp.refused(),
            what: describe(&inp),
            also_ok: None,
        }
        .run(&a)?;
        Ok(())
    });
}

#[test]
fn spectrum() {
    let strat = (
        input_s(),
        global_s(),
        prop::sample::select(vec![
            None,
            None,
            None,
            Some(1e-30),
            Some(0.5),
            Some(1e30),
            Some(0.0),
            Some(-1.0),
        ]),
        prop::sample::select(vec![
            None,
            None,
            None,
            None,
            Some("1,2"),
            Some("11,100"),
            Some("2,1000"),
            Some("3,1"),
            Some("0,5"),
            Some("1,1"),
        ]),
        prop::option::of(prop::sample::select(vec![0usize, 1, 100])),
        prop::option::of(prop::sample::select(vec![0usize, 3, 1000])),
    );
    check_group(
        "spectrum",
        150,
        strat,
        |dir, (inp, g, eps2, window, rogue, show)| {
            let (f, key) = write_input(dir, "x", &inp, "--key");
            let mut a = vec![s("spectrum"), p(&f)];
            a.extend(key);
            a.extend(g.args());
            opt(&mut a, "--eps2", &eps2);
            opt(&mut a, "--alpha-window", &window);
            opt(&mut a, "--top-rogue", &rogue);
            opt(&mut a, "--show", &show);
            Check {
                group: "spectrum",
                dir,
                inputs: vec![f],
                json: g.json,
                must_refuse: inp.refused(),
                what: describe(&inp),
                also_ok: None,
            }
            .run(&a)?;
            Ok(())
        },
    );
}

#[test]
fn activations() {
    let strat = with_rows(|rows, tame| {
        (
            input_with(rows, tame),
            prop::option::of(labels_s(rows, tame)),
            global_s(),
            prop::sample::select(vec![
                None,
                None,
                None,
                None,
                Some(0.0),
                Some(1e-30),
                Some(5.0),
                Some(-1.0),
                Some(1e30),
            ]),
            prop::sample::select(vec![
                None,
                None,
                None,
                None,
                Some(0.0),
                Some(1.0),
                Some(1e6),
                Some(-2.0),
            ]),
            prop::sample::select(vec![
                None,
                None,
                None,
                None,
                Some(1e-6),
                Some(0.5),
                Some(0.0),
                Some(-1.0),
            ]),
            prop::sample::select(vec![
                None,
                None,
                None,
                None,
                Some(1.0),
                Some(2.0),
                Some(0.9),
            ]),
            prop::option::of(prop::sample::select(vec![0usize, 1, 5])),
        )
    });
    check_group(
        "activations",
        150,
        strat,
        |dir, (inp, ids, g, abs, ratio, eps, peak, listed)| {
            let (f, key) = write_input(dir, "x", &inp, "--key");
            let mut a = vec![s("activations"), p(&f)];
            a.extend(key);
            a.extend(g.args());
            let mut inputs = vec![f];
            if let Some(l) = &ids {
                // Labels stand in for token ids: integer kinds are read, the rest refused.
                let lp = write_labels(dir, l);
                a.push("--token-ids".into());
                a.push(p(&lp));
                if matches!(l.kind, LabelKind::NpzI4) && l.seed % 2 == 0 {
                    a.push("--token-ids-key".into());
                    a.push("y".into());
                }
                inputs.push(lp);
            }
            opt(&mut a, "--massive-abs", &abs);
            opt(&mut a, "--massive-ratio", &ratio);
            opt(&mut a, "--eps", &eps);
            opt(&mut a, "--peak-factor", &peak);
            opt(&mut a, "--max-listed", &listed);
            Check {
                group: "activations",
                dir,
                inputs,
                json: g.json,
                must_refuse: inp.refused(),
                what: describe(&inp),
                also_ok: None,
            }
            .run(&a)?;
            Ok(())
        },
    );
}

#[test]
fn classes() {
    let strat = with_rows(|rows, tame| {
        (
            input_with(rows, tame),
            labels_s(rows, tame),
            global_s(),
            k_s(),
            // A classifier: C rows (C drawn, near the label classes) and the input's width (or not).
            prop::option::of((
                prop_oneof![4 => Just(None), 1 => (1usize..=6).prop_map(Some)],
                prop::bool::weighted(0.8),
                float_dtype_s(),
                any::<u64>(),
                prop::option::of(prop_oneof![4 => Just(None), 1 => (0usize..=7).prop_map(Some)]),
            )),
        )
    });
    check_group(
        "classes",
        200,
        strat,
        |dir, (inp, labels, g, k, classifier)| {
            let (f, key) = write_input(dir, "x", &inp, "--key");
            let l = write_labels(dir, &labels);
            let mut a = vec![s("classes"), p(&f), s("--labels"), p(&l)];
            if matches!(labels.kind, LabelKind::NpzI4) && labels.seed % 2 == 0 {
                a.push("--labels-key".into());
                a.push("y".into());
            }
            a.extend(key);
            a.extend(g.args());
            opt(&mut a, "-k", &k);
            let mut inputs = vec![f, l];
            if let Some((c, same_width, dt, seed, bias)) = &classifier {
                // C rows: the number of classes, or a drawn number.
                let c = &c.unwrap_or_else(|| label_classes(&labels));
                let d = if *same_width {
                    inp.arr.mat.cols
                } else {
                    inp.arr.mat.cols + 1
                };
                let w = Array {
                    mat: gen_mat(*c, d, Profile::Normal, *seed),
                    dtype: *dt,
                    fortran: false,
                };
                let wp = write_arrays(&dir.join("w"), Container::Npy, &[("w", &w)]);
                a.push("--classifier".into());
                a.push(p(&wp));
                inputs.push(wp);
                if let Some(b) = bias {
                    let b = &b.unwrap_or(*c);
                    let bp = dir.join("b.npy");
                    let vals: Vec<f32> = (0..*b).map(|i| i as f32 * 0.25 - 0.5).collect();
                    std::fs::write(&bp, npy_bytes("<f4", false, &[*b], &f32_bytes(&vals))).unwrap();
                    a.push("--bias".into());
                    a.push(p(&bp));
                    inputs.push(bp);
                }
            }
            Check {
                group: "classes",
                dir,
                inputs,
                json: g.json,
                must_refuse: inp.refused(),
                also_ok: None,
                what: format!(
                    "{}; labels {labels:?}; classifier {classifier:?}",
                    describe(&inp)
                ),
            }
            .run(&a)?;
            Ok(())
        },
    );
}

const COMPARE_METRICS: [&str; 22] = [
    "cka_linear",
    "cka_linear_debiased",
    "cka_rbf",
    "cka_minibatch",
    "cca_mean_rho",
    "cca_r2",
    "svcca",
    "pwcca",
    "procrustes_angular",
    "procrustes_euclidean",
    "rsa_spearman",
    "mutual_knn",
    "knn_jaccard",
    "cknna",
    "relative_cos",
    "stitching_accuracy",
    "cka",
    "cca",
    "procrustes",
    "knn",
    "relative",
    "all",
];

#[derive(Clone, Debug)]
struct CompareOpts {
    metrics: Vec<&'static str>,
    comma: bool,
    k: Option<usize>,
    route: Option<&'static str>,
    rbf_threshold: Option<f64>,
    rbf_median: Option<&'static str>,
    batch: Option<usize>,
    anchors: Option<usize>,
    anchor_mode: Option<&'static str>,
    svcca: Option<f64>,
    gram_limit: Option<usize>,
    seed: Option<u64>,
}

fn compare_opts_s() -> BoxedStrategy<CompareOpts> {
    (
        (
            prop::sample::subsequence(COMPARE_METRICS.to_vec(), 0..=4),
            any::<bool>(),
            k_s(),
            prop::option::of(prop::sample::select(vec!["auto", "feature", "gram"])),
            prop::option::of(prop::sample::select(vec![0.0f64, 1e-3, 1.0, 1e6])),
            prop::option::of(prop::sample::select(vec!["pairs", "kornblith"])),
        ),
        (
            prop::option::of(prop::sample::select(vec![0usize, 1, 2, 3, 1000])),
            prop::option::of(prop::sample::select(vec![0usize, 1, 2, 5, 100])),
            prop::option::of(prop::sample::select(vec!["first", "random"])),
            prop::sample::select(vec![
                None,
                None,
                None,
                None,
                Some(0.5),
                Some(0.99),
                Some(0.0),
                Some(1.0),
            ]),
            prop::option::of(prop::sample::select(vec![0usize, 1, 5, 20000])),
            prop::option::of(0u64..3),
        ),
    )
        .prop_map(
            |(
                (metrics, comma, k, route, rbf_threshold, rbf_median),
                (batch, anchors, anchor_mode, svcca, gram_limit, seed),
            )| CompareOpts {
                metrics,
                comma,
                k,
                route,
                rbf_threshold,
                rbf_median,
                batch,
                anchors,
                anchor_mode,
                svcca,
                gram_limit,
                seed,
            },
        )
        .boxed()
}

#[test]
fn compare() {
    let strat = with_rows(|rows, tame| {
        (
            input_with(rows, tame),
            companion_rows(rows, tame).prop_flat_map(move |r| input_with(r, tame)),
            global_s(),
            compare_opts_s(),
            prop::option::of(labels_s(rows, tame)),
        )
    });
    check_group("compare", 250, strat, |dir, (ia, ib, g, o, labels)| {
        let (fa, ka) = write_input(dir, "a", &ia, "--key-a");
        let (fb, kb) = write_input(dir, "b", &ib, "--key-b");
        let mut a = vec![s("compare"), p(&fa), p(&fb)];
        a.extend(ka);
        a.extend(kb);
        a.extend(g.args());
        if o.comma && !o.metrics.is_empty() {
            a.push("-m".into());
            a.push(o.metrics.join(","));
        } else {
            for m in &o.metrics {
                a.push("-m".into());
                a.push(m.to_string());
            }
        }
        opt(&mut a, "-k", &o.k);
        opt(&mut a, "--cka-route", &o.route);
        opt(&mut a, "--rbf-threshold", &o.rbf_threshold);
        opt(&mut a, "--rbf-median", &o.rbf_median);
        opt(&mut a, "--batch-size", &o.batch);
        opt(&mut a, "--anchors", &o.anchors);
        opt(&mut a, "--anchor-mode", &o.anchor_mode);
        opt(&mut a, "--svcca-threshold", &o.svcca);
        opt(&mut a, "--gram-limit", &o.gram_limit);
        opt(&mut a, "--seed", &o.seed);
        let mut inputs = vec![fa, fb];
        if let Some(l) = &labels {
            let lp = write_labels(dir, l);
            a.push("--labels".into());
            a.push(p(&lp));
            inputs.push(lp);
        }
        Check {
            group: "compare",
            dir,
            inputs,
            json: g.json,
            must_refuse: ia.refused() || ib.refused(),
            also_ok: None,
            what: format!(
                "A {}; B {}; labels {labels:?}",
                describe(&ia),
                describe(&ib)
            ),
        }
        .run(&a)?;
        Ok(())
    });
}

#[test]
fn layers() {
    let strat = with_rows(|rows, tame| {
        // The layer study runs the intrinsic-dimension suite (k = 20): tame cases get enough rows.
        let rows = if tame { rows.max(30) } else { rows };
        (
            if tame {
                (2usize..=3).boxed()
            } else {
                prop_oneof![1 => Just(1usize), 6 => 2usize..=3].boxed()
            }
            .prop_flat_map(move |count| {
                let dt = move || if tame { float_dtype_s() } else { dtype_s() };
                prop::collection::vec(
                    companion_rows(rows, tame).prop_flat_map(move |r| {
                        array_with(mat_with(r, tame), dt()).prop_map(move |a| {
                            if tame {
                                keep_finite(a)
                            } else {
                                a
                            }
                        })
                    }),
                    count,
                )
            }),
            multi_container_s(),
            global_s(),
            k_s(),
            if tame {
                Just(None).boxed()
            } else {
                prop::sample::select(vec![
                    None,
                    None,
                    Some("layer0"),
                    Some("layer1,layer0"),
                    Some("layer0,layer0"),
                    Some("nope"),
                    Some("layer2,layer1"),
                ])
                .boxed()
            },
            prop::option::of(0u64..3),
        )
    });
    check_group(
        "layers",
        200,
        strat,
        |dir, (arrays, container, g, k, keys, seed)| {
            let names: Vec<String> = (0..arrays.len()).map(|i| format!("layer{i}")).collect();
            let named: Vec<(&str, &Array)> = names
                .iter()
                .map(String::as_str)
                .zip(arrays.iter())
                .collect();
            let f = write_arrays(&dir.join("layers"), container, &named);
            let mut a = vec![s("layers"), p(&f)];
            a.extend(g.args());
            opt(&mut a, "-k", &k);
            opt(&mut a, "--keys", &keys);
            opt(&mut a, "--seed", &seed);
            // An int/bool layer named in --keys must be refused (without --keys, unusable arrays are
            // skipped with a note).
            let used: Vec<usize> = match keys {
                None => vec![],
                Some(ks) => ks
                    .split(',')
                    .filter_map(|k| k.strip_prefix("layer")?.parse().ok())
                    .filter(|&i: &usize| i < arrays.len())
                    .collect(),
            };
            let must_refuse = used.iter().any(|&i| arrays[i].dtype.refused());
            let what = arrays
                .iter()
                .map(|x| {
                    format!(
                        "{}x{} {:?} {:?}",
                        x.mat.rows, x.mat.cols, x.mat.profile, x.dtype
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            Check {
                group: "layers",
                dir,
                inputs: vec![f],
                json: g.json,
                must_refuse,
                also_ok: None,
                what: format!("{container:?}: {what}"),
            }
            .run(&a)?;
            Ok(())
        },
    );
}

#[derive(Clone, Debug)]
struct StudyOpts {
    k: Option<usize>,
    metric: Option<&'static str>,
    m: usize,
    efc: usize,
    efs: Option<usize>,
    sweep: &'static str,
    repeats: usize,
    no_orders: bool,
    dims: Option<&'static str>,
    bits: Option<&'static str>,
    no_compression: bool,
    target: Option<f64>,
    lid_k: Option<usize>,
    fraction: Option<f64>,
    seed: Option<u64>,
}

/// Study options: valid ones (60 %) or drawn from everything.
fn study_opts_s() -> BoxedStrategy<StudyOpts> {
    prop_oneof![3 => valid_study_opts_s(), 2 => wild_study_opts_s()].boxed()
}

fn valid_study_opts_s() -> BoxedStrategy<StudyOpts> {
    (
        (
            (1usize..=5).prop_map(Some),
            metric_s(),
            2usize..=4,
            prop::sample::select(vec![4usize, 16]),
            prop::option::of(Just(8usize)),
            prop::sample::select(vec!["1,4", "8,16", "2"]),
            Just(1usize),
            any::<bool>(),
        ),
        (
            prop::option::of(Just("1")),
            prop::option::of(prop::sample::select(vec!["8", "4", "8,4"])),
            any::<bool>(),
            prop::option::of(Just(0.5f64)),
            prop::option::of(prop::sample::select(vec![1usize, 3])),
            prop::option::of(prop::sample::select(vec![0.1f64, 0.5])),
            prop::option::of(0u64..3),
        ),
    )
        .prop_map(
            |(
                (k, metric, m, efc, efs, sweep, repeats, no_orders),
                (dims, bits, no_compression, target, lid_k, fraction, seed),
            )| StudyOpts {
                k,
                metric,
                m,
                efc,
                efs,
                sweep,
                repeats,
                no_orders,
                dims,
                bits,
                no_compression,
                target,
                lid_k,
                fraction,
                seed,
            },
        )
        .boxed()
}

fn wild_study_opts_s() -> BoxedStrategy<StudyOpts> {
    (
        (
            k_s(),
            metric_s(),
            prop::sample::select(vec![2usize, 3, 4]),
            prop::sample::select(vec![1usize, 4, 16]),
            prop::option::of(prop::sample::select(vec![0usize, 1, 8])),
            prop::sample::select(vec!["1,4", "2", "8,16", "1,4", "2", "0", "3,3"]),
            1usize..=2,
            prop::bool::weighted(0.3),
        ),
        (
            prop::sample::select(vec![
                None,
                None,
                None,
                Some("1"),
                Some("1,2"),
                Some("0"),
                Some("100"),
                Some("2,1"),
            ]),
            prop::sample::select(vec![
                None,
                None,
                None,
                Some("8"),
                Some("1,2,4,8"),
                Some("0"),
                Some("16"),
                Some("4"),
            ]),
            prop::bool::weighted(0.3),
            prop::sample::select(vec![
                None,
                None,
                None,
                None,
                Some(0.5),
                Some(1.0),
                Some(0.0),
                Some(1.5),
            ]),
            prop::option::of(prop::sample::select(vec![0usize, 1, 3, 50])),
            prop::sample::select(vec![
                None,
                None,
                None,
                None,
                Some(0.1),
                Some(0.5),
                Some(0.99),
                Some(0.0),
                Some(1.0),
            ]),
            prop::option::of(0u64..3),
        ),
    )
        .prop_map(
            |(
                (k, metric, m, efc, efs, sweep, repeats, no_orders),
                (dims, bits, no_compression, target, lid_k, fraction, seed),
            )| StudyOpts {
                k,
                metric,
                m,
                efc,
                efs,
                sweep,
                repeats,
                no_orders,
                dims,
                bits,
                no_compression,
                target,
                lid_k,
                fraction,
                seed,
            },
        )
        .boxed()
}

#[test]
fn search_study() {
    let strat = with_rows(|rows, tame| {
        (
            input_with(rows, tame),
            global_s(),
            study_opts_s(),
            // Separate queries (same width mostly) and labels, sometimes.
            prop::option::of((
                rows_s(tame),
                prop::bool::weighted(0.8),
                float_dtype_s(),
                prop::sample::select(PROFILES.to_vec()),
                any::<u64>(),
            )),
            prop::option::of(labels_s(rows, tame)),
        )
    });
    check_group(
        "search_study",
        200,
        strat,
        |dir, (inp, g, o, queries, labels)| {
            let (f, key) = write_input(dir, "x", &inp, "--key");
            let mut a = vec![s("search-study"), p(&f)];
            a.extend(key);
            a.extend(g.args());
            opt(&mut a, "-k", &o.k);
            opt(&mut a, "--metric", &o.metric);
            a.extend([s("--m"), s(o.m), s("--ef-construction"), s(o.efc)]);
            opt(&mut a, "--ef-search", &o.efs);
            a.extend([s("--ef-sweep"), s(o.sweep)]);
            a.extend([s("--order-repeats"), s(o.repeats)]);
            if o.no_orders {
                a.push("--no-orders".into());
            }
            opt(&mut a, "--dims", &o.dims);
            opt(&mut a, "--bits", &o.bits);
            if o.no_compression {
                a.push("--no-compression".into());
            }
            opt(&mut a, "--target-recall", &o.target);
            opt(&mut a, "--lid-k", &o.lid_k);
            opt(&mut a, "--seed", &o.seed);
            let mut inputs = vec![f];
            if let Some((qrows, same_width, dt, prof, seed)) = &queries {
                let d = if *same_width {
                    inp.arr.mat.cols
                } else {
                    inp.arr.mat.cols + 1
                };
                let q = Array {
                    mat: gen_mat(*qrows, d, *prof, *seed),
                    dtype: *dt,
                    fortran: false,
                };
                let qp = write_arrays(&dir.join("q"), Container::Npy, &[("q", &q)]);
                a.push("--queries".into());
                a.push(p(&qp));
                inputs.push(qp);
            } else {
                opt(&mut a, "--query-fraction", &o.fraction);
            }
            if let Some(l) = &labels {
                let lp = write_labels(dir, l);
                a.push("--labels".into());
                a.push(p(&lp));
                inputs.push(lp);
            }
            Check {
                group: "search_study",
                dir,
                inputs,
                json: g.json,
                must_refuse: inp.refused(),
                also_ok: None,
                what: format!(
                    "{}; queries {queries:?}; labels {labels:?}; {o:?}",
                    describe(&inp)
                ),
            }
            .run(&a)?;
            Ok(())
        },
    );
}

#[derive(Clone, Debug)]
enum Damage {
    None,
    Flip(usize, u8),
    Truncate(usize),
    Append(u8),
}

#[test]
fn index() {
    let build_opts = (
        prop::option::of(prop::sample::select(vec![2usize, 3, 16])),
        prop::option::of(prop::sample::select(vec![1usize, 8, 200])),
        metric_s(),
        prop::option::of(prop::sample::select(vec![
            "input",
            "random",
            "lid_ascending",
            "lid_descending",
        ])),
        prop::option::of(0u64..3),
    );
    let query_opts = (
        k_s(),
        prop::option::of(prop::sample::select(vec!["1", "8", "1,4,64", "0", "2,2"])),
        prop::option::of(1usize..=2),
        any::<bool>(),
        any::<bool>(),
    );
    let damage = prop_oneof![
        6 => Just(Damage::None),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
        1 => any::<usize>().prop_map(Damage::Truncate),
        1 => any::<u8>().prop_map(Damage::Append),
    ];
    let strat = with_rows(move |rows, tame| {
        (
            input_with(rows, tame),
            global_s(),
            build_opts.clone(),
            // Queries: the input's width mostly.
            (
                rows_s(tame),
                prop::bool::weighted(0.85),
                dtype_s(),
                container_s(),
                prop::sample::select(PROFILES.to_vec()),
                any::<u64>(),
            ),
            query_opts.clone(),
            damage.clone(),
        )
    });
    check_group(
        "index",
        200,
        strat,
        |dir, (inp, g, (m, efc, metric, order, seed), qspec, (k, efs, repeats, recall, out), damage)| {
            let (f, key) = write_input(dir, "x", &inp, "--key");
            let idx = dir.join("x.index");
            let mut a = vec![s("index"), s("build"), p(&f), s("-o"), p(&idx)];
            a.extend(key);
            a.extend(g.args());
            opt(&mut a, "--m", &m);
            opt(&mut a, "--ef-construction", &efc);
            opt(&mut a, "--metric", &metric);
            opt(&mut a, "--order", &order);
            opt(&mut a, "--seed", &seed);
            let what = describe(&inp);
            let built = Check {
                group: "index",
                dir,
                inputs: vec![f.clone()],
                json: g.json,
                must_refuse: inp.refused(),
                also_ok: None,
                what: format!("build: {what}"),
            }
            .run(&a)?;
            if built.code != 0 {
                return Ok(());
            }
            let (qrows, same_width, qdt, qcont, qprof, qseed) = qspec;
            let q = Input {
                arr: Array {
                    mat: gen_mat(
                        qrows,
                        if same_width {
                            inp.arr.mat.cols
                        } else {
                            inp.arr.mat.cols + 1
                        },
                        qprof,
                        qseed,
                    ),
                    dtype: qdt,
                    fortran: false,
                },
                container: qcont,
                key: KeyMode::None,
            };
            let (qf, _) = write_input(dir, "q", &q, "--queries-key");
            // Damage the index file before the query, sometimes.
            let mut damaged = false;
            if built.code == 0 {
                if let Ok(mut bytes) = std::fs::read(&idx) {
                    match damage {
                        Damage::None => {}
                        Damage::Flip(i, x) => {
                            let i = i % bytes.len();
                            bytes[i] ^= x;
                            damaged = true;
                        }
                        Damage::Truncate(i) => {
                            bytes.truncate(i % bytes.len());
                            damaged = true;
                        }
                        Damage::Append(x) => {
                            bytes.push(x);
                            damaged = true;
                        }
                    }
                    std::fs::write(&idx, &bytes).unwrap();
                }
            }
            let mut a = vec![s("index"), s("query"), p(&idx), s("--queries"), p(&qf)];
            a.extend(g.args());
            opt(&mut a, "-k", &k);
            opt(&mut a, "--ef-search", &efs);
            opt(&mut a, "--repeats", &repeats);
            if recall {
                a.push("--recall".into());
            }
            if out {
                a.push("-o".into());
                a.push(p(&dir.join("found.npz")));
            }
            let r = Check {
                group: "index",
                dir,
                inputs: vec![f, idx.clone(), qf],
                json: g.json,
                must_refuse: q.refused(),
                also_ok: None,
                what: format!("query: index of {what}; queries {}; damage {damage:?}", describe(&q)),
            }
            .run(&a)?;
            // A damaged index file (the checksum covers every byte) is refused.
            if damaged {
                prop_assert_eq!(
                    r.code,
                    2,
                    "a damaged index file was accepted ({:?}): {}",
                    damage,
                    r.stderr
                );
            }
            Ok(())
        },
    );
}

#[test]
fn report() {
    let strat = with_rows(|rows, tame| {
        (
            prop::collection::vec(input_with(rows, tame), 1..=2),
            global_s(),
            prop::option::of(labels_s(rows, tame)),
            prop::option::of(prop::sample::select(vec![0usize, 1, 3, 100])),
            prop::option::of(0u64..3),
            // 0: a new folder, 1: an existing empty one, 2: one with a file and --force, 3: one with a file.
            0u8..4,
        )
    });
    check_group(
        "report",
        150,
        strat,
        |dir, (inputs, g, labels, sample, seed, out_mode)| {
            let mut a = vec![s("report")];
            let mut files = Vec::new();
            let mut must_refuse = false;
            for (i, inp) in inputs.iter().enumerate() {
                let (f, _) = write_input(dir, &format!("in{i}"), inp, "--key");
                a.push(p(&f));
                files.push(f);
                must_refuse |= inp.refused();
            }
            let out = dir.join("out");
            match out_mode {
                0 => {}
                1 => std::fs::create_dir_all(&out).unwrap(),
                _ => {
                    std::fs::create_dir_all(&out).unwrap();
                    std::fs::write(out.join("other.txt"), "keep me").unwrap();
                }
            }
            a.extend([s("-o"), p(&out)]);
            if out_mode == 2 {
                a.push("--force".into());
            }
            a.extend(g.args());
            opt(&mut a, "--sample", &sample);
            opt(&mut a, "--seed", &seed);
            if let Some(l) = &labels {
                let lp = write_labels(dir, l);
                a.push("--labels".into());
                a.push(p(&lp));
                files.push(lp);
            }
            if out_mode >= 2 {
                files.push(out.join("other.txt"));
            }
            let what = inputs.iter().map(describe).collect::<Vec<_>>().join(" + ");
            let partial = partial_report(&out, g.json);
            Check {
                group: "report",
                dir,
                inputs: files,
                json: g.json,
                must_refuse,
                also_ok: Some((3, &partial)),
                what: format!("{what}; labels {labels:?}; out mode {out_mode}"),
            }
            .run(&a)?;
            Ok(())
        },
    );
}

const MANIFOLDS: [&str; 24] = [
    "M10a_Cubic",
    "M10b_Cubic",
    "M10c_Cubic",
    "M10d_Cubic",
    "M11_Moebius",
    "M12_Norm",
    "M13a_Scurve",
    "M13b_Spiral",
    "M1_Sphere",
    "M2_Affine_3to5",
    "M3_Nonlinear_4to6",
    "M4_Nonlinear",
    "M5a_Helix1d",
    "M5b_Helix2d",
    "M6_Nonlinear",
    "M7_Roll",
    "M8_Nonlinear",
    "M9_Affine",
    "Mbeta",
    "Mn1_Nonlinear",
    "Mn2_Nonlinear",
    "Mp1_Paraboloid",
    "Mp2_Paraboloid",
    "Mp3_Paraboloid",
];

fn names_s() -> BoxedStrategy<Vec<&'static str>> {
    let mut all = MANIFOLDS.to_vec();
    all.push("bogus");
    prop_oneof![
        1 => Just(vec![]),
        6 => prop::sample::subsequence(all, 1..=3),
    ]
    .boxed()
}

#[test]
fn datasets() {
    // Every manifold once with a tiny n, then drawn ones.
    let d = case_dir("datasets_each");
    for (i, name) in MANIFOLDS.iter().enumerate() {
        let n = [3usize, 4, 5, 9][i % 4];
        let out = d.join(format!("each{i}"));
        let a = vec![
            s("datasets"),
            s("manifolds"),
            s("-o"),
            p(&out),
            s("-n"),
            s(n),
            s("--name"),
            s(name),
            s("--json"),
            s("--threads"),
            s(1),
        ];
        let r = Check {
            group: "datasets_each",
            dir: &d,
            inputs: vec![],
            json: true,
            must_refuse: false,
            also_ok: None,
            what: format!("{name} n = {n}"),
        }
        .run(&a);
        if let Err(e) = r {
            panic!("datasets {name}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
    let strat = (
        global_s(),
        prop::sample::select(vec![0usize, 2, 3, 3, 4, 7, 40]),
        names_s(),
        prop::option::of(0u64..5),
        0u8..3,
    );
    check_group(
        "datasets",
        80,
        strat,
        |dir, (g, n, names, seed, out_mode)| {
            let out = dir.join("sets");
            if out_mode > 0 {
                std::fs::create_dir_all(&out).unwrap();
            }
            if out_mode > 1 {
                std::fs::write(out.join("other.txt"), "keep me").unwrap();
            }
            let mut a = vec![
                s("datasets"),
                s("manifolds"),
                s("-o"),
                p(&out),
                s("-n"),
                s(n),
            ];
            a.extend(g.args());
            for nm in &names {
                a.push("--name".into());
                a.push(nm.to_string());
            }
            opt(&mut a, "--seed", &seed);
            let inputs = if out_mode > 1 {
                vec![out.join("other.txt")]
            } else {
                vec![]
            };
            Check {
                group: "datasets",
                dir,
                inputs,
                json: g.json,
                must_refuse: false,
                also_ok: None,
                what: format!("n {n} names {names:?} out mode {out_mode}"),
            }
            .run(&a)?;
            Ok(())
        },
    );
}

/// `sae train` on hostile rows with drawn settings (widths and k of 0, 1 and beyond d; batches of 1; a
/// bad architecture; bad learning rates), then, when it trained, `sae eval` and `sae encode` of the same rows
/// with the folder it wrote.
#[test]
fn sae() {
    let strat = (
        input_s(),
        global_s(),
        prop::sample::select(vec![0usize, 1, 4, 16]),
        prop::option::of(prop::sample::select(vec![0usize, 1, 2, 8, 100])),
        prop::sample::select(vec!["topk", "topk", "batchtopk", "jumprelu"]),
        prop::option::of(prop::sample::select(vec![0usize, 1, 7, 64])),
        prop::option::of(prop::sample::select(vec![0usize, 1, 50])),
        prop::option::of(prop::sample::select(vec![0.0f64, -1.0, 1e-3, 1e30])),
        prop::option::of(prop::sample::select(vec!["median", "mean", "zero", "nope"])),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            "unit", "rescaled", "rescaled", "free",
        ])),
    );
    check_group(
        "sae",
        80,
        strat,
        |dir, (inp, g, width, k, arch, batch, tokens, lr, init, no_norm, decoder)| {
            let (f, key) = write_input(dir, "x", &inp, "--key");
            let out = dir.join("sae");
            let mut a = vec![s("sae"), s("train"), p(&f), s("-o"), p(&out)];
            a.extend(key.clone());
            a.extend(g.args());
            a.extend([s("--width"), s(width), s("--arch"), s(arch)]);
            opt(&mut a, "-k", &k);
            opt(&mut a, "--batch", &batch);
            opt(&mut a, "--tokens", &tokens);
            opt(&mut a, "--lr", &lr);
            opt(&mut a, "--b-dec-init", &init);
            opt(&mut a, "--decoder", &decoder);
            if no_norm {
                a.push("--no-normalize".into());
            }
            let check = |inputs: Vec<PathBuf>| Check {
                group: "sae",
                dir,
                inputs,
                json: g.json,
                must_refuse: inp.refused(),
                what: describe(&inp),
                also_ok: None,
            };
            let r = check(vec![f.clone()]).run(&a)?;
            if r.code == 0 {
                let mut e = vec![s("sae"), s("eval"), p(&out), p(&f)];
                e.extend(key.clone());
                e.extend(g.args());
                check(vec![f.clone()]).run(&e)?;
                let codes = dir.join("codes.npz");
                let mut c = vec![s("sae"), s("encode"), p(&out), p(&f), s("-o"), p(&codes)];
                c.extend(key);
                c.extend(g.args());
                check(vec![f.clone()]).run(&c)?;
            }
            Ok(())
        },
    );
}

#[test]
fn demo() {
    let strat = (
        global_s(),
        prop::sample::select(vec![0usize, 99, 100, 100, 101, 130]),
        prop_oneof![
            1 => Just(vec![]),
            8 => prop::sample::subsequence(MANIFOLDS.to_vec(), 1..=2),
            1 => Just(vec!["bogus"]),
        ],
        prop::option::of(0u64..5),
        0u8..4,
    );
    check_group("demo", 60, strat, |dir, (g, n, names, seed, out_mode)| {
        let out = dir.join("demo");
        if out_mode > 0 {
            std::fs::create_dir_all(&out).unwrap();
        }
        if out_mode > 1 {
            std::fs::write(out.join("other.txt"), "keep me").unwrap();
        }
        let mut a = vec![s("demo"), s("-n"), s(n), s("-o"), p(&out)];
        if out_mode == 2 {
            a.push("--force".into());
        }
        a.extend(g.args());
        for nm in &names {
            a.push("--name".into());
            a.push(nm.to_string());
        }
        opt(&mut a, "--seed", &seed);
        let inputs = if out_mode > 1 {
            vec![out.join("other.txt")]
        } else {
            vec![]
        };
        Check {
            group: "demo",
            dir,
            inputs,
            json: g.json,
            must_refuse: false,
            also_ok: None,
            what: format!("n {n} names {names:?} out mode {out_mode}"),
        }
        .run(&a)?;
        Ok(())
    });
}
