//! Exact duplicate rows of a source: one 64-bit hash per row, taken in the pass that reads the rows for
//! something else (the moments, the activation statistics) or by [`hash_source`], then, only when two rows
//! share a hash, one verification pass that compares their values. Equal rows always share a hash, so a
//! source whose hashes are all different has no duplicates, and that needs no second pass; rows that share
//! a hash are grouped only when every value is equal, so a hash collision never merges two rows.
//!
//! Values are compared as numbers (−0.0 equals 0.0) in the source's own precision, widened to f64: the hash
//! of an f32 row is the hash of its f64 widening, so in-memory matrices and streamed sources agree.
//!
//! Memory: 8 bytes per row for the hashes, a sixteenth of that while the repeated hashes are found, and a
//! table of those. The verification pass reads only the rows whose hash repeats, and holds one row of
//! values for each group it has open, at most [`OPEN_BUDGET`] bytes; the groups that did not fit are
//! verified in further passes.
use rayon::prelude::*;
use serde::Serialize;

use crate::data::source::{self, RowSource};
use crate::error::Result;
use crate::progress::Progress;

/// The largest groups listed in a [`Duplicates`] summary.
pub const LARGEST: usize = 10;

/// Bytes of row values a verification pass holds for the groups it has open.
pub const OPEN_BUDGET: usize = 256 << 20;

const K: u64 = 0x9e37_79b9_7f4a_7c15;
const SEEDS: [u64; 4] = [
    0xcbf2_9ce4_8422_2325,
    0x8422_2325_cbf2_9ce4,
    0x2545_f491_4f6c_dd1d,
    0x5851_f42d_4c95_7f2d,
];

#[inline(always)]
fn mix(h: u64, v: f64) -> u64 {
    // +0.0 makes −0.0 and 0.0 the same value.
    (h.rotate_left(23) ^ (v + 0.0).to_bits()).wrapping_mul(K)
}

/// Four interleaved lanes (independent multiply chains, so the hash runs at the multiplier's throughput),
/// folded and finished with splitmix64's mixer.
#[inline(always)]
fn hash_values<T: Copy>(row: &[T], to_f64: impl Fn(T) -> f64) -> u64 {
    let mut h = SEEDS;
    let mut it = row.chunks_exact(4);
    for c in &mut it {
        for l in 0..4 {
            h[l] = mix(h[l], to_f64(c[l]));
        }
    }
    for (l, &v) in it.remainder().iter().enumerate() {
        h[l] = mix(h[l], to_f64(v));
    }
    let mut x = h[0] ^ h[1].rotate_left(16) ^ h[2].rotate_left(32) ^ h[3].rotate_left(48);
    x ^= row.len() as u64;
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hash of a row of f64 values.
pub fn row_hash(row: &[f64]) -> u64 {
    hash_values(row, |v| v)
}

/// The hash of a row of f32 values: the same as [`row_hash`] of its f64 widening.
pub fn row_hash_f32(row: &[f32]) -> u64 {
    hash_values(row, |v| v as f64)
}

/// The hashes of the rows of a row-major block of width `d`, appended to `out`.
pub fn hash_block(block: &[f64], d: usize, out: &mut Vec<u64>) {
    out.extend(block.chunks_exact(d.max(1)).map(row_hash));
}

/// Rows per task when a chunk is hashed on its own.
const HASH_BLOCK_ROWS: usize = 256;

/// One pass over `src` for its row hashes alone (when no other pass reads the rows).
pub fn hash_source(src: &dyn RowSource, progress: &dyn Progress) -> Result<Vec<u64>> {
    let d = src.cols().max(1);
    let mut hashes = Vec::with_capacity(src.rows());
    progress.stage("hashing the rows", src.rows() as u64);
    source::for_each_chunk(src, source::chunk_rows(src), progress, |_, _, x| {
        let parts: Vec<Vec<u64>> = x
            .par_chunks(HASH_BLOCK_ROWS * d)
            .map(|b| {
                let mut h = Vec::with_capacity(HASH_BLOCK_ROWS);
                hash_block(b, d, &mut h);
                h
            })
            .collect();
        hashes.extend(parts.into_iter().flatten());
        Ok(())
    })?;
    progress.finish_stage();
    Ok(hashes)
}

/// A group of equal rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DuplicateGroup {
    /// The first row of the group (0-based, in the source's row order).
    pub first_row: usize,
    /// How many rows hold these values.
    pub rows: u64,
}

/// The exact duplicate rows of a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Duplicates {
    pub rows: usize,
    /// Rows with different values.
    pub distinct: usize,
    /// Rows that repeat an earlier row: rows − distinct.
    pub merged: usize,
    /// Distinct values held by more than one row.
    pub groups: usize,
    /// The largest group's size (1 when there are no duplicates).
    pub max_multiplicity: u64,
    /// The [`LARGEST`] largest groups, largest first (ties: the earlier first row first).
    pub largest: Vec<DuplicateGroup>,
    /// Distinct rows whose hash another distinct row shares (compared and told apart).
    pub hash_collisions: usize,
    /// Passes that compared values (0 when no two rows share a hash).
    pub verification_passes: usize,
    /// How duplicates were found (read back from a document as "").
    #[serde(skip_deserializing)]
    pub method: &'static str,
}

impl Duplicates {
    pub fn has_duplicates(&self) -> bool {
        self.merged > 0
    }
}

/// What [`find`] says about every row: the first row with the same values (the row itself when it is the
/// first).
pub type FirstEqual = Vec<u32>;

/// One group being verified: the distinct values seen so far under one hash.
struct Open {
    /// Rows of this hash not yet seen.
    remaining: u32,
    /// (first row, rows, values) of each distinct value.
    reps: Vec<(usize, u64, Vec<f64>)>,
}

enum State {
    /// Not yet verified.
    Pending,
    /// Left for a later pass: its first row came when the open groups filled the budget.
    Deferred,
    Open(Open),
    Done,
}

/// Partitions of the hash space in which repeated hashes are looked for, so that the sorted copy is a
/// sixteenth of the hashes.
const PARTS: u32 = 16;

/// The hashes that more than one row carries, ascending, with how many rows carry each.
fn repeated(hashes: &[u64]) -> (Vec<u64>, Vec<u32>) {
    let (mut keys, mut counts) = (Vec::new(), Vec::new());
    for part in 0..PARTS as u64 {
        let mut h: Vec<u64> = hashes
            .par_iter()
            .copied()
            .filter(|&h| h >> 60 == part)
            .collect();
        h.par_sort_unstable();
        let mut s = 0;
        while s < h.len() {
            let e = s + h[s..].partition_point(|&v| v == h[s]);
            if e - s > 1 {
                keys.push(h[s]);
                counts.push((e - s) as u32);
            }
            s = e;
        }
    }
    (keys, counts)
}

/// Rows between two rows to compare that are read through rather than skipped.
const GAP: usize = 16;

/// The duplicate rows of `src` from its row hashes (`hashes[i]` the hash of row i, by [`row_hash`]):
/// hashes that repeat are verified by comparing the values of the rows that carry them, which are the only
/// rows read again; with `first_equal`, also the first equal row of every row (rows must then number
/// below 2³²).
pub fn find(
    src: &dyn RowSource,
    hashes: Vec<u64>,
    first_equal: bool,
    progress: &dyn Progress,
) -> Result<(Duplicates, Option<FirstEqual>)> {
    verify(src, hashes, first_equal, progress, OPEN_BUDGET)
}

/// [`find`] with the open groups' budget given.
fn verify(
    src: &dyn RowSource,
    hashes: Vec<u64>,
    first_equal: bool,
    progress: &dyn Progress,
    budget: usize,
) -> Result<(Duplicates, Option<FirstEqual>)> {
    let (n, d) = (src.rows(), src.cols());
    assert_eq!(hashes.len(), n, "one hash per row");
    let (keys, counts) = repeated(&hashes);
    let mut states: Vec<State> = keys.iter().map(|_| State::Pending).collect();
    let mut first = first_equal.then(|| (0..n as u32).collect::<Vec<u32>>());
    // (first row, rows) of every distinct value under a repeated hash; and the collisions.
    let mut found: Vec<(usize, u64)> = Vec::new();
    let mut collisions = 0usize;
    let mut passes = 0usize;
    let window = source::chunk_rows(src).max(GAP);
    let mut buf: Vec<f64> = Vec::new();
    while states.iter().any(|s| matches!(s, State::Pending)) {
        passes += 1;
        let mut open_bytes = 0usize;
        progress.stage("comparing rows that share a hash", n as u64);
        let mut start = 0;
        while start < n {
            let end = (start + window).min(n);
            // The key of each row of the window whose hash repeats and is still to be verified.
            let key: Vec<u32> = hashes[start..end]
                .par_iter()
                .map(|h| match keys.binary_search(h) {
                    Ok(k) if matches!(states[k], State::Pending | State::Open(_)) => k as u32,
                    _ => u32::MAX,
                })
                .collect();
            let wanted: Vec<usize> = (0..end - start).filter(|&r| key[r] != u32::MAX).collect();
            let mut w = 0;
            while w < wanted.len() {
                // A run of wanted rows, read through gaps of at most GAP rows.
                let mut e = w + 1;
                while e < wanted.len() && wanted[e] - wanted[e - 1] <= GAP {
                    e += 1;
                }
                let (a, b) = (start + wanted[w], start + wanted[e - 1] + 1);
                buf.resize((b - a) * d, 0.0);
                src.read_f64(a, b - a, &mut buf)?;
                for &r in &wanted[w..e] {
                    let i = start + r;
                    let row = &buf[(i - a) * d..(i - a + 1) * d];
                    let state = &mut states[key[r] as usize];
                    match state {
                        State::Done | State::Deferred => continue,
                        State::Pending => {
                            if open_bytes > 0 && open_bytes + 8 * d > budget {
                                *state = State::Deferred;
                                continue;
                            }
                            open_bytes += 8 * d;
                            *state = State::Open(Open {
                                remaining: counts[key[r] as usize],
                                reps: vec![(i, 0, row.to_vec())],
                            });
                        }
                        State::Open(_) => {}
                    }
                    let State::Open(g) = state else {
                        unreachable!("opened above")
                    };
                    let at = match g.reps.iter().position(|(_, _, v)| v.as_slice() == row) {
                        Some(p) => p,
                        None => {
                            // A collision: values that hash alike but differ.
                            open_bytes += 8 * d;
                            g.reps.push((i, 0, row.to_vec()));
                            g.reps.len() - 1
                        }
                    };
                    g.reps[at].1 += 1;
                    if let Some(f) = first.as_mut() {
                        f[i] = g.reps[at].0 as u32;
                    }
                    g.remaining -= 1;
                    if g.remaining == 0 {
                        open_bytes -= 8 * d * g.reps.len();
                        if g.reps.len() > 1 {
                            collisions += g.reps.len();
                        }
                        found.extend(g.reps.iter().map(|&(f, c, _)| (f, c)));
                        *state = State::Done;
                    }
                }
                w = e;
            }
            progress.advance((end - start) as u64);
            start = end;
        }
        progress.finish_stage();
        for s in states.iter_mut() {
            if matches!(s, State::Deferred) {
                *s = State::Pending;
            }
        }
    }
    let mut groups: Vec<(usize, u64)> = found.into_iter().filter(|g| g.1 > 1).collect();
    groups.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let merged: u64 = groups.iter().map(|g| g.1 - 1).sum();
    let dup = Duplicates {
        rows: n,
        distinct: n - merged as usize,
        merged: merged as usize,
        groups: groups.len(),
        max_multiplicity: groups.first().map_or(1, |g| g.1),
        largest: groups
            .iter()
            .take(LARGEST)
            .map(|&(first_row, rows)| DuplicateGroup { first_row, rows })
            .collect(),
        hash_collisions: collisions,
        verification_passes: passes,
        method: METHOD,
    };
    Ok((dup, first))
}

/// The rows whose hash another row shares, ascending: the only rows a verification needs to read.
pub fn repeated_rows(hashes: &[u64]) -> Vec<u64> {
    let (keys, _) = repeated(hashes);
    hashes
        .par_iter()
        .enumerate()
        .filter(|(_, h)| keys.binary_search(h).is_ok())
        .map(|(i, _)| i as u64)
        .collect()
}

/// [`find`]'s result over the rows `rows` (ascending global numbers) of a source of `n` rows, given as
/// found among those rows alone (`first`: each one's first equal row, numbered among them), in the global
/// numbering. No other row can equal another, since its hash is its own.
pub fn spread(
    found: Duplicates,
    first: FirstEqual,
    rows: &[u64],
    n: usize,
    first_equal: bool,
) -> (Duplicates, Option<FirstEqual>) {
    let global = first_equal.then(|| {
        let mut g: Vec<u32> = (0..n as u32).collect();
        for (i, &f) in first.iter().enumerate() {
            g[rows[i] as usize] = rows[f as usize] as u32;
        }
        g
    });
    let dup = Duplicates {
        rows: n,
        distinct: n - found.merged,
        largest: found
            .largest
            .iter()
            .map(|g| DuplicateGroup {
                first_row: rows[g.first_row] as usize,
                rows: g.rows,
            })
            .collect(),
        ..found
    };
    (dup, global)
}

/// [`find`]'s result for a source whose hashes are all different: no duplicates, nothing compared.
pub fn none(n: usize) -> Duplicates {
    Duplicates {
        rows: n,
        distinct: n,
        merged: 0,
        groups: 0,
        max_multiplicity: 1,
        largest: Vec::new(),
        hash_collisions: 0,
        verification_passes: 0,
        method: METHOD,
    }
}

const METHOD: &str = "a 64-bit hash of every row; rows that share a hash compared value by value";

/// The duplicate rows of `src` in a pass of their own (hashes) and, when two rows share a hash, one that
/// compares them.
pub fn duplicates(src: &dyn RowSource, progress: &dyn Progress) -> Result<Duplicates> {
    let hashes = hash_source(src, progress)?;
    Ok(find(src, hashes, false, progress)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Matrix;
    use crate::progress::Silent;

    #[test]
    fn widened_f32_rows_hash_alike_and_negative_zero_is_zero() {
        let a = [1.5f32, -0.0, 3.25, 7.0, 1e-30];
        let w: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        assert_eq!(row_hash_f32(&a), row_hash(&w));
        let mut z = w.clone();
        z[1] = 0.0;
        assert_eq!(row_hash(&z), row_hash(&w));
        z[4] = 1e-31;
        assert_ne!(row_hash(&z), row_hash(&w));
        // Order matters: a permutation is another row.
        assert_ne!(row_hash(&[1.0, 2.0]), row_hash(&[2.0, 1.0]));
    }

    /// Rows 0..n of width 3, with planted groups; brute force by sorting the rows as tuples.
    fn brute(rows: &[[f64; 3]]) -> (usize, Vec<(usize, u64)>) {
        let mut groups: Vec<(usize, u64)> = Vec::new();
        let mut seen: Vec<(usize, [f64; 3])> = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            match seen.iter().position(|(_, s)| s == r) {
                Some(p) => counts[p] += 1,
                None => {
                    seen.push((i, *r));
                    counts.push(1);
                }
            }
        }
        for (p, (i, _)) in seen.iter().enumerate() {
            if counts[p] > 1 {
                groups.push((*i, counts[p]));
            }
        }
        groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        (seen.len(), groups)
    }

    #[test]
    fn finds_planted_groups_like_brute_force() {
        let mut rows = Vec::new();
        for i in 0..5000usize {
            // Every 7th row repeats one of 40 values; the rest are distinct.
            let r = if i % 7 == 0 {
                let g = (i / 7) % 40;
                [g as f64, -(g as f64), 0.5]
            } else {
                [i as f64 + 0.25, (i * i) as f64, -1.0]
            };
            rows.push(r);
        }
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let m = Matrix::from_vec(rows.len(), 3, flat, "t").unwrap();
        let dup = duplicates(&m, &Silent).unwrap();
        let (distinct, groups) = brute(&rows);
        assert_eq!(dup.distinct, distinct);
        assert_eq!(dup.merged, rows.len() - distinct);
        assert_eq!(dup.groups, groups.len());
        assert_eq!(dup.max_multiplicity, groups[0].1);
        let listed: Vec<(usize, u64)> = dup.largest.iter().map(|g| (g.first_row, g.rows)).collect();
        assert_eq!(listed, groups[..LARGEST].to_vec());
        assert_eq!(dup.verification_passes, 1);
        assert_eq!(dup.hash_collisions, 0);
    }

    #[test]
    fn groups_beyond_the_budget_are_verified_in_later_passes() {
        // 30 pairs of equal rows far apart, and room for two open groups at a time.
        let d = 4;
        let mut flat = Vec::new();
        for i in 0..60 {
            let g = (i % 30) as f32;
            flat.extend([g, g + 0.5, -g, 1.0]);
        }
        let m = Matrix::from_vec(60, d, flat, "t").unwrap();
        let hashes = (0..60).map(|i| row_hash_f32(m.row(i))).collect();
        let (dup, first) = verify(&m, hashes, true, &Silent, 2 * 8 * d).unwrap();
        assert_eq!((dup.distinct, dup.merged, dup.groups), (30, 30, 30));
        assert_eq!(dup.verification_passes, 15);
        let first = first.unwrap();
        assert!((0..60).all(|i| first[i] as usize == i % 30));
    }

    #[test]
    fn distinct_rows_need_no_second_pass() {
        let flat: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5).collect();
        let m = Matrix::from_vec(1000, 3, flat, "t").unwrap();
        let dup = duplicates(&m, &Silent).unwrap();
        assert_eq!((dup.distinct, dup.merged, dup.groups), (1000, 0, 0));
        assert_eq!(dup.verification_passes, 0);
        assert_eq!(dup.max_multiplicity, 1);
    }

    #[test]
    fn a_hash_collision_never_merges_rows() {
        // Forged hashes: rows 0, 1 and 3 claim one hash; only 0 and 3 are equal.
        let flat = vec![1.0f32, 2.0, 5.0, 6.0, 9.0, 9.0, 1.0, 2.0];
        let m = Matrix::from_vec(4, 2, flat, "t").unwrap();
        let hashes = vec![7, 7, 8, 7];
        let (dup, first) = find(&m, hashes, true, &Silent).unwrap();
        assert_eq!(first.unwrap(), vec![0, 1, 2, 0]);
        assert_eq!((dup.distinct, dup.merged, dup.groups), (3, 1, 1));
        assert_eq!(dup.hash_collisions, 2);
        assert_eq!(
            dup.largest,
            vec![DuplicateGroup {
                first_row: 0,
                rows: 2
            }]
        );
    }
}
