//! Exact kNN in pieces: the k nearest rows of a block of queries within one shard of reference rows
//! ([`search`]), and the exact merge of such lists over the shards ([`KnnPartial::merge`]).
//!
//! Rows carry global numbers (their rows in the whole source), and every list is ordered by (exact f64
//! distance, global number), the order of the single-process graph. A shard's list is its exact k nearest,
//! proven by the certificate of [`super::exact`]; the k nearest of all rows are among the union of the
//! shards' lists, so merging them keeps the k smallest by that order, which is exact and does not depend on
//! the order of the merges. A partial result records the reference rows it searched, so a shard merged
//! twice or left out is an error, never a different graph.
use super::exact::knn_search;
use super::{Certificate, Metric};
use crate::data::source::{self, RowSource};
use crate::data::{self, Dedup, Matrix};
use crate::error::{Error, Param, Result};
use crate::partial::{corrupt, Reader, Writer};

const TAG_KNN: u8 = 0x90;

/// The k nearest rows found so far for a block of queries.
#[derive(Clone, Debug, PartialEq)]
pub struct KnnPartial {
    pub k: usize,
    pub metric: Metric,
    /// Global numbers of the queries.
    pub queries: Vec<u64>,
    /// Global row ranges of the reference rows searched, ascending and disjoint.
    pub searched: Vec<(u64, u64)>,
    /// Neighbours found per query (at most k).
    pub found: Vec<u32>,
    /// Global numbers of the neighbours, k slots per query (the first `found[q]` used).
    pub ids: Vec<u64>,
    /// Their exact distances.
    pub distances: Vec<f64>,
    /// How the searches proved their lists, summed over the searches (a row per query and shard).
    pub certificate: Certificate,
}

/// The k nearest rows of `refs` (global numbers `ref_ids`, ascending, all within `span`) for each row of
/// `queries` (global numbers `query_ids`), a query never listing itself: one shard's partial result.
pub fn search(
    queries: &Matrix,
    query_ids: &[u64],
    refs: &Matrix,
    ref_ids: &[u64],
    span: (u64, u64),
    k: usize,
    metric: Metric,
) -> Result<KnnPartial> {
    if k == 0 {
        return Err(Error::param(Param::K, "k must be at least 1", "use k = 10"));
    }
    if queries.rows() != query_ids.len() || refs.rows() != ref_ids.len() {
        return Err(Error::data(
            refs.name(),
            "the row numbers do not match the rows",
            "give one global row number per row",
        ));
    }
    if !ref_ids.windows(2).all(|w| w[0] < w[1])
        || ref_ids.first().is_some_and(|&f| f < span.0)
        || ref_ids.last().is_some_and(|&l| l >= span.1)
    {
        return Err(Error::data(
            refs.name(),
            "the reference rows' global numbers are not ascending within the shard's span",
            "number the rows of a shard from its first global row, in order",
        ));
    }
    let nq = queries.rows();
    let mut out = empty(query_ids, span, k, metric);
    let nr = refs.rows();
    if nr == 0 || nq == 0 {
        return Ok(out);
    }
    // One more than k, in case a query is among the references.
    let kk = (k + 1).min(nr);
    let g = knn_search(queries, refs, kk, metric, false, None)?;
    for (q, &own) in query_ids.iter().enumerate() {
        let mut f = 0;
        for (&j, &d) in g.neighbors(q).iter().zip(g.dists(q)) {
            let id = ref_ids[j as usize];
            if id == own || f == k {
                continue;
            }
            out.ids[q * k + f] = id;
            out.distances[q * k + f] = d;
            f += 1;
        }
        out.found[q] = f as u32;
    }
    out.certificate = g.certificate;
    Ok(out)
}

/// A partial result of `ids` (queries) with no neighbour found yet, over the reference span `span`.
fn empty(ids: &[u64], span: (u64, u64), k: usize, metric: Metric) -> KnnPartial {
    let nq = ids.len();
    KnnPartial {
        k,
        metric,
        queries: ids.to_vec(),
        searched: vec![span],
        found: vec![0; nq],
        ids: vec![u64::MAX; nq * k],
        distances: vec![f64::INFINITY; nq * k],
        certificate: Certificate {
            exact: true,
            ..Certificate::default()
        },
    }
}

/// A graph's lists (indices numbering `ref_ids`) as a partial result of the queries `query_ids`.
fn from_graph(
    g: &super::KnnGraph,
    query_ids: &[u64],
    ref_ids: &[u64],
    span: (u64, u64),
    k: usize,
) -> KnnPartial {
    let mut out = empty(query_ids, span, k, g.metric);
    for q in 0..query_ids.len() {
        for (f, (&j, &d)) in g.neighbors(q).iter().zip(g.dists(q)).enumerate() {
            out.ids[q * k + f] = ref_ids[j as usize];
            out.distances[q * k + f] = d;
        }
        out.found[q] = g.k as u32;
    }
    out.certificate = g.certificate;
    out
}

/// Checks that a block of `rows` rows of `m` has global row numbers that ascend within its span.
fn check_ids(m: &Matrix, rows: usize, ids: &[u64], span: (u64, u64)) -> Result<()> {
    if rows != ids.len()
        || !ids.windows(2).all(|w| w[0] < w[1])
        || ids.first().is_some_and(|&f| f < span.0)
        || ids.last().is_some_and(|&l| l >= span.1)
    {
        return Err(Error::data(
            m.name(),
            "the rows' global numbers are not one per row, ascending within the block's span",
            "number the rows of a block from its first global row, in order",
        ));
    }
    Ok(())
}

/// The k nearest other rows of a block within itself (the self search, as the single-process graph runs
/// it): the diagonal piece of a distributed self search. `ids` ascend within `span`.
pub fn search_self(
    m: &Matrix,
    ids: &[u64],
    span: (u64, u64),
    k: usize,
    metric: Metric,
) -> Result<KnnPartial> {
    if k == 0 {
        return Err(Error::param(Param::K, "k must be at least 1", "use k = 10"));
    }
    check_ids(m, m.rows(), ids, span)?;
    if m.rows() < 2 {
        return Ok(empty(ids, span, k, metric));
    }
    let kk = k.min(m.rows() - 1);
    let g = super::exact_knn(m, kk, metric, None)?;
    Ok(from_graph(&g, ids, ids, span, k))
}

/// The k nearest rows of block b for every row of block a, and of a for every row of b, from one product
/// per pair of tiles ([`super::symmetric`]): the off-diagonal piece of a distributed self search. `ab`
/// holds the rows of a (global numbers `a_ids`), then those of b (`b_ids`).
#[allow(clippy::too_many_arguments)]
pub fn search_pair(
    ab: &Matrix,
    a_ids: &[u64],
    a_span: (u64, u64),
    b_ids: &[u64],
    b_span: (u64, u64),
    k: usize,
    metric: Metric,
) -> Result<(KnnPartial, KnnPartial)> {
    if k == 0 {
        return Err(Error::param(Param::K, "k must be at least 1", "use k = 10"));
    }
    let na = a_ids.len().min(ab.rows());
    check_ids(ab, na, a_ids, a_span)?;
    check_ids(ab, ab.rows() - na, b_ids, b_span)?;
    if a_ids.is_empty() || b_ids.is_empty() {
        return Ok((
            empty(a_ids, b_span, k, metric),
            empty(b_ids, a_span, k, metric),
        ));
    }
    let (ga, gb) = super::symmetric::exact_knn_cross(ab, na, k, metric)?;
    Ok((
        from_graph(&ga, a_ids, b_ids, b_span, k),
        from_graph(&gb, b_ids, a_ids, a_span, k),
    ))
}

/// The rows `rows` (local numbers, increasing) of each shard in turn, in one matrix, checked finite.
pub fn load_rows(parts: &[(&dyn RowSource, &[usize])]) -> Result<Matrix> {
    for &(src, rows) in parts {
        if let Some(&bad) = rows.iter().find(|&&i| i >= src.rows()) {
            return Err(Error::data(
                src.name(),
                format!(
                    "row {bad} is asked for, but the shard has {} rows",
                    src.rows()
                ),
                "pass the shards as they were when the run started",
            ));
        }
        if !rows.windows(2).all(|w| w[0] < w[1]) {
            return Err(Error::data(
                src.name(),
                "the rows asked for are not increasing",
                "ask for a shard's rows in order",
            ));
        }
    }
    let m = source::gather_parts(parts)?;
    data::check_finite(&m)?;
    Ok(m)
}

/// The graph of the distinct rows from the finished lists of every query block (over all n rows, where
/// `first[i]` is row i's first equal row): indices number the distinct rows in order of first occurrence,
/// as the single-process graph of [`crate::data::Dataset::distinct`] does. Returns it with the groups.
pub fn graph(
    blocks: &[KnnPartial],
    first: &[u32],
    k: usize,
    metric: Metric,
) -> Result<(super::KnnGraph, Dedup)> {
    let n = first.len();
    let dedup = Dedup::from_first(first);
    let nd = dedup.n_distinct();
    let mut distinct_of = vec![u32::MAX; n];
    for (j, &row) in dedup.kept.iter().enumerate() {
        distinct_of[row as usize] = j as u32;
    }
    let to_distinct = |row: u64| {
        distinct_of
            .get(row as usize)
            .copied()
            .filter(|&j| j != u32::MAX)
            .ok_or_else(|| corrupt(format!("row {row} is not a distinct row")))
    };
    let mut indices = vec![0u32; nd * k];
    let mut distances = vec![0f64; nd * k];
    let mut seen = vec![false; nd];
    let mut certificate = Certificate {
        exact: true,
        ..Certificate::default()
    };
    for p in blocks {
        let (ids, dists) = p.lists(n as u64)?;
        if p.k != k || p.metric != metric {
            return Err(corrupt("a query block has another k or metric"));
        }
        for (q, &row) in p.queries.iter().enumerate() {
            let j = to_distinct(row)? as usize;
            seen[j] = true;
            for s in 0..k {
                indices[j * k + s] = to_distinct(ids[q * k + s])?;
                distances[j * k + s] = dists[q * k + s];
            }
        }
        certificate = certificate.merged(p.certificate);
    }
    if seen.iter().any(|&s| !s) {
        return Err(corrupt(
            "a distinct row has no list: a query block is missing",
        ));
    }
    let g = super::KnnGraph {
        n: nd,
        k,
        metric,
        indices,
        distances,
        certificate,
    };
    Ok((g, dedup))
}

/// The graph in input row numbering from the finished lists of every query block ([`graph`]): a duplicate
/// row takes its representative's neighbours, as [`super::KnnGraph::to_input_rows`] gives them. Returns
/// (row numbers, distances), n × k, row-major.
pub fn assemble(
    blocks: &[KnnPartial],
    first: &[u32],
    k: usize,
    metric: Metric,
) -> Result<(Vec<u32>, Vec<f64>)> {
    let (g, dedup) = graph(blocks, first, k, metric)?;
    Ok(g.to_input_rows(&dedup, |d| d))
}

impl KnnPartial {
    /// The lists of both partial results (of the same queries, over disjoint reference rows), merged: the
    /// k smallest by (distance, global number).
    pub fn merge(mut self, other: KnnPartial) -> Result<KnnPartial> {
        if self.k != other.k || self.metric != other.metric || self.queries != other.queries {
            return Err(corrupt(
                "kNN partial results of different queries, k or metrics cannot be merged",
            ));
        }
        let mut searched = self.searched.clone();
        searched.extend(&other.searched);
        searched.sort_unstable();
        if let Some(w) = searched.windows(2).find(|w| w[0].1 > w[1].0) {
            return Err(corrupt(format!(
                "reference rows {}..{} and {}..{} overlap: a shard would be searched twice",
                w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }
        let k = self.k;
        let mut ids = Vec::with_capacity(k);
        let mut dist = Vec::with_capacity(k);
        for q in 0..self.queries.len() {
            let (fa, fb) = (self.found[q] as usize, other.found[q] as usize);
            let a = (
                &self.ids[q * k..q * k + fa],
                &self.distances[q * k..q * k + fa],
            );
            let b = (
                &other.ids[q * k..q * k + fb],
                &other.distances[q * k..q * k + fb],
            );
            ids.clear();
            dist.clear();
            let (mut i, mut j) = (0, 0);
            while ids.len() < k && (i < fa || j < fb) {
                let take_a = j == fb
                    || (i < fa
                        && (a.1[i], a.0[i])
                            .partial_cmp(&(b.1[j], b.0[j]))
                            .is_some_and(|o| o.is_le()));
                if take_a {
                    ids.push(a.0[i]);
                    dist.push(a.1[i]);
                    i += 1;
                } else {
                    ids.push(b.0[j]);
                    dist.push(b.1[j]);
                    j += 1;
                }
            }
            self.ids[q * k..q * k + ids.len()].copy_from_slice(&ids);
            self.distances[q * k..q * k + dist.len()].copy_from_slice(&dist);
            self.found[q] = ids.len() as u32;
        }
        // Adjacent ranges are joined, so a complete merge searched one range.
        let mut joined: Vec<(u64, u64)> = Vec::with_capacity(searched.len());
        for s in searched {
            match joined.last_mut() {
                Some(last) if last.1 == s.0 => last.1 = s.1,
                _ => joined.push(s),
            }
        }
        self.searched = joined;
        self.certificate = self.certificate.joined(other.certificate);
        Ok(self)
    }

    /// The finished lists, once every reference row 0..n has been searched: (global numbers, distances),
    /// queries × k, row-major.
    pub fn lists(&self, n: u64) -> Result<(&[u64], &[f64])> {
        if self.searched != [(0, n)] {
            return Err(corrupt(format!(
                "the kNN lists searched rows {:?}, not all rows 0..{n}",
                self.searched
            )));
        }
        if let Some(q) = self.found.iter().position(|&f| f as usize != self.k) {
            return Err(Error::data(
                "the source",
                format!(
                    "row {} has only {} other distinct rows, fewer than k = {}",
                    self.queries[q], self.found[q], self.k
                ),
                "choose a smaller k or pass more rows",
            ));
        }
        Ok((&self.ids, &self.distances))
    }

    /// The partial result as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TAG_KNN);
        w.usize(self.k)
            .u64(matches!(self.metric, Metric::Cosine) as u64)
            .u64s(&self.queries);
        let flat: Vec<u64> = self.searched.iter().flat_map(|&(a, b)| [a, b]).collect();
        w.u64s(&flat);
        let found: Vec<u64> = self.found.iter().map(|&f| f as u64).collect();
        w.u64s(&found).u64s(&self.ids).f64s(&self.distances);
        let c = &self.certificate;
        w.bool(c.exact)
            .usize(c.rows)
            .usize(c.certified)
            .usize(c.recomputed)
            .usize(c.exhaustive)
            .usize(c.projected)
            .usize(c.pieces);
        w.finish()
    }

    /// A partial result from its bytes.
    pub fn decode(b: &[u8]) -> Result<KnnPartial> {
        let (tag, mut r) = Reader::open(b)?;
        if tag != TAG_KNN {
            return Err(corrupt("the bytes are not a kNN partial result"));
        }
        let k = r.usize()?;
        let metric = match r.u64()? {
            0 => Metric::Euclidean,
            1 => Metric::Cosine,
            m => return Err(corrupt(format!("unknown metric {m}"))),
        };
        let queries = r.u64s()?;
        let flat = r.u64s()?;
        let found: Vec<u32> = r.u64s()?.into_iter().map(|f| f as u32).collect();
        let ids = r.u64s()?;
        let distances = r.f64s()?;
        let certificate = Certificate {
            exact: r.bool()?,
            rows: r.usize()?,
            certified: r.usize()?,
            recomputed: r.usize()?,
            exhaustive: r.usize()?,
            projected: r.usize()?,
            pieces: r.usize()?,
        };
        r.end()?;
        let nq = queries.len();
        if flat.len() % 2 != 0
            || found.len() != nq
            || ids.len() != nq.saturating_mul(k)
            || distances.len() != ids.len()
            || found.iter().any(|&f| f as usize > k)
        {
            return Err(corrupt(
                "the parts of a kNN partial result disagree in size",
            ));
        }
        Ok(KnnPartial {
            k,
            metric,
            queries,
            searched: flat.chunks_exact(2).map(|c| (c[0], c[1])).collect(),
            found,
            ids,
            distances,
            certificate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neighbors::exact_knn;
    use crate::rng::Rng;

    /// Shards of any size, merged in any order, give the single-process graph: indices and distances.
    #[test]
    fn merged_shards_equal_the_whole_graph() {
        let (n, d, k) = (300, 6, 7);
        let mut r = Rng::new(11);
        // Coarse values, so that many distances tie exactly.
        let v: Vec<f32> = (0..n * d)
            .map(|_| (r.normal() * 2.0).round() as f32)
            .collect();
        let m = Matrix::from_vec(n, d, v, "t").unwrap();
        let ds = crate::data::Dataset::new(m.clone()).unwrap();
        let distinct = ds.distinct();
        let nd = distinct.rows();
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let whole = exact_knn(distinct, k, metric, None).unwrap();
            for bounds in [
                vec![0, nd],
                vec![0, 1, nd],
                vec![0, 40, 41, 150, 299.min(nd), nd],
            ] {
                let ids: Vec<u64> = (0..nd as u64).collect();
                let parts: Vec<KnnPartial> = bounds
                    .windows(2)
                    .map(|w| {
                        let refs = distinct.slice_rows(w[0], w[1]);
                        search(
                            distinct,
                            &ids,
                            &refs,
                            &ids[w[0]..w[1]],
                            (w[0] as u64, w[1] as u64),
                            k,
                            metric,
                        )
                        .unwrap()
                    })
                    .collect();
                // Merge back to front, through bytes.
                let mut it = parts.into_iter().rev();
                let mut acc = it.next().unwrap();
                for p in it {
                    acc = KnnPartial::decode(&p.encode()).unwrap().merge(acc).unwrap();
                }
                // The merged certificate counts each query row once, with one search per reference block.
                let searches = bounds.windows(2).filter(|w| w[1] > w[0]).count();
                assert_eq!(acc.certificate.rows, nd);
                assert!(acc.certificate.exact);
                assert!(acc.certificate.pieces >= 1 && acc.certificate.pieces <= searches.max(1));
                let (gi, gd) = acc.lists(nd as u64).unwrap();
                for i in 0..nd {
                    for j in 0..k {
                        assert_eq!(
                            gi[i * k + j],
                            whole.neighbors(i)[j] as u64,
                            "{metric:?} row {i}"
                        );
                        assert_eq!(gd[i * k + j].to_bits(), whole.dists(i)[j].to_bits());
                    }
                }
                // The symmetric tiling: each block with itself, and one product per pair of blocks.
                let spans: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
                let mut lists: Vec<Vec<KnnPartial>> = vec![Vec::new(); spans.len()];
                for (i, &(a0, a1)) in spans.iter().enumerate() {
                    let sp = |a: usize, b: usize| (a as u64, b as u64);
                    let ma = distinct.slice_rows(a0, a1);
                    lists[i].push(search_self(&ma, &ids[a0..a1], sp(a0, a1), k, metric).unwrap());
                    for (j, &(b0, b1)) in spans.iter().enumerate().skip(i + 1) {
                        let both: Vec<usize> = (a0..a1).chain(b0..b1).collect();
                        let (pa, pb) = search_pair(
                            &distinct.select_rows(&both),
                            &ids[a0..a1],
                            sp(a0, a1),
                            &ids[b0..b1],
                            sp(b0, b1),
                            k,
                            metric,
                        )
                        .unwrap();
                        lists[i].push(pa);
                        lists[j].push(pb);
                    }
                }
                for (i, parts) in lists.into_iter().enumerate() {
                    let (a0, a1) = spans[i];
                    let mut it = parts.into_iter();
                    let mut acc = it.next().unwrap();
                    for p in it {
                        acc = acc.merge(p).unwrap();
                    }
                    let (gi, gd) = acc.lists(nd as u64).unwrap();
                    for (q, row) in (a0..a1).enumerate() {
                        for j in 0..k {
                            assert_eq!(
                                gi[q * k + j],
                                whole.neighbors(row)[j] as u64,
                                "{metric:?} row {row}"
                            );
                            assert_eq!(gd[q * k + j].to_bits(), whole.dists(row)[j].to_bits());
                        }
                    }
                }
                // Merging a shard twice is refused.
                if bounds.len() > 2 {
                    let again = search(
                        distinct,
                        &ids,
                        &distinct.slice_rows(0, 1),
                        &ids[..1],
                        (0, 1),
                        k,
                        metric,
                    )
                    .unwrap();
                    assert!(acc.clone().merge(again).is_err());
                }
            }
        }
    }

    /// Blocks larger than the self search's internal blocks, of sizes that are not multiples of them: the
    /// pair search's two sides still give the whole graph's lists.
    #[test]
    fn pair_search_over_several_internal_blocks() {
        let (n, d, k) = (2600, 5, 6);
        let mut r = Rng::new(5);
        let v: Vec<f32> = (0..n * d)
            .map(|_| (r.normal() * 3.0).round() as f32)
            .collect();
        let m = Matrix::from_vec(n, d, v, "t").unwrap();
        let ds = crate::data::Dataset::new(m).unwrap();
        let x = ds.distinct();
        let nd = x.rows();
        let ids: Vec<u64> = (0..nd as u64).collect();
        let cut = 1100;
        let whole = exact_knn(x, k, Metric::Euclidean, None).unwrap();
        let (a, b) = (x.slice_rows(0, cut), x.slice_rows(cut, nd));
        let sa = (0, cut as u64);
        let sb = (cut as u64, nd as u64);
        let (pa, pb) =
            search_pair(x, &ids[..cut], sa, &ids[cut..], sb, k, Metric::Euclidean).unwrap();
        let da = search_self(&a, &ids[..cut], sa, k, Metric::Euclidean).unwrap();
        let db = search_self(&b, &ids[cut..], sb, k, Metric::Euclidean).unwrap();
        for (p, q, lo) in [(pa, da, 0), (pb, db, cut)] {
            let all = q.merge(p).unwrap();
            let (gi, gd) = all.lists(nd as u64).unwrap();
            for i in 0..all.queries.len() {
                for j in 0..k {
                    assert_eq!(
                        gi[i * k + j],
                        whole.neighbors(lo + i)[j] as u64,
                        "row {}",
                        lo + i
                    );
                    assert_eq!(gd[i * k + j].to_bits(), whole.dists(lo + i)[j].to_bits());
                }
            }
        }
    }
}
