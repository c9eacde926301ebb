//! The NumPy `.npy` format: header parsing, conversion to [`Matrix`] or labels, and writing.
use super::labels::Labels;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::data::matrix::Matrix;
use crate::error::{Error, Result};

/// Element kind of an array, from the header's `descr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    Uint,
    Bool,
    Complex,
    Unicode,
    Bytes,
    Object,
    Other(char),
}

/// A parsed `.npy` header.
#[derive(Clone, Debug)]
pub struct Header {
    pub kind: Kind,
    /// Bytes per element (for unicode, bytes per string: 4 × characters).
    pub size: usize,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Byte offset of the data from the start of the buffer.
    pub data_offset: usize,
    pub descr: String,
}

impl Header {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn shape_str(&self) -> String {
        match self.shape.len() {
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses the header at the start of `buf`. `path` names the source in messages.
pub fn parse_header(buf: &[u8], path: &Path) -> Result<Header> {
    let corrupt = |problem: String| {
        Error::format(
            path,
            problem,
            "the file is not a valid .npy file (truncated or corrupt?): write it again with numpy.save",
        )
    };
    if buf.len() < 10 || &buf[..6] != MAGIC {
        return Err(corrupt("the .npy magic bytes are missing".into()));
    }
    let major = buf[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10usize),
        2 | 3 => {
            if buf.len() < 12 {
                return Err(corrupt("the header length is cut off".into()));
            }
            (
                u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize,
                12usize,
            )
        }
        v => return Err(corrupt(format!("unsupported .npy format version {v}"))),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| {
            corrupt(format!(
                "the header claims {hlen} bytes but the file ends before that"
            ))
        })?;
    let text = std::str::from_utf8(&buf[start..end])
        .map_err(|_| corrupt("the header is not text".into()))?;
    let descr =
        dict_value(text, "descr").ok_or_else(|| corrupt("the header has no 'descr'".into()))?;
    let fortran = dict_value(text, "fortran_order")
        .ok_or_else(|| corrupt("the header has no 'fortran_order'".into()))?;
    let shape_s =
        dict_value(text, "shape").ok_or_else(|| corrupt("the header has no 'shape'".into()))?;

    let descr = descr.trim();
    if !(descr.starts_with('\'') || descr.starts_with('"')) {
        // A list descr means a structured (record) dtype.
        return Err(Error::format(
            path,
            format!("structured dtype {descr} is not supported"),
            "save a plain 2-D float array (for example np.save(path, x.astype(np.float32)))",
        ));
    }
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(|| corrupt("empty descr".into()))?;
    let (big_endian, rest) = match order {
        '<' | '|' | '=' => (false, &descr[1..]),
        '>' => (true, &descr[1..]),
        _ => (false, &descr[..]),
    };
    let kind_c = rest
        .chars()
        .next()
        .ok_or_else(|| corrupt(format!("bad descr '{descr}'")))?;
    let size: usize = rest[kind_c.len_utf8()..].parse().unwrap_or(0);
    let kind = match kind_c {
        'f' => Kind::Float,
        'i' => Kind::Int,
        'u' => Kind::Uint,
        'b' => Kind::Bool,
        'c' => Kind::Complex,
        'U' => Kind::Unicode,
        'S' | 'a' => Kind::Bytes,
        'O' => Kind::Object,
        c => Kind::Other(c),
    };
    let size = if kind == Kind::Unicode {
        size * 4
    } else {
        size
    };
    if size == 0 || (matches!(kind, Kind::Int | Kind::Uint | Kind::Bool) && size > 8) {
        return Err(corrupt(format!("dtype '{descr}' has no valid item size")));
    }
    let fortran_order = match fortran.trim() {
        "True" => true,
        "False" => false,
        other => return Err(corrupt(format!("fortran_order is '{other}'"))),
    };
    let inner = shape_s.trim().trim_start_matches('(').trim_end_matches(')');
    let mut shape = Vec::new();
    for part in inner.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let v: usize = p
            .trim_end_matches('L')
            .parse()
            .map_err(|_| corrupt(format!("bad shape '{shape_s}'")))?;
        shape.push(v);
    }
    Ok(Header {
        kind,
        size,
        big_endian,
        fortran_order,
        shape,
        data_offset: end,
        descr,
    })
}

/// The raw text of a value in the header's Python dict literal.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let pos = text
        .find(&pat1)
        .map(|p| p + pat1.len())
        .or_else(|| text.find(&pat2).map(|p| p + pat2.len()))?;
    let after = text[pos..].trim_start();
    let after = after.strip_prefix(':')?.trim_start();
    // The value ends at the first comma at nesting depth 0 (outside parentheses, brackets and quotes).
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for (i, c) in after.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'') | (None, '"') => quote = Some(c),
            (None, '(') | (None, '[') | (None, '{') => depth += 1,
            (None, ')') | (None, ']') => depth -= 1,
            (None, '}') if depth == 0 => return Some(after[..i].trim()),
            (None, '}') => depth -= 1,
            (None, ',') if depth == 0 => return Some(after[..i].trim()),
            _ => {}
        }
    }
    Some(after.trim())
}

/// Checks that the header describes a 2-D float array and returns (rows, cols).
pub(crate) fn check_matrix_header(h: &Header, name: &str) -> Result<(usize, usize)> {
    match h.kind {
        Kind::Float if matches!(h.size, 2 | 4 | 8) => {}
        Kind::Float => {
            return Err(Error::data(
                name,
                format!("dtype {} (float{}) is not supported", h.descr, h.size * 8),
                "convert to float32, e.g. x.astype(np.float32)",
            ))
        }
        Kind::Int | Kind::Uint | Kind::Bool => return Err(Error::data(
            name,
            format!(
                "dtype {} is an integer/boolean array, not floating-point representations",
                h.descr
            ),
            "pass float data (x.astype(np.float32)); integer arrays are accepted only as labels",
        )),
        Kind::Complex => {
            return Err(Error::data(
                name,
                format!("dtype {} is complex", h.descr),
                "pass real float data, e.g. np.abs(x) or np.concatenate([x.real, x.imag], axis=1)",
            ))
        }
        Kind::Object => return Err(Error::data(
            name,
            "dtype object (pickled Python objects) cannot be read",
            "stack the rows into one numeric array: np.save(path, np.asarray(x, dtype=np.float32))",
        )),
        _ => {
            return Err(Error::data(
                name,
                format!("dtype {} is not numeric", h.descr),
                "pass a 2-D float32/float16/float64 array",
            ))
        }
    }
    match h.shape.len() {
        2 => {}
        1 => {
            return Err(Error::data(
                name,
                format!("the array is 1-D, shape {}", h.shape_str()),
                "repscope needs a 2-D array (rows = points, columns = dimensions): save x.reshape(-1, 1) for one feature, or x[None, :] for one point",
            ))
        }
        0 => {
            return Err(Error::data(
                name,
                "the array is a scalar (0-D)",
                "pass a 2-D array with one row per point",
            ))
        }
        k => {
            return Err(Error::data(
                name,
                format!("the array is {k}-D, shape {}", h.shape_str()),
                "flatten it to 2-D first, e.g. x.reshape(-1, x.shape[-1]) for token states",
            ))
        }
    }
    let (r, c) = (h.shape[0], h.shape[1]);
    if r == 0 || c == 0 {
        return Err(Error::data(
            name,
            format!("the array is empty, shape {}", h.shape_str()),
            "pass at least a few rows and one column",
        ));
    }
    Ok((r, c))
}

/// How raw float data is laid out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout<'a> {
    /// Bytes per element: 2, 4 or 8.
    pub size: usize,
    pub big_endian: bool,
    pub fortran: bool,
    pub rows: usize,
    pub cols: usize,
    /// The dtype as written in the file, for messages.
    pub dtype: &'a str,
}

impl<'a> Layout<'a> {
    pub(crate) fn of(h: &'a Header, rows: usize, cols: usize) -> Self {
        Layout {
            size: h.size,
            big_endian: h.big_endian,
            fortran: h.fortran_order,
            rows,
            cols,
            dtype: &h.descr,
        }
    }
    pub(crate) fn little_c(size: usize, rows: usize, cols: usize, dtype: &'a str) -> Self {
        Layout {
            size,
            big_endian: false,
            fortran: false,
            rows,
            cols,
            dtype,
        }
    }
}

/// Converts raw little/big-endian f16/f32/f64 data in C or Fortran order to an owned row-major matrix;
/// f64 data stays f64 (with an f32 copy for the ranking kernels).
pub(crate) fn convert_float_data(data: &[u8], l: Layout, name: &str) -> Result<Matrix> {
    let Layout {
        size,
        big_endian,
        fortran,
        rows,
        cols,
        dtype,
    } = l;
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| Error::data(name, "the array shape overflows", "check the file"))?;
    let need = n.saturating_mul(size);
    if data.len() < need {
        return Err(Error::data(
            name,
            format!(
                "the header promises {need} bytes of {dtype} data but only {} are present",
                data.len()
            ),
            "the file is truncated: write it again",
        ));
    }
    if size == 8 {
        let read = |i: usize| -> f64 {
            let b: [u8; 8] = data[i * 8..(i + 1) * 8].try_into().expect("8 bytes");
            if big_endian {
                f64::from_be_bytes(b)
            } else {
                f64::from_le_bytes(b)
            }
        };
        return Matrix::from_f64(rows, cols, row_major(n, rows, cols, fortran, read), name);
    }
    let read = |i: usize| -> f32 {
        let b = &data[i * size..(i + 1) * size];
        match (size, big_endian) {
            (2, false) => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            (2, true) => half::f16::from_be_bytes([b[0], b[1]]).to_f32(),
            (4, false) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => f32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        }
    };
    Matrix::from_vec(rows, cols, row_major(n, rows, cols, fortran, read), name)
}

/// The `n` values `read(i)` of a C- or Fortran-order array, in row-major order.
fn row_major<T: Copy + Default>(
    n: usize,
    rows: usize,
    cols: usize,
    fortran: bool,
    read: impl Fn(usize) -> T,
) -> Vec<T> {
    let mut out = vec![T::default(); n];
    if fortran {
        for j in 0..cols {
            for i in 0..rows {
                out[i * cols + j] = read(j * rows + i);
            }
        }
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            *o = read(i);
        }
    }
    out
}

/// Reads a 2-D float `.npy` file. Little-endian f32 in C order is memory-mapped; anything else is converted
/// once to an owned f32 matrix.
pub fn read_matrix(path: &Path) -> Result<Matrix> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; repscope never writes to input files. A concurrent writer could change
    // the values under us, as with any reader, but cannot make the access unsound for f32 data.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    let h = parse_header(&map, path)?;
    let (rows, cols) = check_matrix_header(&h, &name)?;
    if h.size == 4 && !h.big_endian && !h.fortran_order {
        return Matrix::from_map(Arc::new(map), h.data_offset, rows, cols, name);
    }
    convert_float_data(&map[h.data_offset..], Layout::of(&h, rows, cols), &name)
}

/// Decodes a 1-D integer or string array (or 2-D with one column) into labels.
/// The little-endian bytes of integer label i, sign-extended to 8 bytes for signed types.
fn int_bytes(h: &Header, data: &[u8], i: usize) -> [u8; 8] {
    let b = &data[i * h.size..(i + 1) * h.size];
    let mut bytes = [0u8; 8];
    if h.big_endian {
        for (k, &x) in b.iter().rev().enumerate() {
            bytes[k] = x;
        }
    } else {
        bytes[..h.size].copy_from_slice(b);
    }
    if h.kind == Kind::Int && bytes[h.size - 1] & 0x80 != 0 {
        bytes.iter_mut().skip(h.size).for_each(|x| *x = 0xff);
    }
    bytes
}

/// Integer label i as an i64 (None for an unsigned value above i64::MAX).
fn int_label(h: &Header, data: &[u8], i: usize) -> Option<i64> {
    let bytes = int_bytes(h, data, i);
    if h.kind == Kind::Int {
        Some(i64::from_le_bytes(bytes))
    } else {
        i64::try_from(u64::from_le_bytes(bytes)).ok()
    }
}

pub fn labels_from_npy(buf: &[u8], path: &Path) -> Result<Labels> {
    let h = parse_header(buf, path)?;
    let name = path.display().to_string();
    let n = match h.shape.as_slice() {
        [n] => *n,
        [n, 1] => *n,
        _ => {
            return Err(Error::data(
                &name,
                format!("labels must be 1-D, got shape {}", h.shape_str()),
                "save one label per row as a 1-D array",
            ))
        }
    };
    let data = &buf[h.data_offset..];
    if n.checked_mul(h.size).is_none_or(|need| data.len() < need) {
        return Err(Error::data(
            &name,
            "the label data is truncated",
            "write the file again",
        ));
    }
    if matches!(h.kind, Kind::Int | Kind::Uint | Kind::Bool) {
        // Integers are mapped to classes without a string per row (4 bytes a row, not ~40); unsigned
        // values above i64::MAX fall back to their text.
        let ints: Option<Vec<i64>> = (0..n).map(|i| int_label(&h, data, i)).collect();
        if let Some(v) = ints {
            return Ok(Labels::from_integers(&v));
        }
    }
    let raw: Vec<String> = match h.kind {
        Kind::Int | Kind::Uint | Kind::Bool => (0..n)
            .map(|i| u64::from_le_bytes(int_bytes(&h, data, i)).to_string())
            .collect(),
        Kind::Unicode => (0..n)
            .map(|i| {
                let b = &data[i * h.size..(i + 1) * h.size];
                b.chunks_exact(4)
                    .map(|c| {
                        if h.big_endian {
                            u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                        } else {
                            u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                        }
                    })
                    .take_while(|&u| u != 0)
                    .filter_map(char::from_u32)
                    .collect()
            })
            .collect(),
        Kind::Bytes => (0..n)
            .map(|i| {
                let b = &data[i * h.size..(i + 1) * h.size];
                let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
                String::from_utf8_lossy(&b[..end]).into_owned()
            })
            .collect(),
        _ => {
            return Err(Error::data(
                &name,
                format!("labels of dtype {} are not supported", h.descr),
                "save labels as integers or strings (np.int32 or np.str_)",
            ))
        }
    };
    let numeric = matches!(h.kind, Kind::Int | Kind::Uint | Kind::Bool);
    Ok(Labels::from_strings(raw, numeric))
}

/// Element types repscope writes.
pub trait NpyElement: Copy {
    const DESCR: &'static str;
    fn write_le(&self, out: &mut Vec<u8>);
}
impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for f64 {
    const DESCR: &'static str = "<f8";
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for u32 {
    const DESCR: &'static str = "<u4";
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for i32 {
    const DESCR: &'static str = "<i4";
    fn write_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// Encodes an array (C order) as `.npy` bytes, format version 1.0, header padded to 64 bytes.
pub fn encode<T: NpyElement>(shape: &[usize], data: &[T]) -> Vec<u8> {
    let mut out = header::<T>(shape);
    out.reserve(std::mem::size_of_val(data));
    for x in data {
        x.write_le(&mut out);
    }
    out
}

/// The `.npy` preamble (magic, version 1.0, header dict padded to 64 bytes) for a C-order array.
pub(crate) fn header<T: NpyElement>(shape: &[usize]) -> Vec<u8> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_s
    );
    let total = 10 + header.len() + 1;
    let pad = (64 - total % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Writes a whole `.npy` image (preamble and little-endian data) to `w`, through a small buffer: no copy
/// of the array is ever held in memory.
pub(crate) fn write_array<T: NpyElement, W: Write>(
    w: &mut W,
    shape: &[usize],
    data: &[T],
) -> std::io::Result<()> {
    w.write_all(&header::<T>(shape))?;
    let mut buf = Vec::with_capacity(1 << 16);
    for chunk in data.chunks((1 << 16) / std::mem::size_of::<T>().max(1)) {
        buf.clear();
        for x in chunk {
            x.write_le(&mut buf);
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Writes an array to a `.npy` file.
pub fn write<T: NpyElement>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    write_file_with(path, |f| {
        let mut w = std::io::BufWriter::new(f);
        write_array(&mut w, shape, data)?;
        w.flush()
    })
}

/// Creates a temporary file beside `path`, lets `fill` write it, then renames it onto `path`; on any
/// failure the temporary file is removed and `path` is left as it was, so a failure never leaves half a file.
pub(crate) fn write_file_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let fname = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{fname}.tmp{}", std::process::id()));
    let unwritable = |e: std::io::Error| Error::io_write(path, e);
    let mut f = std::fs::File::create(&tmp).map_err(unwritable)?;
    // Synced before the rename, so a crash or a full disk never leaves a partial file under the name.
    if let Err(e) = fill(&mut f).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        return Err(unwritable(e));
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        unwritable(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32_and_header_alignment() {
        let data: Vec<f32> = (0..12).map(|x| x as f32 * 0.5).collect();
        let bytes = encode(&[3, 4], &data);
        let h = parse_header(&bytes, Path::new("t.npy")).unwrap();
        assert_eq!(h.shape, vec![3, 4]);
        assert_eq!(h.kind, Kind::Float);
        assert_eq!(h.size, 4);
        assert_eq!(h.data_offset % 64, 0);
        let m = convert_float_data(
            &bytes[h.data_offset..],
            Layout::little_c(4, 3, 4, "<f4"),
            "t",
        )
        .unwrap();
        assert_eq!(m.as_slice(), &data[..]);
    }

    #[test]
    fn fortran_order_is_transposed_on_load() {
        // 2 × 3 matrix [[1,2,3],[4,5,6]] stored column by column.
        let col_major: Vec<f64> = vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let raw: Vec<u8> = col_major.iter().flat_map(|x| x.to_le_bytes()).collect();
        let l = Layout {
            fortran: true,
            ..Layout::little_c(8, 2, 3, "<f8")
        };
        let m = convert_float_data(&raw, l, "t").unwrap();
        assert_eq!(m.as_slice(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn header_dict_parsing_handles_reordered_keys_and_v2() {
        let text = "{'shape': (5, 2), 'fortran_order': True, 'descr': '>f8'}";
        let mut buf = Vec::new();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[2, 0]);
        buf.extend_from_slice(&(text.len() as u32).to_le_bytes());
        buf.extend_from_slice(text.as_bytes());
        let h = parse_header(&buf, Path::new("x.npy")).unwrap();
        assert_eq!(h.shape, vec![5, 2]);
        assert!(h.fortran_order && h.big_endian);
        assert_eq!(h.size, 8);
    }

    #[test]
    fn integer_and_string_labels() {
        let ints = encode(&[5], &[3i32, -1, 3, 7, -1]);
        let l = labels_from_npy(&ints, Path::new("l.npy")).unwrap();
        assert_eq!(l.names, vec!["-1", "3", "7"]);
        assert_eq!(l.ids, vec![1, 0, 1, 2, 0]); // The integer path names and numbers classes as the text path does.
        let v = [12i64, -4, 0, 12, 3, 100, -4];
        let a = Labels::from_integers(&v);
        let b = Labels::from_strings(v.iter().map(|x| x.to_string()).collect(), true);
        assert_eq!((a.ids, a.names), (b.ids, b.names));
    }
}
