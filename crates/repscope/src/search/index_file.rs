//! The HNSW index file: a versioned header, the index's arrays, and a CRC-32 of everything before it.
//!
//! Layout (all little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `RSCPHNSW` |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 4 | reserved (0) |
//! | 8 | total file length in bytes, checksum included |
//! | 4 | metric (0 euclidean, 1 cosine) |
//! | 4 | dim |
//! | 8 | n |
//! | 4, 4, 4 | M, M0 (layer-0 capacity), ef_construction |
//! | 4, 4 | max level, entry point (internal id) |
//! | 8 | seed |
//! | 8 | length of the upper-layer link array, in u32 |
//! | n × 4 | row number of each internal id |
//! | n × 1, padded to 4 | level of each internal id |
//! | n × dim × 4 | rows in insertion order (f32, normalised for cosine) |
//! | n × (M0 + 1) × 4 | layer-0 links: a count, then the neighbours |
//! | upper × 4 | upper-layer links, node after node, layer after layer |
//! | 4 | CRC-32 (IEEE) of all bytes before it |
//!
//! The reader checks, in this order, the magic, the version, the length (a truncated file says so), the
//! checksum, then every count and link against the header, so a damaged file is an error and never a
//! panic or an out-of-range read during search.
use std::path::Path;

use super::hnsw::{Hnsw, MAX_M};
use crate::error::{Error, Result};
use crate::neighbors::Metric;

/// Identifies a repscope HNSW index file.
pub const MAGIC: &[u8; 8] = b"RSCPHNSW";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 4 + 4 + 8 + 4 + 4 + 4 + 4 + 4 + 8 + 8;

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

impl Hnsw {
    /// The index as the bytes of an index file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.len();
        let lvl_pad = (4 - n % 4) % 4;
        let total = HEADER_LEN
            + n * 4
            + n
            + lvl_pad
            + self.vectors.len() * 4
            + self.links0.len() * 4
            + self.upper.len() * 4
            + 4;
        let mut b = Vec::with_capacity(total);
        b.extend_from_slice(MAGIC);
        put_u32(&mut b, FORMAT_VERSION);
        put_u32(&mut b, 0);
        put_u64(&mut b, total as u64);
        put_u32(
            &mut b,
            match self.metric {
                Metric::Euclidean => 0,
                Metric::Cosine => 1,
            },
        );
        put_u32(&mut b, self.dim as u32);
        put_u64(&mut b, n as u64);
        put_u32(&mut b, self.m as u32);
        put_u32(&mut b, self.m0 as u32);
        put_u32(&mut b, self.ef_construction as u32);
        put_u32(&mut b, self.max_level as u32);
        put_u32(&mut b, self.entry);
        put_u64(&mut b, self.seed);
        put_u64(&mut b, self.upper.len() as u64);
        debug_assert_eq!(b.len(), HEADER_LEN);
        for &i in &self.ids {
            put_u32(&mut b, i);
        }
        b.extend_from_slice(&self.levels);
        b.extend(std::iter::repeat_n(0u8, lvl_pad));
        for &v in self.stored_values().iter() {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for &v in &self.links0 {
            put_u32(&mut b, v);
        }
        for &v in &self.upper {
            put_u32(&mut b, v);
        }
        let crc = crc32fast::hash(&b);
        put_u32(&mut b, crc);
        debug_assert_eq!(b.len(), total);
        b
    }

    /// Writes the index file.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::data::write_atomic(path, &self.to_bytes())
    }

    /// Reads an index file written by [`Hnsw::save`].
    pub fn load(path: &Path) -> Result<Hnsw> {
        crate::data::check_regular(path)?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Hnsw::from_bytes(&bytes, path)
    }

    /// Parses and validates the bytes of an index file; `path` names it in messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Hnsw> {
        let rebuild = "build the index again with `repscope index build` (or copy the file again)";
        let magic_ok = bytes.len() >= 8 && &bytes[..8] == MAGIC;
        let magic_prefix = bytes.len() < 8 && MAGIC.starts_with(bytes);
        if !magic_ok && !magic_prefix {
            return Err(Error::format(
                path,
                "not a repscope index file (its first bytes are not the magic 'RSCPHNSW')",
                "pass a file written by `repscope index build`",
            ));
        }
        if bytes.len() < 12 {
            return Err(Error::format(
                path,
                format!(
                    "the file is truncated: {} bytes, too short for an index header",
                    bytes.len()
                ),
                rebuild,
            ));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != FORMAT_VERSION {
            return Err(Error::format(
                path,
                format!(
                    "index file format version {version}, but this repscope ({}) reads version {FORMAT_VERSION}",
                    crate::VERSION
                ),
                "rebuild the index with this version of repscope (`repscope index build`)",
            ));
        }
        if bytes.len() < HEADER_LEN + 4 {
            return Err(Error::format(
                path,
                format!(
                    "the file is truncated: {} bytes, too short for an index header",
                    bytes.len()
                ),
                rebuild,
            ));
        }
        let mut r = Reader {
            b: bytes,
            pos: 16,
            path,
        };
        let total = r.u64()?;
        if total != bytes.len() as u64 {
            let problem = if (bytes.len() as u64) < total {
                format!(
                    "the file is truncated: the header promises {total} bytes but the file has {}",
                    bytes.len()
                )
            } else {
                format!(
                    "the header promises {total} bytes but the file has {}: data was appended or the header is damaged",
                    bytes.len()
                )
            };
            return Err(Error::format(path, problem, rebuild));
        }
        let body = &bytes[..bytes.len() - 4];
        let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap_or([0; 4]));
        let actual = crc32fast::hash(body);
        if stored != actual {
            return Err(Error::format(
                path,
                format!("checksum mismatch (stored {stored:08x}, computed {actual:08x}): the file is corrupt"),
                rebuild,
            ));
        }
        let metric = match r.u32()? {
            0 => Metric::Euclidean,
            1 => Metric::Cosine,
            x => return Err(r.bad(format!("unknown metric code {x}"))),
        };
        let dim = r.u32()? as usize;
        let n = r.u64()?;
        let m = r.u32()? as usize;
        let m0 = r.u32()? as usize;
        let ef_construction = r.u32()? as usize;
        let max_level = r.u32()? as usize;
        let entry = r.u32()?;
        let seed = r.u64()?;
        let upper_len = r.u64()?;
        if n == 0 || n >= u32::MAX as u64 || dim == 0 {
            return Err(r.bad(format!("impossible shape {n} × {dim}")));
        }
        let n = n as usize;
        if !(2..=MAX_M).contains(&m) || m0 < m || m0 > 2 * MAX_M {
            return Err(r.bad(format!("impossible M = {m}, M0 = {m0}")));
        }
        if entry as usize >= n || max_level > 63 {
            return Err(r.bad(format!(
                "entry point {entry} / max level {max_level} out of range"
            )));
        }
        let ids = r.u32s(n)?;
        let levels = r.bytes(n)?.to_vec();
        r.bytes((4 - n % 4) % 4)?;
        let vlen = n
            .checked_mul(dim)
            .ok_or_else(|| r.bad("the shape overflows".into()))?;
        let vectors = r.f32s(vlen)?;
        let l0len = n
            .checked_mul(m0 + 1)
            .ok_or_else(|| r.bad("the shape overflows".into()))?;
        let links0 = r.u32s(l0len)?;
        let upper_len =
            usize::try_from(upper_len).map_err(|_| r.bad("the upper layers overflow".into()))?;
        let upper = r.u32s(upper_len)?;
        if r.pos != body.len() {
            return Err(r.bad(format!(
                "{} bytes left over after the arrays",
                body.len() - r.pos
            )));
        }
        // Structure: ids a permutation, levels consistent, every count and link in range.
        let mut seen = vec![false; n];
        for &i in &ids {
            if i as usize >= n || std::mem::replace(&mut seen[i as usize], true) {
                return Err(r.bad(format!("row number {i} out of range or repeated")));
            }
        }
        let mut want_upper = 0usize;
        for &l in &levels {
            if l as usize > max_level {
                return Err(r.bad(format!("a level {l} above the maximum {max_level}")));
            }
            want_upper += l as usize * (m + 1);
        }
        if want_upper != upper.len() || levels[entry as usize] as usize != max_level {
            return Err(r.bad("the levels do not match the upper layers".into()));
        }
        let check_block = |slots: &[u32], cap: usize| -> bool {
            slots.chunks_exact(cap + 1).all(|s| {
                let c = s[0] as usize;
                c <= cap && s[1..1 + c].iter().all(|&x| (x as usize) < n)
            })
        };
        if !check_block(&links0, m0) || !check_block(&upper, m) {
            return Err(
                r.bad("a neighbour list is over capacity or points outside the index".into())
            );
        }
        // A link on layer l must point to a node that lives on layer l (level ≥ l): the search reads that
        // node's list on the same layer next.
        let mut off = 0usize;
        for &l in &levels {
            for layer in 1..=l as usize {
                let s = &upper[off..off + m + 1];
                let c = s[0] as usize;
                if s[1..1 + c]
                    .iter()
                    .any(|&x| (levels[x as usize] as usize) < layer)
                {
                    return Err(r.bad(format!(
                        "a link on layer {layer} points to a node below that layer"
                    )));
                }
                off += m + 1;
            }
        }
        Ok(Hnsw::from_parts(
            metric,
            dim,
            m,
            m0,
            ef_construction,
            seed,
            vectors,
            ids,
            levels,
            links0,
            upper,
            entry,
            max_level,
        ))
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn bad(&self, problem: String) -> Error {
        Error::format(
            self.path,
            format!("inconsistent index file: {problem}"),
            "build the index again with `repscope index build`",
        )
    }
    fn bytes(&mut self, len: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.b.len().saturating_sub(4))
            .ok_or_else(|| self.bad("the arrays run past the end of the file".into()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.bytes(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let s = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn u32s(&mut self, len: usize) -> Result<Vec<u32>> {
        let nb = len
            .checked_mul(4)
            .ok_or_else(|| self.bad("an array length overflows".into()))?;
        let s = self.bytes(nb)?;
        Ok(s.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn f32s(&mut self, len: usize) -> Result<Vec<f32>> {
        let nb = len
            .checked_mul(4)
            .ok_or_else(|| self.bad("an array length overflows".into()))?;
        let s = self.bytes(nb)?;
        Ok(s.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}
