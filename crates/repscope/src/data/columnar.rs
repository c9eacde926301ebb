//! Parquet files and Arrow IPC files and streams (the `.arrow` files of a Hugging Face datasets cache, as
//! SAELens writes its activation caches) as row sources, read with the `parquet` and `arrow-ipc` crates.
//!
//! A column gives the rows in one of three layouts:
//! - a list of floats per row (fixed-size or variable, all of one length d): one row each;
//! - a list of lists of floats per row (Hugging Face `Array2D(ctx, d)`): one row per inner list, so an
//!   activation cache of sequences reads as its tokens;
//! - one float column per dimension (every float column of the table, in schema order).
//!
//! Units (parquet row groups, IPC record batches) are decoded one at a time, only the chosen column, into
//! a buffer of f64 rows that a cursor moves through; a pass in order decodes each unit once, and a jump
//! backwards or to another unit decodes from the start of that unit. Row counts come from the metadata
//! (parquet leaf value counts, IPC field node lengths) without decoding.
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};

use super::source::{Elem, RowSource};
use crate::error::{Error, Param, Result, Text};

/// How a column holds its rows.
#[derive(Clone, Debug)]
enum Layout {
    /// One list column: `depth` nested lists (1 or 2) of floats; the rows are the innermost lists.
    List { column: usize, depth: usize },
    /// One float column per dimension.
    Columns(Vec<usize>),
}

fn float_elem(t: &DataType) -> Option<Elem> {
    match t {
        DataType::Float16 => Some(Elem::F16),
        DataType::Float32 => Some(Elem::F32),
        DataType::Float64 => Some(Elem::F64),
        _ => None,
    }
}

/// The list nesting of a type down to its float leaf: (depth, leaf, fixed size of the innermost list).
fn list_shape(t: &DataType) -> Option<(usize, Elem, Option<usize>)> {
    let (child, size) = match t {
        DataType::List(f) | DataType::LargeList(f) => (f.data_type(), None),
        DataType::FixedSizeList(f, n) => (f.data_type(), Some(*n as usize)),
        _ => return None,
    };
    if let Some(e) = float_elem(child) {
        return Some((1, e, size));
    }
    let (depth, e, inner) = list_shape(child)?;
    (depth == 1).then_some((2, e, inner))
}

/// Field nodes of a type in an IPC record batch (depth first).
fn node_count(t: &DataType) -> usize {
    match t {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => 1 + node_count(f.data_type()),
        DataType::Struct(fs) => 1 + fs.iter().map(|f| node_count(f.data_type())).sum::<usize>(),
        DataType::Dictionary(_, v) => node_count(v),
        _ => 1,
    }
}

/// Chooses the column (`key`) and its layout; errors name the file and list the candidates.
fn choose(schema: &Schema, key: Option<&str>, path: &Path) -> Result<(Layout, Elem)> {
    let fields = schema.fields();
    let lists: Vec<usize> = (0..fields.len())
        .filter(|&i| list_shape(fields[i].data_type()).is_some())
        .collect();
    let names = |v: &[usize]| {
        v.iter()
            .map(|&i| fields[i].name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(k) = key {
        let Some(i) = fields.iter().position(|f| f.name() == k) else {
            return Err(Error::param(
                Param::Key,
                format!("{}: no column '{k}'", path.display()),
                format!(
                    "the columns are: {}",
                    fields
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let t = fields[i].data_type();
        if let Some((depth, elem, _)) = list_shape(t) {
            return Ok((Layout::List { column: i, depth }, elem));
        }
        if let Some(e) = float_elem(t) {
            return Ok((Layout::Columns(vec![i]), e));
        }
        return Err(Error::data(
            path.display().to_string(),
            format!("column '{k}' holds {t}, not floats or lists of floats"),
            "name a column of float vectors (a list of float16/32/64 per row), or of lists of them",
        ));
    }
    match lists.as_slice() {
        [i] => {
            let (depth, elem, _) = list_shape(fields[*i].data_type()).expect("a list column");
            Ok((Layout::List { column: *i, depth }, elem))
        }
        [] => {
            let floats: Vec<usize> = (0..fields.len())
                .filter(|&i| float_elem(fields[i].data_type()).is_some())
                .collect();
            let Some(&first) = floats.first() else {
                return Err(Error::data(
                    path.display().to_string(),
                    format!(
                        "no column holds floats or lists of floats (the columns are {})",
                        fields
                            .iter()
                            .map(|f| format!("{}: {}", f.name(), f.data_type()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "store the vectors as a list<float> column, or one float column per dimension",
                ));
            };
            let elem = float_elem(fields[first].data_type()).expect("a float column");
            if let Some(&o) = floats
                .iter()
                .find(|&&i| float_elem(fields[i].data_type()) != Some(elem))
            {
                return Err(Error::data(
                    path.display().to_string(),
                    format!(
                        "the float columns mix types: '{}' is {} but '{}' is {}",
                        fields[first].name(),
                        fields[first].data_type(),
                        fields[o].name(),
                        fields[o].data_type()
                    ),
                    "write every dimension with one float type",
                ));
            }
            Ok((Layout::Columns(floats), elem))
        }
        several => Err(Error::param(
            Param::Key,
            format!(
                "{} has several vector columns ({})",
                path.display(),
                names(several)
            ),
            Text::from("choose one with ").param(Param::Key),
        )),
    }
}

/// Appends the float values of a primitive array as f64.
fn push_floats(a: &dyn Array, out: &mut Vec<f64>) -> std::result::Result<(), String> {
    if a.null_count() > 0 {
        return Err(format!("{} null values", a.null_count()));
    }
    match a.data_type() {
        DataType::Float16 => out.extend(
            a.as_primitive::<Float16Type>()
                .values()
                .iter()
                .map(|v| v.to_f64()),
        ),
        DataType::Float32 => out.extend(
            a.as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|&v| v as f64),
        ),
        DataType::Float64 => out.extend_from_slice(a.as_primitive::<Float64Type>().values()),
        t => return Err(format!("values of type {t}, not floats")),
    }
    Ok(())
}

/// Appends the rows of a list array (one per innermost list, each of `d` values); returns how many.
/// `first` is the number of rows before this array, for messages.
fn push_list_rows(
    a: &dyn Array,
    d: usize,
    first: usize,
    out: &mut Vec<f64>,
) -> std::result::Result<usize, String> {
    if a.null_count() > 0 {
        return Err(format!("{} null lists", a.null_count()));
    }
    let (child, lens): (ArrayRef, Vec<usize>) = match a.data_type() {
        DataType::FixedSizeList(_, n) => {
            let l = a.as_fixed_size_list();
            let n = *n as usize;
            let start = l.value_offset_at(0);
            (l.values().slice(start, l.len() * n), vec![n; l.len()])
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            let (s, e) = (o[0] as usize, o[l.len()] as usize);
            let lens = o.windows(2).map(|w| (w[1] - w[0]) as usize).collect();
            (l.values().slice(s, e - s), lens)
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let o = l.value_offsets();
            let (s, e) = (o[0] as usize, o[l.len()] as usize);
            let lens = o.windows(2).map(|w| (w[1] - w[0]) as usize).collect();
            (l.values().slice(s, e - s), lens)
        }
        t => return Err(format!("{t} is not a list")),
    };
    if float_elem(child.data_type()).is_some() {
        if let Some((i, &l)) = lens.iter().enumerate().find(|(_, &l)| l != d) {
            return Err(format!(
                "row {} has {l} values but the rows before it have {d} (ragged lists)",
                first + i
            ));
        }
        push_floats(&*child, out)?;
        Ok(lens.len())
    } else {
        push_list_rows(&*child, d, first, out)
    }
}

/// The rows of a decoded batch (only the chosen columns, in layout order) as f64, appended to `out`.
fn batch_rows(
    b: &RecordBatch,
    layout: &Layout,
    d: usize,
    first: usize,
    out: &mut Vec<f64>,
) -> std::result::Result<usize, String> {
    match layout {
        Layout::List { .. } => push_list_rows(&**b.column(0), d, first, out),
        Layout::Columns(cols) => {
            let n = b.num_rows();
            let mut vals: Vec<Vec<f64>> = Vec::with_capacity(cols.len());
            for c in b.columns() {
                let mut v = Vec::with_capacity(n);
                push_floats(&**c, &mut v)?;
                vals.push(v);
            }
            out.reserve(n * d);
            for i in 0..n {
                out.extend(vals.iter().map(|v| v[i]));
            }
            Ok(n)
        }
    }
}

/// Decodes one unit into batches of rows.
type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, String>> + Send>;

/// Where a pass stands: the rows of the last batch decoded, and the rest of its unit.
struct Cursor {
    unit: usize,
    batches: Option<Batches>,
    /// Rows buf_start..buf_start + buf_rows, row-major.
    buf: Vec<f64>,
    buf_start: usize,
    buf_rows: usize,
}

enum Reader {
    Parquet {
        meta: parquet::arrow::arrow_reader::ArrowReaderMetadata,
        mask: parquet::arrow::ProjectionMask,
        batch: usize,
    },
    Ipc {
        schema: SchemaRef,
        version: arrow_ipc::MetadataVersion,
        projection: Vec<usize>,
        dictionaries: Vec<arrow_ipc::Block>,
        blocks: Vec<arrow_ipc::Block>,
    },
}

/// A parquet or Arrow IPC file read as rows.
pub struct ColumnRows {
    path: PathBuf,
    name: String,
    layout: Layout,
    d: usize,
    elem: Elem,
    /// First row of each unit, and the total at the end.
    starts: Vec<usize>,
    reader: Reader,
    cursor: Mutex<Cursor>,
}

fn fail(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::format(
        path,
        format!("cannot be read: {what}"),
        "check that the file is complete and was written by parquet or Arrow",
    )
}

impl ColumnRows {
    /// Opens a `.parquet` file; `key` names the column.
    pub fn open_parquet(path: &Path, key: Option<&str>) -> Result<ColumnRows> {
        let meta = parquet_meta(path)?;
        let schema = meta.schema().clone();
        let (layout, elem) = choose(&schema, key, path)?;
        let roots: Vec<usize> = match &layout {
            Layout::List { column, .. } => vec![*column],
            Layout::Columns(c) => c.clone(),
        };
        let pq = meta.metadata().clone();
        let descr = pq.file_metadata().schema_descr();
        let mask = parquet::arrow::ProjectionMask::roots(descr, roots.iter().copied());
        // Rows per row group: top-level rows, or the leaf values over the width for lists.
        let (d, fixed) = match &layout {
            Layout::Columns(c) => (c.len(), true),
            Layout::List { column, .. } => match list_shape(schema.field(*column).data_type()) {
                Some((1, _, Some(n))) => (n, true),
                Some((_, _, Some(n))) => (n, false),
                _ => (0, false),
            },
        };
        let leaf = match &layout {
            Layout::List { column, .. } => {
                (0..descr.num_columns()).find(|&i| descr.get_column_root_idx(i) == *column)
            }
            Layout::Columns(_) => None,
        };
        let mut starts = vec![0usize];
        let mut d = d;
        let groups = pq.num_row_groups();
        if d == 0 && groups > 0 {
            // A variable-length list: the width is the length of the first list.
            d = first_width_parquet(path, &meta, &mask, &layout)?;
        }
        for g in 0..groups {
            let rg = pq.row_group(g);
            let rows = if fixed {
                rg.num_rows() as usize
            } else {
                let values = leaf.map(|l| rg.column(l).num_values()).unwrap_or(0) as usize;
                if d == 0 || !values.is_multiple_of(d) {
                    return Err(Error::data(
                        path.display().to_string(),
                        format!("row group {g} holds {values} values, not a multiple of the width {d} (ragged lists, or null values)"),
                        "write every vector with the same number of values",
                    ));
                }
                values / d
            };
            starts.push(starts.last().unwrap() + rows);
        }
        let n = *starts.last().unwrap();
        let batch = ((1usize << 18) / d.max(1)).max(1);
        // Records per batch: for nested lists a record holds several rows.
        let per_record = if fixed || pq.file_metadata().num_rows() == 0 {
            1
        } else {
            (n / pq.file_metadata().num_rows() as usize).max(1)
        };
        ColumnRows::finish(
            path,
            layout,
            d,
            elem,
            starts,
            Reader::Parquet {
                meta,
                mask,
                batch: (batch / per_record).max(1),
            },
        )
    }

    /// Opens an Arrow IPC file (`ARROW1` magic and footer) or stream (a Hugging Face datasets `.arrow`
    /// file); `key` names the column.
    pub fn open_ipc(path: &Path, key: Option<&str>) -> Result<ColumnRows> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let (schema, version, blocks, dictionaries) = ipc_messages(&mut file, path)?;
        let (layout, elem) = choose(&schema, key, path)?;
        let (projection, node, depth) = match &layout {
            Layout::List { column, depth } => {
                let node: usize = (0..*column)
                    .map(|i| node_count(schema.field(i).data_type()))
                    .sum();
                (vec![*column], Some(node), *depth)
            }
            Layout::Columns(c) => (c.clone(), None, 0),
        };
        let fixed = match &layout {
            Layout::List { column, .. } => {
                list_shape(schema.field(*column).data_type()).and_then(|s| s.2)
            }
            Layout::Columns(c) => Some(c.len()),
        };
        let mut starts = vec![0usize];
        let mut d = fixed.unwrap_or(0);
        for b in &blocks {
            let msg = read_meta(&mut file, b, path)?;
            let rb = arrow_ipc::root_as_message(&msg)
                .ok()
                .and_then(|m| m.header_as_record_batch())
                .ok_or_else(|| fail(path, "a record batch message is malformed"))?;
            let rows = match node {
                None => rb.length() as usize,
                Some(first) => {
                    let nodes = rb
                        .nodes()
                        .ok_or_else(|| fail(path, "a record batch has no field nodes"))?;
                    let at = |i: usize| {
                        (i < nodes.len())
                            .then(|| nodes.get(i).length() as usize)
                            .ok_or_else(|| fail(path, "a record batch has too few field nodes"))
                    };
                    // The innermost list node counts the rows; the leaf node the values.
                    let rows = at(first + depth - 1)?;
                    if d == 0 && rows > 0 {
                        d = at(first + depth)? / rows;
                    }
                    rows
                }
            };
            starts.push(starts.last().unwrap() + rows);
        }
        ColumnRows::finish(
            path,
            layout,
            d,
            elem,
            starts,
            Reader::Ipc {
                schema: Arc::new(schema),
                version,
                projection,
                dictionaries,
                blocks,
            },
        )
    }

    fn finish(
        path: &Path,
        layout: Layout,
        d: usize,
        elem: Elem,
        starts: Vec<usize>,
        reader: Reader,
    ) -> Result<ColumnRows> {
        if *starts.last().unwrap() == 0 || d == 0 {
            return Err(Error::data(
                path.display().to_string(),
                "the column holds no rows",
                "pass a file with at least one vector",
            ));
        }
        Ok(ColumnRows {
            path: path.to_path_buf(),
            name: path.display().to_string(),
            layout,
            d,
            elem,
            starts,
            reader,
            cursor: Mutex::new(Cursor {
                unit: usize::MAX,
                batches: None,
                buf: Vec::new(),
                buf_start: 0,
                buf_rows: 0,
            }),
        })
    }

    /// The batches of one unit, decoded from the file.
    fn open_unit(&self, u: usize) -> Result<Batches> {
        self.reader.open_unit(&self.path, u)
    }

    fn unit_of(&self, row: usize) -> usize {
        self.starts.partition_point(|&s| s <= row) - 1
    }
}

impl Reader {
    /// The batches of unit `u` (a row group, a record batch) of the file at `path`, only the projected
    /// columns.
    fn open_unit(&self, path: &Path, u: usize) -> Result<Batches> {
        match self {
            Reader::Parquet { meta, mask, batch } => {
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::new_with_metadata(
                    file,
                    meta.clone(),
                )
                .with_row_groups(vec![u])
                .with_projection(mask.clone())
                .with_batch_size(*batch)
                .build()
                .map_err(|e| fail(path, e))?;
                Ok(Box::new(r.map(|b| b.map_err(|e| e.to_string()))))
            }
            Reader::Ipc {
                schema,
                version,
                projection,
                dictionaries,
                blocks,
            } => {
                let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
                let mut dec = arrow_ipc::reader::FileDecoder::new(schema.clone(), *version)
                    .with_projection(projection.clone());
                for b in dictionaries {
                    let buf = read_block(&mut file, b, path)?;
                    check_buffers(&buf, b, path)?;
                    dec.read_dictionary(b, &buf).map_err(|e| fail(path, e))?;
                }
                let buf = read_block(&mut file, &blocks[u], path)?;
                check_buffers(&buf, &blocks[u], path)?;
                let b = dec
                    .read_record_batch(&blocks[u], &buf)
                    .map_err(|e| fail(path, e))?
                    .ok_or_else(|| fail(path, "a record batch is empty"));
                Ok(Box::new(std::iter::once(b.map_err(|e| e.to_string()))))
            }
        }
    }

    /// How many units the file has.
    fn units(&self) -> usize {
        match self {
            Reader::Parquet { meta, .. } => meta.metadata().num_row_groups(),
            Reader::Ipc { blocks, .. } => blocks.len(),
        }
    }
}

/// The width of the first list of a parquet column with variable-length lists.
fn first_width_parquet(
    path: &Path,
    meta: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
    mask: &parquet::arrow::ProjectionMask,
    layout: &Layout,
) -> Result<usize> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::new_with_metadata(
        file,
        meta.clone(),
    )
    .with_projection(mask.clone())
    .with_batch_size(1)
    .build()
    .map_err(|e| fail(path, e))?;
    let Some(b) = r.next() else { return Ok(0) };
    let b = b.map_err(|e| fail(path, e))?;
    let Layout::List { .. } = layout else {
        return Ok(b.num_columns());
    };
    // Descend to the innermost list of the first row.
    let mut a: ArrayRef = b.column(0).clone();
    loop {
        let child = match a.data_type() {
            DataType::List(_) => {
                let l = a.as_list::<i32>();
                let o = l.value_offsets();
                l.values().slice(o[0] as usize, (o[1] - o[0]) as usize)
            }
            DataType::LargeList(_) => {
                let l = a.as_list::<i64>();
                let o = l.value_offsets();
                l.values().slice(o[0] as usize, (o[1] - o[0]) as usize)
            }
            DataType::FixedSizeList(_, n) => {
                let l = a.as_fixed_size_list();
                l.values().slice(l.value_offset_at(0), *n as usize)
            }
            _ => return Ok(0),
        };
        if float_elem(child.data_type()).is_some() {
            return Ok(child.len());
        }
        a = child;
    }
}

/// A parquet file's metadata, with its Arrow schema.
fn parquet_meta(path: &Path) -> Result<parquet::arrow::arrow_reader::ArrowReaderMetadata> {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let meta =
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| fail(path, e))?;
    // Every column chunk must lie inside the file (the reader asserts non-negative offsets, and would
    // otherwise read past the end): a damaged footer is an error here.
    for rg in meta.metadata().row_groups() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            let inside = start >= 0
                && len >= 0
                && (start as u64)
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= size);
            if !inside || rg.num_rows() < 0 {
                return Err(fail(
                    path,
                    "a column chunk of the footer lies outside the file: it is damaged or truncated",
                ));
            }
        }
    }
    Ok(meta)
}

/// The schema and blocks of an Arrow IPC file (`ARROW1` magic: from its footer) or stream (by scanning).
fn ipc_messages(file: &mut File, path: &Path) -> Result<Ipc> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut magic = [0u8; 6];
    let is_file = len >= 6 && {
        file.read_exact(&mut magic)
            .map_err(|e| Error::io(path, e))?;
        &magic == b"ARROW1"
    };
    if is_file {
        read_footer(file, len, path)
    } else {
        scan_stream(file, len, path)
    }
}

fn read_at(file: &mut File, at: u64, len: usize, path: &Path) -> Result<Vec<u8>> {
    // The offsets and lengths come from the file itself: check them against its size before allocating.
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if at.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(Error::format(
            path,
            format!(
                "a message at byte {at} of {len} bytes runs past the end of the file ({size} bytes): it is truncated or damaged"
            ),
            "write the file again, and do not change it while repscope reads it",
        ));
    }
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(at))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::format(
                    path,
                    format!("the file ended at a message at byte {at}: it is truncated"),
                    "write the file again, and do not change it while repscope reads it",
                )
            } else {
                Error::io(path, e)
            }
        })?;
    Ok(buf)
}

/// A message's metadata (the flatbuffer, without its length prefix).
fn read_meta(file: &mut File, b: &arrow_ipc::Block, path: &Path) -> Result<Vec<u8>> {
    let (at, len) = block_span(b, false, path)?;
    let m = read_at(file, at, len, path)?;
    let skip = if m.len() >= 8 && m[..4] == [0xFF; 4] {
        8
    } else {
        4
    };
    Ok(m[skip.min(m.len())..].to_vec())
}

fn read_block(file: &mut File, b: &arrow_ipc::Block, path: &Path) -> Result<arrow_buffer::Buffer> {
    let (at, len) = block_span(b, true, path)?;
    Ok(arrow_buffer::Buffer::from_vec(read_at(
        file, at, len, path,
    )?))
}

/// Checks that every buffer a record batch (or dictionary batch) message names lies inside its body, so
/// that a damaged file is an error here and never an out-of-bounds slice in the decoder.
fn check_buffers(buf: &arrow_buffer::Buffer, b: &arrow_ipc::Block, path: &Path) -> Result<()> {
    let meta_len = usize::try_from(b.metaDataLength())
        .unwrap_or(usize::MAX)
        .min(buf.len());
    let m = &buf[..meta_len];
    let skip = if m.len() >= 8 && m[..4] == [0xFF; 4] {
        8
    } else {
        4
    };
    let msg = arrow_ipc::root_as_message(&m[skip.min(m.len())..])
        .map_err(|e| fail(path, format!("a message is not Arrow IPC ({e:?})")))?;
    let body = (buf.len() - meta_len) as u64;
    let batch = match msg.header_type() {
        arrow_ipc::MessageHeader::RecordBatch => msg.header_as_record_batch(),
        arrow_ipc::MessageHeader::DictionaryBatch => {
            msg.header_as_dictionary_batch().and_then(|d| d.data())
        }
        _ => None,
    }
    .ok_or_else(|| fail(path, "a block of the file is not a record batch"))?;
    let outside = batch.buffers().into_iter().flatten().any(|x| {
        x.offset() < 0
            || x.length() < 0
            || (x.offset() as u64).saturating_add(x.length() as u64) > body
    });
    if outside || msg.bodyLength() < 0 || msg.bodyLength() as u64 > body {
        return Err(fail(
            path,
            "a record batch names data beyond its message body: the file is damaged",
        ));
    }
    Ok(())
}

/// Where a footer block starts and how long it is (its metadata, and with `body` its body too), refusing
/// negative fields.
fn block_span(b: &arrow_ipc::Block, body: bool, path: &Path) -> Result<(u64, usize)> {
    let bad = || {
        fail(
            path,
            "a record batch block of the footer has a negative offset or length",
        )
    };
    let at = u64::try_from(b.offset()).map_err(|_| bad())?;
    let meta = u64::try_from(b.metaDataLength()).map_err(|_| bad())?;
    let rest = if body {
        u64::try_from(b.bodyLength()).map_err(|_| bad())?
    } else {
        0
    };
    let len = meta.checked_add(rest).ok_or_else(bad)?;
    Ok((at, usize::try_from(len).map_err(|_| bad())?))
}

type Ipc = (
    Schema,
    arrow_ipc::MetadataVersion,
    Vec<arrow_ipc::Block>,
    Vec<arrow_ipc::Block>,
);

/// The schema and the record batch and dictionary blocks listed by an IPC file's footer.
fn read_footer(file: &mut File, len: u64, path: &Path) -> Result<Ipc> {
    if len < 18 {
        return Err(fail(path, "the file is too short for an Arrow IPC file"));
    }
    let tail = read_at(file, len - 10, 10, path)?;
    let mut t = [0u8; 10];
    t.copy_from_slice(&tail);
    let flen = arrow_ipc::reader::read_footer_length(t).map_err(|e| fail(path, e))?;
    if flen as u64 + 10 > len {
        return Err(fail(path, "the footer is longer than the file"));
    }
    let fb = read_at(file, len - 10 - flen as u64, flen, path)?;
    let footer = arrow_ipc::root_as_footer(&fb).map_err(|e| fail(path, format!("{e:?}")))?;
    let schema = footer
        .schema()
        .ok_or_else(|| fail(path, "the footer has no schema"))
        .and_then(|s| arrow_ipc::convert::try_fb_to_schema(s).map_err(|e| fail(path, e)))?;
    let blocks = footer
        .recordBatches()
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    let dicts = footer
        .dictionaries()
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    Ok((schema, footer.version(), blocks, dicts))
}

/// The schema and the blocks of an IPC stream, found by reading each message's metadata and skipping
/// its body.
fn scan_stream(file: &mut File, len: u64, path: &Path) -> Result<Ipc> {
    let mut pos = 0u64;
    let mut schema = None;
    let mut version = arrow_ipc::MetadataVersion::V5;
    let (mut blocks, mut dicts) = (Vec::new(), Vec::new());
    while pos + 4 <= len {
        let head = read_at(file, pos, 4, path)?;
        let (prefix, meta_len) = if head == [0xFF; 4] {
            if pos + 8 > len {
                break;
            }
            let l = read_at(file, pos + 4, 4, path)?;
            (8u64, i32::from_le_bytes([l[0], l[1], l[2], l[3]]))
        } else {
            (
                4u64,
                i32::from_le_bytes([head[0], head[1], head[2], head[3]]),
            )
        };
        if meta_len <= 0 {
            break;
        }
        let meta = read_at(file, pos + prefix, meta_len as usize, path)?;
        let msg = arrow_ipc::root_as_message(&meta).map_err(|e| {
            fail(
                path,
                format!("the message at byte {pos} is not Arrow IPC ({e:?})"),
            )
        })?;
        let body = msg.bodyLength().max(0) as u64;
        let block = arrow_ipc::Block::new(pos as i64, (prefix as i32) + meta_len, body as i64);
        match msg.header_type() {
            arrow_ipc::MessageHeader::Schema => {
                let s = msg
                    .header_as_schema()
                    .ok_or_else(|| fail(path, "the schema message is malformed"))?;
                schema = Some(arrow_ipc::convert::try_fb_to_schema(s).map_err(|e| fail(path, e))?);
                version = msg.version();
            }
            arrow_ipc::MessageHeader::RecordBatch => blocks.push(block),
            arrow_ipc::MessageHeader::DictionaryBatch => dicts.push(block),
            _ => {}
        }
        pos += prefix + meta_len as u64 + body;
        if pos > len {
            return Err(Error::format(
                path,
                format!("a message ends at byte {pos}, past the end of the file ({len} bytes): it is truncated"),
                "write the file again",
            ));
        }
    }
    let schema = schema.ok_or_else(|| fail(path, "no Arrow IPC schema message was found"))?;
    Ok((schema, version, blocks, dicts))
}

impl RowSource for ColumnRows {
    fn rows(&self) -> usize {
        *self.starts.last().unwrap()
    }
    fn cols(&self) -> usize {
        self.d
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn elem(&self) -> Elem {
        self.elem
    }
    fn read(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let mut v = vec![0.0f64; count * self.d];
        self.read_f64(start, count, &mut v)?;
        out[..count * self.d]
            .iter_mut()
            .zip(&v)
            .for_each(|(o, &x)| *o = x as f32);
        Ok(())
    }
    fn read_f64(&self, start: usize, count: usize, out: &mut [f64]) -> Result<()> {
        let d = self.d;
        let mut c = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        while done < count {
            let r = start + done;
            if r >= c.buf_start && r < c.buf_start + c.buf_rows {
                let take = (count - done).min(c.buf_start + c.buf_rows - r);
                let at = (r - c.buf_start) * d;
                out[done * d..(done + take) * d].copy_from_slice(&c.buf[at..at + take * d]);
                done += take;
                continue;
            }
            let u = self.unit_of(r);
            if c.unit != u || c.batches.is_none() || r < c.buf_start {
                c.batches = Some(self.open_unit(u)?);
                c.unit = u;
                c.buf_start = self.starts[u];
                c.buf_rows = 0;
                c.buf.clear();
                continue;
            }
            let next = c.batches.as_mut().and_then(|b| b.next());
            let first = c.buf_start + c.buf_rows;
            let batch = match next {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(fail(&self.path, e)),
                None => {
                    return Err(fail(
                        &self.path,
                        format!("its metadata promised rows up to {} in this part, but the data ended at row {first}", self.starts[u + 1]),
                    ))
                }
            };
            let mut buf = std::mem::take(&mut c.buf);
            buf.clear();
            let rows = batch_rows(&batch, &self.layout, d, first, &mut buf).map_err(|e| {
                Error::data(
                    self.name.clone(),
                    e,
                    "write every row as a vector of the same length, without nulls",
                )
            })?;
            c.buf = buf;
            c.buf_start = first;
            c.buf_rows = rows;
            if rows == 0 {
                continue;
            }
        }
        super::source::check_finite_rows(&self.name, start, d, &out[..count * d])
    }
}

/// Whether a path names a parquet or Arrow IPC file (`.parquet`; `.arrow`, `.feather`, `.ipc`).
pub fn is_columnar(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        matches!(
            e.to_string_lossy().to_ascii_lowercase().as_str(),
            "parquet" | "arrow" | "feather" | "ipc"
        )
    })
}

/// Opens a parquet or Arrow IPC file by its extension.
pub fn open(path: &Path, key: Option<&str>) -> Result<ColumnRows> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "parquet" {
        ColumnRows::open_parquet(path, key)
    } else {
        ColumnRows::open_ipc(path, key)
    }
}

/// Whether a type is an integer, or lists (of lists) of integers.
fn integer_leaf(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            integer_leaf(f.data_type())
        }
        t => t.is_integer(),
    }
}

/// The values that the lists of a list array hold, in order (None for an array that is not a list).
fn list_values(a: &dyn Array) -> Option<ArrayRef> {
    Some(match a.data_type() {
        DataType::FixedSizeList(_, n) => {
            let l = a.as_fixed_size_list();
            l.values()
                .slice(l.value_offset_at(0), l.len() * *n as usize)
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            l.values()
                .slice(o[0] as usize, (o[l.len()] - o[0]) as usize)
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let o = l.value_offsets();
            l.values()
                .slice(o[0] as usize, (o[l.len()] - o[0]) as usize)
        }
        _ => return None,
    })
}

/// Appends the integers of an array, lists flattened in order, as token ids.
fn push_ids(a: &dyn Array, out: &mut Vec<u32>) -> std::result::Result<(), String> {
    use arrow_array::types::*;
    if a.null_count() > 0 {
        return Err(format!("{} null values", a.null_count()));
    }
    macro_rules! ids {
        ($t:ty) => {
            for &v in a.as_primitive::<$t>().values().iter() {
                out.push(u32::try_from(v).map_err(|_| {
                    format!("holds {v}, which is not a token id (an integer from 0 to 4294967295)")
                })?);
            }
        };
    }
    if let Some(values) = list_values(a) {
        return push_ids(&*values, out);
    }
    match a.data_type() {
        DataType::Int8 => ids!(Int8Type),
        DataType::Int16 => ids!(Int16Type),
        DataType::Int32 => ids!(Int32Type),
        DataType::Int64 => ids!(Int64Type),
        DataType::UInt8 => ids!(UInt8Type),
        DataType::UInt16 => ids!(UInt16Type),
        DataType::UInt32 => ids!(UInt32Type),
        DataType::UInt64 => ids!(UInt64Type),
        t => return Err(format!("values of type {t}, not integers")),
    }
    Ok(())
}

/// The integer column `name` of a parquet or Arrow IPC file, in row order with lists flattened (a Hugging
/// Face `Sequence(int32)` of token ids per sequence gives one id per token, in the order `Array2D` states
/// read as rows); None when the file has no integer column of that name.
pub fn integer_column(path: &Path, name: &str) -> Result<Option<Vec<u32>>> {
    let find = |schema: &Schema| {
        schema
            .fields()
            .iter()
            .position(|f| f.name() == name && integer_leaf(f.data_type()))
    };
    let reader = if is_parquet(path) {
        let meta = parquet_meta(path)?;
        let Some(i) = find(meta.schema()) else {
            return Ok(None);
        };
        let descr = meta.metadata().file_metadata().schema_descr();
        let mask = parquet::arrow::ProjectionMask::roots(descr, [i]);
        Reader::Parquet {
            meta,
            mask,
            batch: 4096,
        }
    } else {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let (schema, version, blocks, dictionaries) = ipc_messages(&mut file, path)?;
        let Some(i) = find(&schema) else {
            return Ok(None);
        };
        Reader::Ipc {
            schema: Arc::new(schema),
            version,
            projection: vec![i],
            dictionaries,
            blocks,
        }
    };
    let mut out = Vec::new();
    for u in 0..reader.units() {
        for b in reader.open_unit(path, u)? {
            let b = b.map_err(|e| fail(path, e))?;
            push_ids(&**b.column(0), &mut out).map_err(|e| {
                Error::format(
                    path,
                    format!("column '{name}' {e}"),
                    "store token ids as non-negative integers without nulls",
                )
            })?;
        }
    }
    Ok(Some(out))
}

fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// The columns that hold vectors (lists of floats, or lists of them).
pub fn keys(path: &Path) -> Result<Vec<String>> {
    let schema: SchemaRef = if is_parquet(path) {
        parquet_meta(path)?.schema().clone()
    } else {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        Arc::new(ipc_messages(&mut file, path)?.0)
    };
    Ok(schema
        .fields()
        .iter()
        .filter(|f| list_shape(f.data_type()).is_some())
        .map(|f| f.name().clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Float64Builder, ListBuilder};
    use arrow_array::{Float64Array, Int32Array, StringArray};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("repscope-col-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn value(i: usize, j: usize) -> f32 {
        (i * 10 + j) as f32 * 0.5 - 3.0
    }

    fn fixed_list(rows: std::ops::Range<usize>, d: usize) -> ArrayRef {
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), d as i32);
        for i in rows {
            for j in 0..d {
                b.values().append_value(value(i, j));
            }
            b.append(true);
        }
        Arc::new(b.finish())
    }

    fn all_rows(src: &dyn RowSource) -> Vec<f64> {
        let mut v = vec![0.0; src.rows() * src.cols()];
        src.read_f64(0, src.rows(), &mut v).unwrap();
        v
    }

    fn expected(n: usize, d: usize) -> Vec<f64> {
        (0..n)
            .flat_map(|i| (0..d).map(move |j| value(i, j) as f64))
            .collect()
    }

    fn write_parquet(path: &Path, batches: &[RecordBatch], group: usize) {
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(group))
            .build();
        let f = File::create(path).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(f, batches[0].schema(), Some(props)).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }

    #[test]
    fn parquet_vectors_read_across_row_groups_in_any_order() {
        let (n, d) = (1000, 5);
        let ids: ArrayRef = Arc::new(Int32Array::from_iter_values(0..n as i32));
        let b =
            RecordBatch::try_from_iter(vec![("token", ids), ("x", fixed_list(0..n, d))]).unwrap();
        let p = dir("pq").join("a.parquet");
        write_parquet(&p, &[b], 300);
        let src = open(&p, None).unwrap();
        assert_eq!((src.rows(), src.cols(), src.elem()), (n, d, Elem::F32));
        let want = expected(n, d);
        assert_eq!(all_rows(&src), want);
        // Backwards, across a row-group boundary, and a single row.
        for (s, c) in [(850, 100), (290, 20), (0, 1), (599, 2), (999, 1)] {
            let mut v = vec![0.0; c * d];
            src.read_f64(s, c, &mut v).unwrap();
            assert_eq!(v, want[s * d..(s + c) * d], "rows {s}..{}", s + c);
        }
        // The integer column is not a vector column.
        let e = open(&p, Some("token")).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("Int32") && e.contains("a.parquet"), "{e}");
        let e = open(&p, Some("nope")).map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains("no column 'nope'") && e.contains("token, x"),
            "{e}"
        );
    }

    #[test]
    fn parquet_variable_lists_and_one_column_per_dimension() {
        let dd = dir("pq2");
        let (n, d) = (257, 3);
        let mut b = ListBuilder::new(Float64Builder::new());
        for i in 0..n {
            for j in 0..d {
                b.values().append_value(value(i, j) as f64);
            }
            b.append(true);
        }
        let x: ArrayRef = Arc::new(b.finish());
        let p = dd.join("l.parquet");
        write_parquet(
            &p,
            &[RecordBatch::try_from_iter(vec![("x", x)]).unwrap()],
            100,
        );
        let src = open(&p, None).unwrap();
        assert_eq!((src.rows(), src.cols(), src.elem()), (n, d, Elem::F64));
        assert_eq!(all_rows(&src), expected(n, d));
        // One float64 column per dimension, and a text column beside them.
        let mut cols: Vec<(String, ArrayRef)> = (0..d)
            .map(|j| {
                let c: ArrayRef = Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| value(i, j) as f64),
                ));
                (format!("f{j}"), c)
            })
            .collect();
        let text: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|i| i.to_string())));
        cols.insert(1, ("text".into(), text));
        let p2 = dd.join("c.parquet");
        write_parquet(&p2, &[RecordBatch::try_from_iter(cols).unwrap()], 64);
        let src = open(&p2, None).unwrap();
        assert_eq!((src.rows(), src.cols()), (n, d));
        assert_eq!(all_rows(&src), expected(n, d));
        // Ragged lists are named with their row.
        let mut b = ListBuilder::new(Float32Builder::new());
        for i in 0..50 {
            for j in 0..(if i == 37 { 2 } else { 3 }) {
                b.values().append_value(value(i, j));
            }
            b.append(true);
        }
        let x: ArrayRef = Arc::new(b.finish());
        let p3 = dd.join("r.parquet");
        write_parquet(
            &p3,
            &[RecordBatch::try_from_iter(vec![("x", x)]).unwrap()],
            1000,
        );
        let e = open(&p3, None)
            .and_then(|s| {
                let mut v = vec![0.0; 150];
                s.read_f64(0, 50, &mut v)
            })
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r.parquet") && (e.contains("ragged") || e.contains("multiple")),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dd);
    }

    /// Sequences of `ctx` token vectors per record, as Hugging Face's Array2D(ctx, d) stores them.
    fn sequences(records: std::ops::Range<usize>, ctx: usize, d: usize) -> ArrayRef {
        let inner = FixedSizeListBuilder::new(Float32Builder::new(), d as i32);
        let mut b = ListBuilder::new(inner);
        for r in records {
            for t in 0..ctx {
                let i = r * ctx + t;
                for j in 0..d {
                    b.values().values().append_value(value(i, j));
                }
                b.values().append(true);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    }

    #[test]
    fn arrow_streams_and_files_of_sequences_read_as_tokens() {
        let dd = dir("ipc");
        let (ctx, d) = (4, 3);
        let batches: Vec<RecordBatch> = [(0, 7), (7, 12), (12, 30)]
            .iter()
            .map(|&(a, b)| {
                let ids: ArrayRef = Arc::new(Int32Array::from_iter_values(a as i32..b as i32));
                RecordBatch::try_from_iter(vec![("id", ids), ("acts", sequences(a..b, ctx, d))])
                    .unwrap()
            })
            .collect();
        let schema = batches[0].schema();
        let sp = dd.join("data-00000-of-00001.arrow");
        let mut w =
            arrow_ipc::writer::StreamWriter::try_new(File::create(&sp).unwrap(), &schema).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        let fp = dd.join("f.arrow");
        let mut w =
            arrow_ipc::writer::FileWriter::try_new(File::create(&fp).unwrap(), &schema).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        let n = 30 * ctx;
        let want = expected(n, d);
        for p in [&sp, &fp] {
            let src = open(p, None).unwrap();
            assert_eq!((src.rows(), src.cols()), (n, d), "{}", p.display());
            assert_eq!(all_rows(&src), want);
            let mut v = vec![0.0; 10 * d];
            src.read_f64(25, 10, &mut v).unwrap();
            assert_eq!(v, want[25 * d..35 * d]);
            src.read_f64(3, 10, &mut v).unwrap();
            assert_eq!(v, want[3 * d..13 * d]);
        }
        // A stream cut inside a batch is named as truncated.
        let bytes = std::fs::read(&sp).unwrap();
        let cut = dd.join("cut.arrow");
        std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
        let e = open(&cut, None).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("cut.arrow") && e.contains("truncated"), "{e}");
        let _ = std::fs::remove_dir_all(&dd);
    }
}
