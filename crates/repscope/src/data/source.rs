//! Row sources: one logical matrix from one array or from many shards, read in chunks by positioned reads,
//! so that a pass over a source larger than memory holds only the chunks it reads. Files are never memory
//! mapped here: a shard truncated while it is read gives an error that names it, not a SIGBUS.
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::data::{npy, Matrix};
use crate::error::{Error, Param, Result};
use crate::progress::Progress;

/// A source of rows, read by range. Every value read is checked finite; the row named in an error is the
/// row of the file the error names (a shard's own row, for a sharded source).
pub trait RowSource: Sync + Send {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// The name used in messages (a file name, or the shards' folder).
    fn name(&self) -> &str;
    /// The element type as stored.
    fn elem(&self) -> Elem;
    /// Rows start..start + count as f32, row-major, into `out` (count × cols values).
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()>;
    /// Rows start..start + count as f64, row-major; f64 sources keep every digit.
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        let d = self.cols();
        let mut tmp = vec![0.0f32; count * d];
        self.read(start, count, &mut tmp)?;
        out[..count * d]
            .iter_mut()
            .zip(&tmp)
            .for_each(|(o, &v)| *o = v as f64);
        Ok(())
    }
    /// The shards behind this source (1 for a single array).
    fn shards(&self) -> usize {
        1
    }
    /// Rows start..start + count as stored: count × cols little-endian values of [`RowSource::elem`], into
    /// `out` (exactly that many bytes), unchecked. Returns false, `out` unspecified, where the source has no stored
    /// form to hand (it converts as it reads); the caller then reads f64. A pass that widens the bytes on
    /// its compute threads moves half the bytes (f32) between cores that f64 rows would; it checks what it
    /// widens, and reads rows with `read_f64` again for the error when a value is not finite
    /// ([`not_finite`]).
    fn read_stored(&self, _start: usize, _count: usize, _out: &mut [u8]) -> Result<bool> {
        Ok(false)
    }
}

/// The stored element type of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F16,
    BF16,
    F32,
    F64,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F16 | Elem::BF16 => 2,
            Elem::F32 => 4,
            Elem::F64 => 8,
        }
    }
    /// numpy's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Elem::F16 => "float16",
            Elem::BF16 => "bfloat16",
            Elem::F32 => "float32",
            Elem::F64 => "float64",
        }
    }
    /// Decodes little-endian values (generic over the conversions, so that each loop is compiled, and
    /// vectorised, for its own element and target types).
    #[inline(always)]
    fn decode<T: Copy>(
        self,
        bytes: &[u8],
        out: &mut [T],
        f32_to: impl Fn(f32) -> T,
        f64_to: impl Fn(f64) -> T,
    ) {
        match self {
            Elem::F16 => each::<2, T>(bytes, out, |b| f32_to(half::f16::from_le_bytes(b).to_f32())),
            Elem::BF16 => each::<2, T>(bytes, out, |b| {
                f32_to(half::bf16::from_le_bytes(b).to_f32())
            }),
            Elem::F32 => each::<4, T>(bytes, out, |b| f32_to(f32::from_le_bytes(b))),
            Elem::F64 => each::<8, T>(bytes, out, |b| f64_to(f64::from_le_bytes(b))),
        }
    }
}

/// `out[i] = f(bytes of value i)` for values of `N` bytes.
#[inline(always)]
fn each<const N: usize, T>(bytes: &[u8], out: &mut [T], f: impl Fn([u8; N]) -> T) {
    out.iter_mut()
        .zip(bytes.chunks_exact(N))
        .for_each(|(o, c)| *o = f(c.try_into().expect("chunks of N bytes")));
}

/// Little-endian values widened to f64, compiled for AVX2 where the CPU has it (conversions are exact, so
/// the result does not depend on the path).
fn widen(elem: Elem, bytes: &[u8], out: &mut [f64]) {
    #[inline(always)]
    fn body(elem: Elem, bytes: &[u8], out: &mut [f64]) {
        elem.decode(bytes, out, |v| v as f64, |v| v)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn avx2(elem: Elem, bytes: &[u8], out: &mut [f64]) {
        body(elem, bytes, out)
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(elem, bytes, out) };
    }
    body(elem, bytes, out)
}

/// Stored values widened to f64 ([`RowSource::read_stored`]'s bytes, or a block of them); returns whether
/// every value is finite.
pub fn widen_finite(elem: Elem, bytes: &[u8], out: &mut [f64]) -> bool {
    widen(elem, bytes, out);
    out.chunks(4096)
        .all(|c| c.iter().fold(true, |ok, &x| ok & x.is_finite()))
}

/// The error for rows start..start + count of `src`, some value of which [`widen_finite`] found not finite:
/// the source's own, naming the shard, row and column (the rows are read again as f64 into `scratch`).
pub fn not_finite(src: &dyn RowSource, start: usize, count: usize, scratch: &mut [f64]) -> Error {
    match src.read_f64(start, count, scratch) {
        Err(e) => e,
        // The file changed between the two reads; name the rows as the first read found them.
        Ok(()) => Error::data(
            src.name(),
            format!(
                "rows {start}..{} hold a value that is not finite",
                start + count
            ),
            "remove or replace NaN and infinite values",
        ),
    }
}

/// Checks that `v` (rows start.. of `name`, width `d`) is finite; the error names the first row and column
/// that is not. A fold without early exit is vectorised; the position is looked for only when something is
/// wrong.
fn check_finite<T: Copy + Into<f64>>(
    name: &str,
    start: usize,
    d: usize,
    v: &[T],
    finite: impl Fn(T) -> bool,
) -> Result<()> {
    if v.chunks(4096)
        .all(|c| c.iter().fold(true, |ok, &x| ok & finite(x)))
    {
        return Ok(());
    }
    match v.iter().position(|&x| !finite(x)) {
        Some(p) => Err(Error::NonFinite {
            input: name.to_string(),
            row: start + p / d,
            col: p % d,
            value: v[p].into(),
        }),
        None => Ok(()),
    }
}

fn check_finite_f32(name: &str, start: usize, d: usize, v: &[f32]) -> Result<()> {
    check_finite(name, start, d, v, f32::is_finite)
}

/// Checks rows start.. of `name` are finite; the error names the first row and column that is not.
pub(crate) fn check_finite_rows(name: &str, start: usize, d: usize, v: &[f64]) -> Result<()> {
    check_finite(name, start, d, v, f64::is_finite)
}

impl RowSource for Matrix {
    fn rows(&self) -> usize {
        Matrix::rows(self)
    }
    fn cols(&self) -> usize {
        Matrix::cols(self)
    }
    fn name(&self) -> &str {
        Matrix::name(self)
    }
    fn elem(&self) -> Elem {
        if self.values_f64().is_some() {
            Elem::F64
        } else {
            Elem::F32
        }
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let d = Matrix::cols(self);
        for (i, o) in out[..count * d].chunks_exact_mut(d).enumerate() {
            o.copy_from_slice(self.row(start + i));
        }
        check_finite_f32(Matrix::name(self), start, d, &out[..count * d])
    }
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        let d = Matrix::cols(self);
        for (i, o) in out[..count * d].chunks_exact_mut(d).enumerate() {
            self.row_f64_into(start + i, o);
        }
        check_finite_rows(Matrix::name(self), start, d, &out[..count * d])
    }
    fn read_stored(&self, start: usize, count: usize, out: &mut [u8]) -> Result<bool> {
        let d = Matrix::cols(self);
        let (a, b) = (start * d, (start + count) * d);
        match self.values_f64() {
            Some(v) => out
                .chunks_exact_mut(8)
                .zip(&v[a..b])
                .for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
            None => out
                .chunks_exact_mut(4)
                .zip(&self.as_slice()[a..b])
                .for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
        }
        Ok(true)
    }
}

/// The element type and shape of an `.npy` header whose data can be read row by row in place (2-D, C order,
/// little-endian float16, float32 or float64, not empty); None for anything the whole-file loader converts.
fn streamable(h: &npy::Header) -> Option<(Elem, usize, usize)> {
    let elem = match (h.kind, h.size) {
        (npy::Kind::Float, 2) => Elem::F16,
        (npy::Kind::Float, 4) => Elem::F32,
        (npy::Kind::Float, 8) => Elem::F64,
        _ => return None,
    };
    if h.big_endian || h.fortran_order || h.shape.len() != 2 || h.shape.contains(&0) {
        return None;
    }
    Some((elem, h.shape[0], h.shape[1]))
}

/// A 2-D row-major array stored contiguously at an offset of a file (a `.npy` file's data, a safetensors
/// tensor), read by positioned reads.
pub struct FileRows {
    file: File,
    path: PathBuf,
    name: String,
    rows: usize,
    cols: usize,
    offset: u64,
    elem: Elem,
}

impl FileRows {
    fn new(
        path: &Path,
        file: File,
        name: String,
        (rows, cols): (usize, usize),
        offset: u64,
        elem: Elem,
    ) -> Result<FileRows> {
        let need = offset + (rows as u64) * (cols as u64) * elem.size() as u64;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < need {
            return Err(Error::format(
                path,
                format!("the header promises {rows} × {cols} values ({need} bytes) but the file has {len} bytes"),
                "the file is truncated: write it again",
            ));
        }
        Ok(FileRows {
            file,
            path: path.to_path_buf(),
            name,
            rows,
            cols,
            offset,
            elem,
        })
    }

    /// `f` on the bytes of rows start..start + count, read into a buffer the calling thread keeps for its
    /// next read (a pass reads chunk after chunk of the same size, so the buffer is allocated once).
    fn with_bytes<R>(&self, start: usize, count: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let len = count * self.cols * self.elem.size();
        SCRATCH.with_borrow_mut(|buf| {
            buf.resize(len, 0);
            // A small buffer left after a large read is given back rather than kept.
            if buf.capacity() > 4 * len.max(1 << 20) {
                buf.shrink_to(len);
            }
            self.read_bytes_into(start, count, &mut buf[..len])?;
            Ok(f(&buf[..len]))
        })
    }

    /// The stored bytes of rows start..start + count into `buf` (exactly their length).
    fn read_bytes_into(&self, start: usize, count: usize, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let at = self.offset + (start * self.cols * self.elem.size()) as u64;
        self.file.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::format(
                    &self.path,
                    format!(
                        "the file ended while rows {start}..{} were read: it was truncated after it was opened",
                        start + count
                    ),
                    "write the file again, and do not change it while repscope reads it",
                )
            } else {
                Error::io(&self.path, e)
            }
        })
    }

    /// Opens `path` when it is a `.npy` file that can be streamed (2-D, C order, little-endian float16,
    /// float32 or float64); None otherwise (the caller loads it whole).
    pub fn open_npy(path: &Path) -> Result<Option<FileRows>> {
        use std::io::Read;
        crate::data::check_regular(path)?;
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = vec![0u8; 65536];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        head.truncate(got);
        let h = match npy::parse_header(&head, path) {
            Ok(h) => h,
            // A header this reader cannot take is left to the whole-file loader and its message.
            Err(_) => return Ok(None),
        };
        let Some((elem, rows, cols)) = streamable(&h) else {
            return Ok(None);
        };
        let name = path.display().to_string();
        FileRows::new(path, file, name, (rows, cols), h.data_offset as u64, elem).map(Some)
    }

    /// Opens one array of an `.npz` file (chosen by `key` when it has several) when it is stored without
    /// compression as a streamable `.npy` member; None otherwise (the caller loads it whole).
    pub fn open_npz(path: &Path, key: Option<&str>) -> Result<Option<FileRows>> {
        use std::os::unix::fs::FileExt;
        crate::data::check_regular(path)?;
        let crate::data::npz::Member {
            key,
            stored,
            start,
            size,
        } = crate::data::npz::member(path, key)?;
        if !stored {
            return Ok(None);
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = vec![0u8; size.min(65536) as usize];
        file.read_exact_at(&mut head, start)
            .map_err(|e| Error::io(path, e))?;
        let Ok(h) = npy::parse_header(&head, path) else {
            return Ok(None);
        };
        let Some((elem, rows, cols)) = streamable(&h) else {
            return Ok(None);
        };
        if (h.data_offset + rows * cols * elem.size()) as u64 > size {
            return Err(Error::data(
                format!("{}[{key}]", path.display()),
                "the array's data is truncated",
                "write the archive again",
            ));
        }
        let name = format!("{}[{key}]", path.display());
        FileRows::new(
            path,
            file,
            name,
            (rows, cols),
            start + h.data_offset as u64,
            elem,
        )
        .map(Some)
    }

    /// Opens one 2-D float tensor of a `.safetensors` file (chosen by `key` when the file has several) from
    /// its header alone; the data is read by positioned reads.
    pub fn open_safetensors(path: &Path, key: Option<&str>) -> Result<FileRows> {
        use std::io::Read;
        crate::data::check_regular(path)?;
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let bad = |problem: String| {
            Error::format(
                path,
                problem,
                "the file is truncated or corrupt: write it again with safetensors.save_file",
            )
        };
        let mut n8 = [0u8; 8];
        file.read_exact(&mut n8).map_err(|_| {
            bad("not a valid safetensors file (shorter than its 8-byte header length)".into())
        })?;
        let n = u64::from_le_bytes(n8);
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if n > 100_000_000 || n + 8 > len {
            return Err(bad(format!(
                "not a valid safetensors file (a header of {n} bytes in a file of {len})"
            )));
        }
        let mut head = vec![0u8; n as usize];
        file.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
        let meta: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&head)
            .map_err(|e| bad(format!("not a valid safetensors file (header: {e})")))?;
        let mut names: Vec<String> = meta
            .keys()
            .filter(|k| k.as_str() != "__metadata__")
            .cloned()
            .collect();
        names.sort();
        let key = crate::data::npz::choose_key(path, &names, key)?;
        let info = &meta[&key];
        let name = format!("{}[{key}]", path.display());
        let dtype = info.get("dtype").and_then(|v| v.as_str()).unwrap_or("");
        let shape: Option<Vec<usize>> = info
            .get("shape")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect());
        let offs: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(|v| v.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect());
        let (Some(shape), Some(offs)) = (shape, offs) else {
            return Err(bad(format!(
                "tensor '{key}' has no valid shape or data_offsets"
            )));
        };
        let elem = match dtype {
            "F16" => Elem::F16,
            "BF16" => Elem::BF16,
            "F32" => Elem::F32,
            "F64" => Elem::F64,
            other => {
                return Err(Error::data(
                    &name,
                    format!("dtype {other} is not a supported float type"),
                    "store the tensor as F32, F16, BF16 or F64",
                ))
            }
        };
        let (rows, cols) = crate::data::safetensors::matrix_shape(&name, &shape)?;
        let bytes = (rows * cols * elem.size()) as u64;
        if offs.len() != 2 || offs[1] < offs[0] || offs[1] - offs[0] != bytes {
            return Err(bad(format!(
                "tensor '{key}' of shape {shape:?} {dtype} has data_offsets {offs:?}, not {bytes} bytes"
            )));
        }
        FileRows::new(path, file, name, (rows, cols), 8 + n + offs[0], elem)
    }
}

impl RowSource for FileRows {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn elem(&self) -> Elem {
        self.elem
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let out = &mut out[..count * self.cols];
        if self.elem == Elem::F64 {
            // Range first: an f64 value beyond f32 is named, not turned into infinity.
            let mut wide = vec![0.0f64; out.len()];
            self.with_bytes(start, count, |b| {
                self.elem.decode(b, &mut wide, |v| v as f64, |v| v)
            })?;
            check_finite_rows(&self.name, start, self.cols, &wide)?;
            if let Some(p) = wide.iter().position(|v| v.abs() > f32::MAX as f64) {
                return Err(Error::NonFinite {
                    input: self.name.clone(),
                    row: start + p / self.cols,
                    col: p % self.cols,
                    value: wide[p],
                });
            }
            out.iter_mut().zip(&wide).for_each(|(o, &v)| *o = v as f32);
            return Ok(());
        }
        self.with_bytes(start, count, |b| {
            self.elem.decode(b, out, |v| v, |v| v as f32)
        })?;
        check_finite_f32(&self.name, start, self.cols, out)
    }
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        let out = &mut out[..count * self.cols];
        self.with_bytes(start, count, |b| widen(self.elem, b, out))?;
        check_finite_rows(&self.name, start, self.cols, out)
    }
    fn read_stored(&self, start: usize, count: usize, out: &mut [u8]) -> Result<bool> {
        self.read_bytes_into(start, count, out)?;
        Ok(true)
    }
}

/// Shards read as one matrix, in order. Every shard has the same width and element type.
pub struct Shards {
    parts: Vec<Box<dyn RowSource>>,
    /// The first row of each shard, and the total at the end.
    starts: Vec<usize>,
    name: String,
}

impl Shards {
    /// Joins `parts` (at least one) under `name`; a shard of another width or element type is refused with
    /// its name.
    pub fn new(parts: Vec<Box<dyn RowSource>>, name: String) -> Result<Shards> {
        let Some(first) = parts.first() else {
            return Err(Error::data(name, "no shards", "pass at least one shard"));
        };
        let (d, elem) = (first.cols(), first.elem());
        let mut starts = vec![0usize];
        for p in &parts {
            if p.cols() != d {
                return Err(Error::data(
                    p.name(),
                    format!(
                        "this shard has {} columns but {} has {d}",
                        p.cols(),
                        first.name()
                    ),
                    "every shard of one source must have the same width",
                ));
            }
            if p.elem() != elem {
                return Err(Error::data(
                    p.name(),
                    format!(
                        "this shard is {} but {} is {}",
                        p.elem().name(),
                        first.name(),
                        elem.name()
                    ),
                    "write every shard of one source with the same dtype",
                ));
            }
            starts.push(starts.last().unwrap() + p.rows());
        }
        Ok(Shards {
            parts,
            starts,
            name,
        })
    }

    /// Calls `f(shard, local start, count, offset in the request)` for each shard piece of a row range.
    fn pieces(
        &self,
        start: usize,
        count: usize,
        mut f: impl FnMut(&dyn RowSource, usize, usize, usize) -> Result<()>,
    ) -> Result<()> {
        let stop = start + count;
        let mut s = self.starts.partition_point(|&x| x <= start) - 1;
        let mut at = start;
        while at < stop {
            let (lo, hi) = (self.starts[s], self.starts[s + 1]);
            let take = hi.min(stop) - at;
            if take > 0 {
                f(&*self.parts[s], at - lo, take, at - start)?;
            }
            at += take;
            s += 1;
        }
        Ok(())
    }
}

impl RowSource for Shards {
    fn rows(&self) -> usize {
        *self.starts.last().unwrap()
    }
    fn cols(&self) -> usize {
        self.parts[0].cols()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn elem(&self) -> Elem {
        self.parts[0].elem()
    }
    fn shards(&self) -> usize {
        self.parts.len()
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let d = self.cols();
        self.pieces(start, count, |p, s, c, o| {
            p.read(s, c, &mut out[o * d..(o + c) * d])
        })
    }
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        let d = self.cols();
        self.pieces(start, count, |p, s, c, o| {
            p.read_f64(s, c, &mut out[o * d..(o + c) * d])
        })
    }
    fn read_stored(&self, start: usize, count: usize, out: &mut [u8]) -> Result<bool> {
        // Every shard has the same element type.
        let row = self.cols() * self.elem().size();
        let mut all = true;
        self.pieces(start, count, |p, s, c, o| {
            all = all && p.read_stored(s, c, &mut out[o * row..(o + c) * row])?;
            Ok(())
        })?;
        Ok(all)
    }
}

/// Some rows of a source, in increasing order: a range (`rows A:B`) or a seeded sample.
pub struct Selected {
    src: Box<dyn RowSource>,
    /// Sorted row indices, or None for the range start..start + len.
    idx: Option<Vec<usize>>,
    start: usize,
    len: usize,
    name: String,
}

impl Selected {
    /// Rows start..stop.
    pub fn range(src: Box<dyn RowSource>, start: usize, stop: usize) -> Result<Selected> {
        let n = src.rows();
        if start >= stop || stop > n {
            return Err(Error::range(
                Param::RowRange,
                format!("{start}:{stop}"),
                format!("a range A:B with 0 ≤ A < B ≤ {n}"),
                format!("{} has {n} rows", src.name()),
            ));
        }
        let name = format!("{} (rows {start}:{stop})", src.name());
        Ok(Selected {
            src,
            idx: None,
            start,
            len: stop - start,
            name,
        })
    }

    /// The rows `idx` (increasing, within the source), named as the source: the distinct rows of a shard,
    /// say.
    pub fn rows(src: Box<dyn RowSource>, idx: Vec<usize>) -> Result<Selected> {
        let n = src.rows();
        if !idx.windows(2).all(|w| w[0] < w[1]) || idx.last().is_some_and(|&r| r >= n) {
            return Err(Error::data(
                src.name(),
                format!("the rows to read are not increasing row numbers below {n}"),
                "pass increasing row numbers within the source",
            ));
        }
        let name = src.name().to_string();
        Ok(Selected {
            src,
            len: idx.len(),
            idx: Some(idx),
            start: 0,
            name,
        })
    }

    /// `count` distinct rows drawn uniformly with `seed` (a partial Fisher–Yates shuffle of the row indices
    /// under a seeded generator), read in increasing order.
    pub fn sample(src: Box<dyn RowSource>, count: usize, seed: u64) -> Result<Selected> {
        let n = src.rows();
        if count == 0 || count > n {
            return Err(Error::range(
                Param::Sample,
                count,
                format!("from 1 to {n} rows"),
                format!("{} has {n} rows", src.name()),
            ));
        }
        let idx = sample_indices(n, count, seed);
        let name = format!("{} (a sample of {count} rows, seed {seed})", src.name());
        Ok(Selected {
            src,
            idx: Some(idx),
            start: 0,
            len: count,
            name,
        })
    }

    fn runs(&self, start: usize, count: usize) -> Vec<(usize, usize, usize)> {
        // (source row, run length, offset in the request)
        match &self.idx {
            None => vec![(self.start + start, count, 0)],
            Some(idx) => {
                let mut out: Vec<(usize, usize, usize)> = Vec::new();
                for (o, &r) in idx[start..start + count].iter().enumerate() {
                    match out.last_mut() {
                        Some(l) if l.0 + l.1 == r => l.1 += 1,
                        _ => out.push((r, 1, o)),
                    }
                }
                out
            }
        }
    }
}

/// `count` distinct indices below n, sorted: the first `count` places of a seeded Fisher–Yates shuffle, held
/// sparsely (memory O(count) whatever n).
pub fn sample_indices(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut g = crate::rng::Rng::new(seed ^ 0x5A3F_1E5E);
    let mut moved: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let j = i + g.below((n - i) as u64) as usize;
        let vj = *moved.get(&j).unwrap_or(&j);
        let vi = *moved.get(&i).unwrap_or(&i);
        moved.insert(j, vi);
        out.push(vj);
    }
    out.sort_unstable();
    out
}

impl RowSource for Selected {
    fn rows(&self) -> usize {
        self.len
    }
    fn cols(&self) -> usize {
        self.src.cols()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn elem(&self) -> Elem {
        self.src.elem()
    }
    fn shards(&self) -> usize {
        self.src.shards()
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let d = self.cols();
        for (r, c, o) in self.runs(start, count) {
            self.src.read(r, c, &mut out[o * d..(o + c) * d])?;
        }
        Ok(())
    }
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        let d = self.cols();
        for (r, c, o) in self.runs(start, count) {
            self.src.read_f64(r, c, &mut out[o * d..(o + c) * d])?;
        }
        Ok(())
    }
    fn read_stored(&self, start: usize, count: usize, out: &mut [u8]) -> Result<bool> {
        let row = self.cols() * self.elem().size();
        for (r, c, o) in self.runs(start, count) {
            if !self
                .src
                .read_stored(r, c, &mut out[o * row..(o + c) * row])?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Rows start..stop of a borrowed source (a batch of rows, without copying them).
pub struct Window<'a> {
    src: &'a dyn RowSource,
    start: usize,
    len: usize,
}

impl<'a> Window<'a> {
    /// Rows start..stop of `src` (clamped to its rows).
    pub fn new(src: &'a dyn RowSource, start: usize, stop: usize) -> Window<'a> {
        let stop = stop.min(src.rows());
        Window {
            src,
            start: start.min(stop),
            len: stop - start.min(stop),
        }
    }
}

impl RowSource for Window<'_> {
    fn rows(&self) -> usize {
        self.len
    }
    fn cols(&self) -> usize {
        self.src.cols()
    }
    fn name(&self) -> &str {
        self.src.name()
    }
    fn elem(&self) -> Elem {
        self.src.elem()
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        self.src.read(self.start + start, count, out)
    }
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        self.src.read_f64(self.start + start, count, out)
    }
    fn read_stored(&self, start: usize, count: usize, out: &mut [u8]) -> Result<bool> {
        self.src.read_stored(self.start + start, count, out)
    }
}

/// Two sources of the same rows side by side, read as one matrix [A | B] of width d_a + d_b: the joint
/// pass of two representations (CKA, CCA, Procrustes). Values are read as f64 when either side is f64.
pub struct Joined<'a> {
    a: &'a dyn RowSource,
    b: &'a dyn RowSource,
    name: String,
}

impl<'a> Joined<'a> {
    /// Joins `a` and `b`; they must have the same number of rows.
    pub fn new(a: &'a dyn RowSource, b: &'a dyn RowSource) -> Result<Joined<'a>> {
        if a.rows() != b.rows() {
            return Err(Error::data(
                b.name(),
                format!("{} rows, but {} has {}", b.rows(), a.name(), a.rows()),
                "pass two representations of the same inputs, in the same order",
            ));
        }
        let name = format!("{} | {}", a.name(), b.name());
        Ok(Joined { a, b, name })
    }

    /// The width of the first side.
    pub fn split(&self) -> usize {
        self.a.cols()
    }

    /// Rows of both sides side by side: `read` fills a side's rows (`w` values a row: its columns, or its
    /// bytes), then each output row is [A row | B row]. False when a side's read says so.
    fn interleave<T: Copy + Default>(
        &self,
        count: usize,
        (wa, wb): (usize, usize),
        out: &mut [T],
        read: impl Fn(&dyn RowSource, &mut [T]) -> Result<bool>,
    ) -> Result<bool> {
        let mut ta = vec![T::default(); count * wa];
        let mut tb = vec![T::default(); count * wb];
        if !(read(self.a, &mut ta)? && read(self.b, &mut tb)?) {
            return Ok(false);
        }
        for ((o, ra), rb) in out[..count * (wa + wb)]
            .chunks_exact_mut(wa + wb)
            .zip(ta.chunks_exact(wa.max(1)))
            .zip(tb.chunks_exact(wb.max(1)))
        {
            o[..wa].copy_from_slice(ra);
            o[wa..].copy_from_slice(rb);
        }
        Ok(true)
    }

    /// The two widths in values.
    fn widths(&self) -> (usize, usize) {
        (self.a.cols(), self.b.cols())
    }
}

impl RowSource for Joined<'_> {
    fn rows(&self) -> usize {
        self.a.rows()
    }
    fn cols(&self) -> usize {
        self.a.cols() + self.b.cols()
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn elem(&self) -> Elem {
        if self.a.elem() == Elem::F64 || self.b.elem() == Elem::F64 {
            Elem::F64
        } else {
            Elem::F32
        }
    }
    fn shards(&self) -> usize {
        self.a.shards().max(self.b.shards())
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let w = self.widths();
        self.interleave(count, w, out, |s, o| s.read(start, count, o).map(|_| true))
            .map(|_| ())
    }
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        let w = self.widths();
        self.interleave(count, w, out, |s, o| {
            s.read_f64(start, count, o).map(|_| true)
        })
        .map(|_| ())
    }
    fn read_stored(&self, start: usize, count: usize, out: &mut [u8]) -> Result<bool> {
        // Stored bytes only where both sides store the type the join reads (f32 and f32, f64 and f64).
        let elem = self.elem();
        if self.a.elem() != elem || self.b.elem() != elem {
            return Ok(false);
        }
        let (da, db) = self.widths();
        let w = (da * elem.size(), db * elem.size());
        self.interleave(count, w, out, |s, o| s.read_stored(start, count, o))
    }
}

/// Whether a path names a pattern (`*`, `?` or `[`) rather than a file or folder.
fn is_pattern(p: &Path) -> bool {
    p.to_string_lossy().contains(['*', '?', '['])
}

/// The formats a folder of shards may hold.
fn is_shard_file(p: &Path) -> bool {
    p.is_file()
        && p.extension().is_some_and(|e| {
            let e = e.to_string_lossy().to_ascii_lowercase();
            matches!(
                e.as_str(),
                "npy" | "npz" | "safetensors" | "parquet" | "arrow" | "feather" | "ipc"
            )
        })
}

/// Orders names as people number shards: digit runs compare as numbers (shard_2 before shard_10).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(e)) if c.is_ascii_digit() && e.is_ascii_digit() => {
                let lx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let ly = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..lx], &y[..ly]);
                let tx = dx.iter().skip_while(|&&c| c == b'0').count();
                let ty = dy.iter().skip_while(|&&c| c == b'0').count();
                let o = tx.cmp(&ty).then_with(|| dx[lx - tx..].cmp(&dy[ly - ty..]));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
                x = &x[lx..];
                y = &y[ly..];
            }
            (Some(c), Some(e)) => {
                if c != e {
                    return c.cmp(e);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// The files a list of paths names, in order: a file as itself, a folder as its .npy, .npz and
/// .safetensors files, a pattern (`shards/*.npy`) as its matches; folders and patterns in natural order.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let mut found: Vec<PathBuf> = if is_pattern(p) && !p.exists() {
            let pat = p.to_string_lossy();
            let g = glob::glob(&pat).map_err(|e| {
                Error::format(
                    p,
                    format!("not a valid pattern ({e})"),
                    "quote a pattern such as 'shards/*.npy'",
                )
            })?;
            g.filter_map(|e| e.ok()).filter(|f| f.is_file()).collect()
        } else if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
            let mut v = Vec::new();
            for e in rd {
                let e = e.map_err(|e| Error::io(p, e))?;
                if is_shard_file(&e.path()) {
                    v.push(e.path());
                }
            }
            if v.is_empty() {
                return Err(Error::data(
                    p.display().to_string(),
                    "the folder holds no .npy, .npz or .safetensors file",
                    "pass a folder of shards, or the files themselves",
                ));
            }
            v
        } else {
            out.push(p.clone());
            continue;
        };
        if found.is_empty() {
            return Err(Error::data(
                p.display().to_string(),
                "the pattern matches no file",
                "check the pattern (quote it, so that the shell passes it as it is)",
            ));
        }
        found.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        out.extend(found);
    }
    Ok(out)
}

/// Opens one file as a source: `.npy`, `.safetensors` and uncompressed `.npz` members by positioned reads;
/// compressed `.npz` members and layouts that cannot be streamed (Fortran order, big-endian, integer
/// dtypes) are loaded whole, one shard at a time.
pub fn open_file(path: &Path, key: Option<&str>) -> Result<Box<dyn RowSource>> {
    crate::data::check_regular(path)?;
    match crate::data::format_of(path)? {
        crate::data::Format::Parquet | crate::data::Format::Arrow => {
            return Ok(Box::new(crate::data::columnar::open(path, key)?))
        }
        crate::data::Format::Npy if key.is_none() => {
            if let Some(s) = FileRows::open_npy(path)? {
                return Ok(Box::new(s));
            }
        }
        crate::data::Format::Safetensors => {
            return Ok(Box::new(FileRows::open_safetensors(path, key)?))
        }
        crate::data::Format::Npz => {
            if let Some(s) = FileRows::open_npz(path, key)? {
                return Ok(Box::new(s));
            }
        }
        _ => {}
    }
    Ok(Box::new(crate::data::load_matrix(path, key)?))
}

/// Opens files, folders and patterns as one source (a single file as itself, several as shards in order).
/// `key` picks the array of each `.npz` or `.safetensors` shard (`.npy` shards have one).
pub fn open(paths: &[PathBuf], key: Option<&str>) -> Result<Box<dyn RowSource>> {
    let files = expand_paths(paths)?;
    if files.len() == 1 && paths.len() == 1 && !paths[0].is_dir() && !is_pattern(&paths[0]) {
        return open_file(&files[0], key);
    }
    let mut parts = Vec::with_capacity(files.len());
    for f in &files {
        // The key names the array of the multi-array shards; a .npy shard has one.
        let npy = matches!(crate::data::format_of(f), Ok(crate::data::Format::Npy));
        parts.push(open_file(f, if npy { None } else { key })?);
    }
    let name = if paths.len() == 1 {
        format!("{} ({} shards)", paths[0].display(), parts.len())
    } else {
        format!("{} shards", parts.len())
    };
    Ok(Box::new(Shards::new(parts, name)?))
}

/// The rows `idx` (increasing) of a source in memory, read in runs of consecutive rows.
pub fn gather(src: &dyn RowSource, idx: &[usize]) -> Result<Matrix> {
    gather_parts(&[(src, idx)])
}

/// The rows `idx` (increasing) of each source in turn, in one matrix of their common width (f64 when every
/// source is f64), read in runs of consecutive rows.
pub fn gather_parts(parts: &[(&dyn RowSource, &[usize])]) -> Result<Matrix> {
    let (first, _) = parts[0];
    let d = first.cols();
    let f64s = parts.iter().all(|(s, _)| s.elem() == Elem::F64);
    let n: usize = parts.iter().map(|(_, idx)| idx.len()).sum();
    let mut v32 = if f64s {
        Vec::new()
    } else {
        vec![0.0f32; n * d]
    };
    let mut v64 = if f64s {
        vec![0.0f64; n * d]
    } else {
        Vec::new()
    };
    let mut o = 0;
    for &(src, idx) in parts {
        if src.cols() != d {
            return Err(Error::data(
                src.name(),
                format!("{} columns, but {} has {d}", src.cols(), first.name()),
                "give every shard the same width",
            ));
        }
        let mut i = 0;
        while i < idx.len() {
            let mut run = 1;
            while i + run < idx.len() && idx[i + run] == idx[i] + run {
                run += 1;
            }
            if f64s {
                src.read_f64(idx[i], run, &mut v64[o * d..(o + run) * d])?;
            } else {
                src.read(idx[i], run, &mut v32[o * d..(o + run) * d])?;
            }
            i += run;
            o += run;
        }
    }
    if f64s {
        Matrix::from_f64(n, d, v64, first.name())
    } else {
        Matrix::from_vec(n, d, v32, first.name())
    }
}

/// Every row of a source in memory, as a matrix (f64 sources stay f64).
pub fn load(src: &dyn RowSource) -> Result<Matrix> {
    let (n, d) = (src.rows(), src.cols());
    if src.elem() == Elem::F64 {
        let mut v = zeroed::<f64>(src, n, d)?;
        src.read_f64(0, n, &mut v)?;
        Matrix::from_f64(n, d, v, src.name())
    } else {
        let mut v = zeroed::<f32>(src, n, d)?;
        src.read(0, n, &mut v)?;
        Matrix::from_vec(n, d, v, src.name())
    }
}

/// A zeroed buffer of n × d values, or an error when the system cannot give that much memory (the sizes
/// come from a file's header or metadata, which may be damaged or simply large).
fn zeroed<T: Clone + Default>(src: &dyn RowSource, n: usize, d: usize) -> Result<Vec<T>> {
    let too_big = || {
        Error::data(
            src.name(),
            format!(
                "{n} × {d} values ({:.1} GB) do not fit in memory",
                n as f64 * d as f64 * std::mem::size_of::<T>() as f64 / 1e9
            ),
            "measure it streamed (the measures that stream read it in chunks), or select rows with a range or a sample",
        )
    };
    let len = n.checked_mul(d).ok_or_else(too_big)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_big())?;
    v.resize(len, T::default());
    Ok(v)
}

/// Rows per chunk of a pass: about 2¹⁸ values (2 MiB in f64), at least 64 rows, at most the source.
pub fn chunk_rows(src: &dyn RowSource) -> usize {
    ((1usize << 18) / src.cols().max(1))
        .max(64)
        .min(src.rows().max(1))
}

/// A chunk of a pass as the reader left it ([`for_each_stored_chunk`]).
pub enum ChunkValues<'a> {
    /// The values as stored ([`RowSource::read_stored`]), unchecked; `wide` has room for them in f64. The
    /// pass widens them where it works on them ([`widen_finite`], block by block on its own threads) and
    /// names a value that is not finite with [`not_finite`].
    Stored {
        elem: Elem,
        bytes: &'a [u8],
        wide: &'a mut [f64],
    },
    /// The values in f64, checked (a source with no stored form).
    Wide(&'a mut [f64]),
}

/// Rows per block when a chunk's stored values are widened in parallel.
const WIDEN_ROWS: usize = 64;

/// One pass over a source in order, `chunk` rows at a time, in f64: a reader thread fills the next chunk
/// while `f(first row, rows, values)` works on the current one. Progress counts rows, with bytes/s in its
/// status line. Stops at the first error, of the reader or of `f`.
///
/// The reader copies the values as stored (f32 is half the bytes of f64 to move between cores); they are
/// widened and checked here, on the pass's threads, before `f` sees them.
pub fn for_each_chunk(
    src: &dyn RowSource,
    chunk: usize,
    progress: &dyn Progress,
    mut f: impl FnMut(usize, usize, &mut [f64]) -> Result<()>,
) -> Result<()> {
    use rayon::prelude::*;
    let d = src.cols().max(1);
    for_each_stored_chunk(src, chunk, progress, |start, rows, values| match values {
        ChunkValues::Wide(x) => f(start, rows, x),
        ChunkValues::Stored { elem, bytes, wide } => {
            let block = WIDEN_ROWS * d;
            let finite = wide
                .par_chunks_mut(block)
                .zip(bytes.par_chunks(block * elem.size()))
                .map(|(w, b)| widen_finite(elem, b, w))
                .reduce(|| true, |a, b| a & b);
            if !finite {
                return Err(not_finite(src, start, rows, wide));
            }
            f(start, rows, wide)
        }
    })
}

/// [`for_each_chunk`], handing `f` the chunk as the reader left it: stored values where the source has
/// them, for a pass that widens them in the same sweep as its own work on them.
pub fn for_each_stored_chunk(
    src: &dyn RowSource,
    chunk: usize,
    progress: &dyn Progress,
    mut f: impl FnMut(usize, usize, ChunkValues<'_>) -> Result<()>,
) -> Result<()> {
    use std::sync::mpsc::sync_channel;
    /// A chunk's buffers: the stored bytes, or the f64 values where the source has no stored form.
    #[derive(Default)]
    struct Buf {
        bytes: Vec<u8>,
        wide: Vec<f64>,
        stored: bool,
    }
    let (n, d) = (src.rows(), src.cols());
    let chunk = chunk.max(1);
    let size = src.elem().size();
    let bytes_per_row = (d * size) as f64;
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let (full_tx, full_rx) = sync_channel::<Result<(usize, usize, Buf)>>(1);
        let (free_tx, free_rx) = sync_channel::<Buf>(2);
        for _ in 0..2 {
            let _ = free_tx.send(Buf::default());
        }
        s.spawn(move || {
            let mut start = 0;
            while start < n {
                let Ok(mut buf) = free_rx.recv() else { return };
                let rows = chunk.min(n - start);
                buf.bytes.resize(rows * d * size, 0);
                let r = src
                    .read_stored(start, rows, &mut buf.bytes)
                    .and_then(|stored| {
                        buf.stored = stored;
                        if stored {
                            Ok(())
                        } else {
                            buf.wide.resize(rows * d, 0.0);
                            src.read_f64(start, rows, &mut buf.wide)
                        }
                    })
                    .map(|_| (start, rows, buf));
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
                start += rows;
            }
        });
        let mut done = 0usize;
        // The f64 values of a stored chunk, widened by the pass (one buffer: the reader fills the next
        // chunk's bytes meanwhile).
        let mut wide = Vec::new();
        while done < n {
            let (start, rows, mut buf) = full_rx.recv().map_err(|_| {
                Error::data(
                    src.name(),
                    "the reader stopped early",
                    "run the command again",
                )
            })??;
            let values = if buf.stored {
                wide.resize(rows * d, 0.0);
                ChunkValues::Stored {
                    elem: src.elem(),
                    bytes: &buf.bytes,
                    wide: &mut wide,
                }
            } else {
                ChunkValues::Wide(&mut buf.wide)
            };
            f(start, rows, values)?;
            done += rows;
            progress.advance(rows as u64);
            let secs = t0.elapsed().as_secs_f64();
            if secs > 0.0 {
                progress.status(&format!(
                    "{:.0} MB/s",
                    done as f64 * bytes_per_row / secs / 1e6
                ));
            }
            let _ = free_tx.send(buf);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_numbers_shards() {
        let mut v = vec!["s_10.npy", "s_2.npy", "s_1.npy", "s_02b.npy", "t.npy"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["s_1.npy", "s_2.npy", "s_02b.npy", "s_10.npy", "t.npy"]);
    }

    #[test]
    fn samples_are_distinct_sorted_and_seeded() {
        let a = sample_indices(1000, 100, 7);
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&i| i < 1000));
        assert_eq!(a, sample_indices(1000, 100, 7));
        assert_ne!(a, sample_indices(1000, 100, 8));
        assert_eq!(sample_indices(50, 50, 1), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_file_truncated_after_it_was_opened_is_named() {
        let dir = std::env::temp_dir().join(format!("repscope-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t.npy");
        let v: Vec<f32> = (0..400).map(|i| i as f32).collect();
        npy::write(&f, &[100, 4], &v).unwrap();
        let src = FileRows::open_npy(&f).unwrap().unwrap();
        let mut out = vec![0.0f32; 400];
        src.read(0, 100, &mut out).unwrap();
        assert_eq!(out, v);
        let len = std::fs::metadata(&f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len - 64)
            .unwrap();
        let e = src.read(90, 10, &mut out).unwrap_err().to_string();
        assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shards_read_across_boundaries() {
        let d = 3;
        let whole: Vec<f32> = (0..30).map(|v| v as f32).collect();
        let m = Matrix::from_vec(10, d, whole.clone(), "all").unwrap();
        let parts: Vec<Box<dyn RowSource>> = [(0, 4), (4, 5), (5, 10)]
            .iter()
            .map(|&(a, b)| Box::new(m.slice_rows(a, b)) as Box<dyn RowSource>)
            .collect();
        let s = Shards::new(parts, "s".into()).unwrap();
        assert_eq!(s.rows(), 10);
        let mut out = vec![0.0f32; 7 * d];
        s.read(2, 7, &mut out).unwrap();
        assert_eq!(out, whole[6..27]);
        let sel = Selected::range(Box::new(s), 3, 9).unwrap();
        let mut o2 = vec![0.0f64; 6 * d];
        sel.read_f64(0, 6, &mut o2).unwrap();
        assert!(o2.iter().zip(&whole[9..27]).all(|(a, &b)| *a == b as f64));
    }

    /// The stored bytes of every composite source, widened, are its f64 values; a join of an f32 and an f64
    /// side has no stored form (it reads f64).
    #[test]
    fn stored_bytes_widen_to_the_f64_values() {
        let d = 3;
        let whole: Vec<f32> = (0..30).map(|v| v as f32 * 0.37 - 2.0).collect();
        let m = Matrix::from_vec(10, d, whole.clone(), "all").unwrap();
        let m64 =
            Matrix::from_f64(10, d, whole.iter().map(|&v| v as f64 + 1e-9).collect(), "w").unwrap();
        let shards = || {
            let parts: Vec<Box<dyn RowSource>> = [(0, 4), (4, 5), (5, 10)]
                .iter()
                .map(|&(a, b)| Box::new(m.slice_rows(a, b)) as Box<dyn RowSource>)
                .collect();
            Shards::new(parts, "s".into()).unwrap()
        };
        let sel = Selected::rows(Box::new(shards()), vec![1, 3, 4, 5, 8, 9]).unwrap();
        let m2 = m.slice_rows(0, 10);
        let joined = Joined::new(&m, &m2).unwrap();
        let mixed = Joined::new(&m, &m64).unwrap();
        let sh = shards();
        let win = Window::new(&sh, 2, 9);
        let sources: Vec<&dyn RowSource> = vec![&m, &m64, &sh, &sel, &joined, &win];
        for src in sources {
            let (n, w) = (src.rows(), src.cols());
            let (start, count) = (1, n - 2);
            let mut bytes = vec![0u8; count * w * src.elem().size()];
            assert!(
                src.read_stored(start, count, &mut bytes).unwrap(),
                "{}",
                src.name()
            );
            let mut got = vec![0.0f64; count * w];
            assert!(widen_finite(src.elem(), &bytes, &mut got));
            let mut want = vec![0.0f64; count * w];
            src.read_f64(start, count, &mut want).unwrap();
            assert_eq!(got, want, "{}", src.name());
        }
        let mut bytes = vec![0u8; 10 * mixed.cols() * 8];
        assert!(!mixed.read_stored(0, 10, &mut bytes).unwrap());
    }
}
