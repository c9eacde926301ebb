//! Hierarchical navigable small-world graphs (Malkov & Yashunin 2018), built in parallel and
//! deterministically.
//!
//! Construction follows hnswlib: each new point draws a level from an exponential law with multiplier
//! 1/ln M, descends the upper layers greedily, searches each of its layers with `ef_construction`
//! candidates, keeps M neighbours chosen by the diversity heuristic (a candidate is dropped when it is closer
//! to an already kept neighbour than to the new point), and links back; a neighbour whose list overflows
//! (M above layer 0, 2M on layer 0) is shrunk with the same heuristic.
//!
//! Determinism. A concurrent insert (hnswlib, hnsw_rs) sees whatever its neighbours' threads have linked so
//! far, so its graph changes from run to run. Here points are inserted in fixed-size batches of
//! [`BATCH`] (never depending on the thread count): every point of a batch searches, in parallel, the graph
//! as it was before the batch, and also measures its distance to the points before it in the same batch,
//! which join its candidates exactly as if they had already been linked. The batch's forward links are then
//! written, and the reverse links are merged per target node, in parallel over targets and in insertion
//! order within a target. Every step is a pure function of the graph before the batch, so the same data,
//! seed and insertion order give the same graph bit for bit on any number of threads.
//!
//! Metrics: squared euclidean distance internally (reported as its square root), or for cosine 1 − x·y on
//! rows normalised once at build (queries are normalised on the way in).
use crate::error::Param;
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rayon::prelude::*;
use serde::Serialize;

use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::neighbors::Metric;
use crate::rng::Rng;
use crate::search::kernels::{dot_kernel, l2sq_kernel, prefetch, Kernel};

/// Points inserted per parallel step. Fixed, so that the graph does not depend on the thread count.
pub const BATCH: usize = 256;
/// Largest M accepted.
pub const MAX_M: usize = 512;
/// Highest level a point can draw.
const MAX_LEVEL: usize = 31;

/// Construction parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HnswParams {
    /// Neighbours kept per point on the upper layers (2M on layer 0).
    pub m: usize,
    /// Candidates searched while inserting.
    pub ef_construction: usize,
    /// Seed of the level draws.
    pub seed: u64,
}

impl Default for HnswParams {
    /// hnswlib's defaults: M = 16, ef_construction = 200.
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            seed: 0,
        }
    }
}

impl HnswParams {
    /// Checks the ranges before any work.
    pub fn validate(&self) -> Result<()> {
        if !(2..=MAX_M).contains(&self.m) {
            return Err(Error::param(
                Param::M,
                format!("M = {} is outside 2..={MAX_M}", self.m),
                "choose M between 2 and 512 (4 to 64 is usual; 16 is the common default)",
            ));
        }
        if self.ef_construction == 0 {
            return Err(Error::param(
                Param::EfConstruction,
                "ef_construction = 0 searches no candidates",
                "choose ef_construction ≥ M (100 to 400 is usual)",
            ));
        }
        Ok(())
    }
}

/// A search candidate: distance and internal id, ordered by distance then id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// Per-thread search state, reused between searches.
#[derive(Default)]
struct Scratch {
    visited: Vec<u32>,
    epoch: u32,
    cand: BinaryHeap<Reverse<Cand>>,
    top: BinaryHeap<Cand>,
    fresh: Vec<u32>,
    query: Vec<f32>,
    out: Vec<Cand>,
}

impl Scratch {
    /// Starts a search over `n` nodes: a new visit tag, every node unvisited.
    fn begin(&mut self, n: usize) -> u32 {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.iter_mut().for_each(|v| *v = 0);
            self.epoch = 1;
        }
        self.epoch
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// An HNSW index over the rows of a matrix. Internal ids are insertion positions; results use the row
/// numbers of the matrix it was built from.
pub struct Hnsw {
    pub(crate) metric: Metric,
    pub(crate) dim: usize,
    pub(crate) m: usize,
    pub(crate) m0: usize,
    pub(crate) ef_construction: usize,
    pub(crate) seed: u64,
    /// Rows in insertion order (normalised for cosine), n × dim.
    pub(crate) vectors: Vec<f32>,
    /// Internal id → row of the input.
    pub(crate) ids: Vec<u32>,
    /// Level of each internal id.
    pub(crate) levels: Vec<u8>,
    /// Layer 0: n × (m0 + 1) slots, a count then the neighbours.
    pub(crate) links0: Vec<u32>,
    /// Start of each node's upper layers in `upper` (n + 1 prefix offsets).
    pub(crate) upper_off: Vec<usize>,
    /// Layers 1..=level of every node, (m + 1) slots each.
    pub(crate) upper: Vec<u32>,
    pub(crate) entry: u32,
    pub(crate) max_level: usize,
    /// Power of two the stored euclidean rows are multiplied by (1 unless their norms are outside
    /// [2⁻⁴⁰, 2⁵⁰], where f32 squared distances would overflow or underflow); queries are scaled alike and
    /// distances scaled back. Exact in both directions, so files store the rows as given.
    pub(crate) scale: f64,
    kernel: Kernel,
}

// Norms outside [2⁻⁴⁰, 2⁵⁰] are scaled, as in the exact search's ranking space.
use crate::neighbors::space::{NORM_HI, NORM_LO};

/// The power of two that brings the largest row norm of `v` into [2⁶⁰, 2⁶¹) when it is outside
/// [2⁻⁴⁰, 2⁵⁰]; 1 otherwise. Squared distances are then at most 2¹²⁴, and rows far smaller than the largest
/// (a few outliers at 1e30 among rows of norm 1) keep their small distances above f32's underflow.
fn storage_scale(v: &[f32], dim: usize) -> f64 {
    let max = v
        .par_chunks(dim.max(1))
        .map(|r| r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt())
        .reduce(|| 0.0, f64::max);
    if max > NORM_HI || (max > 0.0 && max < NORM_LO) {
        2f64.powi(60 - max.log2().floor() as i32)
    } else {
        1.0
    }
}

/// The index keeps f32 rows: f64 input whose values are all below f32's smallest normal number (1.2e-38)
/// would be stored as zeros or a few bits, so it is refused (the exact search takes it, in f64).
fn check_f32_holds(data: &Matrix) -> Result<()> {
    let Some(max) = data.max_abs_f64() else {
        return Ok(());
    };
    if max > 0.0 && max < f32::MIN_POSITIVE as f64 {
        return Err(Error::data(
            data.name(),
            format!(
                "the largest |value| of the f64 data is {max:.2e}, below f32's smallest normal number (1.2e-38), and the approximate index stores f32 rows"
            ),
            "rescale the data (distances and dimensions are scale-free), e.g. x / np.abs(x).max(), or use the exact search, which reads f64 values as given",
        ));
    }
    Ok(())
}

/// Multiplies every value by a power of two, in f64 so that factors beyond f32's range (subnormal input)
/// stay exact.
fn scale_values(v: &mut [f32], s: f64) {
    if s != 1.0 {
        v.par_iter_mut().for_each(|x| *x = (*x as f64 * s) as f32);
    }
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("n", &self.len())
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("m", &self.m)
            .field("ef_construction", &self.ef_construction)
            .field("max_level", &self.max_level)
            .finish()
    }
}

/// The level draws for `n` insertions: level of the p-th inserted point.
fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let ml = 1.0 / (m as f64).ln();
    let mut rng = Rng::stream(seed, 0x4C45_5645_4C53); // "LEVELS"
    (0..n)
        .map(|_| {
            let u = 1.0 - rng.uniform(); // (0, 1]
            ((-u.ln() * ml).floor() as usize).min(MAX_LEVEL) as u8
        })
        .collect()
}

fn kernel_for(metric: Metric) -> Kernel {
    match metric {
        Metric::Euclidean => l2sq_kernel(),
        Metric::Cosine => dot_kernel(),
    }
}

/// Checks that `order` is a permutation of 0..n.
/// ef_search = 0 searches no candidates (the search would quietly use k instead).
fn check_ef(ef: usize) -> Result<()> {
    if ef == 0 {
        return Err(Error::range(
            Param::EfSearch,
            0,
            "a value ≥ k (64 to 512 is usual)",
            "ef_search = 0 keeps no candidates",
        ));
    }
    Ok(())
}

fn check_order(order: &[u32], n: usize) -> Result<()> {
    if order.len() != n {
        return Err(Error::param(
            Param::Order,
            format!("{} entries for {n} rows", order.len()),
            "give every row exactly once",
        ));
    }
    let mut seen = vec![false; n];
    for &i in order {
        let i = i as usize;
        if i >= n || seen[i] {
            return Err(Error::param(
                Param::Order,
                format!("row {i} is out of range or repeated"),
                "give every row exactly once",
            ));
        }
        seen[i] = true;
    }
    Ok(())
}

impl Hnsw {
    /// Builds the index over the rows of `data`, inserting them in `order` (row numbers; `None` = input
    /// order). `progress` receives the number of rows inserted since its last call.
    pub fn build(
        data: &Matrix,
        metric: Metric,
        params: &HnswParams,
        order: Option<&[u32]>,
        progress: Option<&(dyn Fn(usize) + Sync)>,
    ) -> Result<Hnsw> {
        params.validate()?;
        let n = data.rows();
        let dim = data.cols();
        if n == 0 || dim == 0 {
            return Err(Error::data(
                data.name(),
                format!("the matrix is {n} × {dim}"),
                "pass at least one row with at least one column",
            ));
        }
        if n > u32::MAX as usize - 1 {
            return Err(Error::data(
                data.name(),
                format!("{n} rows is more than the index addresses"),
                "split the data into parts of fewer than 4 billion rows",
            ));
        }
        crate::data::check_finite(data)?;
        check_f32_holds(data)?;
        let ids: Vec<u32> = match order {
            Some(o) => {
                check_order(o, n)?;
                o.to_vec()
            }
            None => (0..n as u32).collect(),
        };
        let mut vectors = vec![0f32; n * dim];
        vectors
            .par_chunks_mut(dim)
            .zip(ids.par_iter())
            .for_each(|(dst, &src)| dst.copy_from_slice(data.row(src as usize)));
        let scale = match metric {
            Metric::Cosine => {
                normalise_rows(&mut vectors, dim, data.name(), &ids)?;
                1.0
            }
            Metric::Euclidean => {
                let s = storage_scale(&vectors, dim);
                scale_values(&mut vectors, s);
                s
            }
        };
        let m = params.m;
        let m0 = 2 * m;
        let levels = draw_levels(n, m, params.seed);
        let mut upper_off = Vec::with_capacity(n + 1);
        let mut acc = 0usize;
        upper_off.push(0);
        for &l in &levels {
            acc += l as usize * (m + 1);
            upper_off.push(acc);
        }
        let mut h = Hnsw {
            metric,
            dim,
            m,
            m0,
            ef_construction: params.ef_construction.max(m),
            seed: params.seed,
            vectors,
            ids,
            entry: 0,
            max_level: levels[0] as usize,
            levels,
            links0: vec![0u32; n * (m0 + 1)],
            upper_off,
            upper: vec![0u32; acc],
            scale,
            kernel: kernel_for(metric),
        };
        if let Some(p) = progress {
            p(1);
        }
        let mut start = 1;
        while start < n {
            let end = (start + BATCH).min(n);
            h.insert_batch(start, end);
            if let Some(p) = progress {
                p(end - start);
            }
            start = end;
        }
        Ok(h)
    }

    /// Number of indexed rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether the index is empty (never true for a built index).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// The construction parameters (ef_construction as used: at least M).
    pub fn params(&self) -> HnswParams {
        HnswParams {
            m: self.m,
            ef_construction: self.ef_construction,
            seed: self.seed,
        }
    }
    /// The highest layer.
    pub fn max_level(&self) -> usize {
        self.max_level
    }
    /// Row numbers in insertion order.
    pub fn insertion_order(&self) -> &[u32] {
        &self.ids
    }
    /// The indexed rows as stored (normalised for cosine), back in the row numbering of the input.
    pub fn rows_matrix(&self, name: &str) -> Result<Matrix> {
        let mut v = vec![0f32; self.vectors.len()];
        for (p, &row) in self.ids.iter().enumerate() {
            let r = row as usize;
            v[r * self.dim..(r + 1) * self.dim].copy_from_slice(self.vec(p));
        }
        scale_values(&mut v, 1.0 / self.scale);
        Matrix::from_vec(self.len(), self.dim, v, name)
    }
    /// Bytes held by the index: vectors, links, levels and ids.
    pub fn nbytes(&self) -> usize {
        self.vectors.len() * 4
            + self.links0.len() * 4
            + self.upper.len() * 4
            + self.upper_off.len() * std::mem::size_of::<usize>()
            + self.levels.len()
            + self.ids.len() * 4
    }
    /// Row `i` as stored (internal id, normalised for cosine).
    #[inline]
    fn vec(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }
    /// The internal distance: squared euclidean, or 1 − x·y for cosine.
    #[inline]
    fn dist(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.metric {
            Metric::Euclidean => (self.kernel)(a, b),
            Metric::Cosine => 1.0 - (self.kernel)(a, b),
        }
    }
    /// The reported distance from the internal one.
    #[inline]
    fn report(&self, d: f32) -> f32 {
        match self.metric {
            Metric::Euclidean if self.scale != 1.0 => {
                (d.max(0.0).sqrt() as f64 / self.scale) as f32
            }
            Metric::Euclidean => d.max(0.0).sqrt(),
            Metric::Cosine => d.max(0.0),
        }
    }
    /// The stored rows as given (the storage scale undone), in insertion order: what an index file holds.
    pub(crate) fn stored_values(&self) -> std::borrow::Cow<'_, [f32]> {
        if self.scale == 1.0 {
            std::borrow::Cow::Borrowed(&self.vectors)
        } else {
            let mut v = self.vectors.clone();
            scale_values(&mut v, 1.0 / self.scale);
            std::borrow::Cow::Owned(v)
        }
    }
    #[inline]
    fn slot(&self, p: usize, layer: usize) -> (bool, usize) {
        if layer == 0 {
            (false, p * (self.m0 + 1))
        } else {
            (true, self.upper_off[p] + (layer - 1) * (self.m + 1))
        }
    }
    /// The neighbours of internal id `p` on `layer` (which must be ≤ its level).
    #[inline]
    pub(crate) fn links(&self, p: usize, layer: usize) -> &[u32] {
        let (up, off) = self.slot(p, layer);
        let s = if up { &self.upper } else { &self.links0 };
        let c = s[off] as usize;
        &s[off + 1..off + 1 + c]
    }
    fn set_links(&mut self, p: usize, layer: usize, list: &[u32]) {
        let (up, off) = self.slot(p, layer);
        let s = if up {
            &mut self.upper
        } else {
            &mut self.links0
        };
        s[off] = list.len() as u32;
        s[off + 1..off + 1 + list.len()].copy_from_slice(list);
    }
    fn capacity(&self, layer: usize) -> usize {
        if layer == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// Greedy descent on one layer from `cur`.
    fn greedy(&self, q: &[f32], mut cur: Cand, layer: usize) -> Cand {
        loop {
            let mut changed = false;
            for &x in self.links(cur.id as usize, layer) {
                let d = self.dist(q, self.vec(x as usize));
                if d < cur.d {
                    cur = Cand { d, id: x };
                    changed = true;
                }
            }
            if !changed {
                return cur;
            }
        }
    }

    /// Best-first search of one layer; the `ef` closest found are left in `s.out`, ascending.
    fn search_layer(&self, q: &[f32], entry: Cand, ef: usize, layer: usize, s: &mut Scratch) {
        let tag = s.begin(self.len());
        s.cand.clear();
        s.top.clear();
        s.visited[entry.id as usize] = tag;
        s.cand.push(Reverse(entry));
        s.top.push(entry);
        let mut bound = entry.d;
        while let Some(Reverse(c)) = s.cand.pop() {
            if c.d > bound {
                break;
            }
            // First mark and prefetch the unvisited neighbours, then measure them: the loads overlap.
            s.fresh.clear();
            for &x in self.links(c.id as usize, layer) {
                let xi = x as usize;
                if s.visited[xi] != tag {
                    s.visited[xi] = tag;
                    s.fresh.push(x);
                    let p = self.vectors[xi * self.dim..].as_ptr();
                    prefetch(p);
                    prefetch(p.wrapping_add(16));
                }
            }
            for &x in &s.fresh {
                let d = self.dist(q, self.vec(x as usize));
                if s.top.len() < ef || d < bound {
                    let cd = Cand { d, id: x };
                    s.cand.push(Reverse(cd));
                    s.top.push(cd);
                    if s.top.len() > ef {
                        s.top.pop();
                    }
                    if let Some(t) = s.top.peek() {
                        bound = t.d;
                    }
                }
            }
        }
        s.out.clear();
        s.out.extend(s.top.drain());
        s.out.sort_unstable();
    }

    /// The diversity heuristic: from `cands` (ascending), keep up to `m`, dropping a candidate that is
    /// closer to a kept one than to the query.
    fn select(&self, cands: &[Cand], m: usize) -> Vec<u32> {
        if cands.len() <= m {
            return cands.iter().map(|c| c.id).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in cands {
            if kept.len() >= m {
                break;
            }
            let v = self.vec(c.id as usize);
            let good = kept
                .iter()
                .all(|&k| self.dist(v, self.vec(k as usize)) >= c.d);
            if good {
                kept.push(c.id);
            }
        }
        kept
    }

    /// Forward links of internal id `p`, inserted in the batch starting at `batch_start`, per layer.
    fn plan(&self, p: usize, batch_start: usize, s: &mut Scratch) -> Vec<Vec<u32>> {
        let q = self.vec(p);
        let level = self.levels[p] as usize;
        let mut per_layer: Vec<Vec<Cand>> = vec![Vec::new(); level + 1];
        let e = self.entry as usize;
        let mut cur = Cand {
            d: self.dist(q, self.vec(e)),
            id: self.entry,
        };
        let mut l = self.max_level;
        while l > level {
            cur = self.greedy(q, cur, l);
            l -= 1;
        }
        for l in (0..=level.min(self.max_level)).rev() {
            self.search_layer(q, cur, self.ef_construction, l, s);
            cur = s.out[0];
            per_layer[l].extend_from_slice(&s.out);
        }
        // The points before p in this batch are not linked yet: measure them directly.
        for b in batch_start..p {
            let lb = self.levels[b] as usize;
            let d = self.dist(q, self.vec(b));
            for layer in per_layer.iter_mut().take(lb.min(level) + 1) {
                layer.push(Cand { d, id: b as u32 });
            }
        }
        per_layer
            .iter_mut()
            .map(|c| {
                c.sort_unstable();
                c.truncate(self.ef_construction);
                self.select(c, self.m)
            })
            .collect()
    }

    /// Inserts internal ids `start..end` (all after the first point).
    fn insert_batch(&mut self, start: usize, end: usize) {
        let plans: Vec<Vec<Vec<u32>>> = {
            let this = &*self;
            (start..end)
                .into_par_iter()
                .map(|p| SCRATCH.with(|s| this.plan(p, start, &mut s.borrow_mut())))
                .collect()
        };
        // Forward links, and the reverse links they ask for: (target, layer, source).
        let mut requests: Vec<(u32, u8, u32)> = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let p = start + i;
            for (layer, list) in plan.iter().enumerate() {
                self.set_links(p, layer, list);
                requests.extend(list.iter().map(|&t| (t, layer as u8, p as u32)));
            }
        }
        requests.sort_unstable();
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut a = 0;
        while a < requests.len() {
            let mut b = a + 1;
            while b < requests.len()
                && requests[b].0 == requests[a].0
                && requests[b].1 == requests[a].1
            {
                b += 1;
            }
            groups.push((a, b));
            a = b;
        }
        let updates: Vec<(u32, u8, Vec<u32>)> = {
            let this = &*self;
            let reqs = &requests;
            groups
                .par_iter()
                .map(|&(a, b)| {
                    let (t, layer) = (reqs[a].0, reqs[a].1);
                    (t, layer, this.merge_reverse(t, layer as usize, &reqs[a..b]))
                })
                .collect()
        };
        for (t, layer, list) in updates {
            self.set_links(t as usize, layer as usize, &list);
        }
        for p in start..end {
            let l = self.levels[p] as usize;
            if l > self.max_level {
                self.max_level = l;
                self.entry = p as u32;
            }
        }
    }

    /// The new neighbour list of `t` on `layer` after the reverse links `reqs` (sources ascending).
    fn merge_reverse(&self, t: u32, layer: usize, reqs: &[(u32, u8, u32)]) -> Vec<u32> {
        let mut list = self.links(t as usize, layer).to_vec();
        for &(_, _, src) in reqs {
            if src != t && !list.contains(&src) {
                list.push(src);
            }
        }
        let cap = self.capacity(layer);
        if list.len() <= cap {
            return list;
        }
        let v = self.vec(t as usize);
        let mut cands: Vec<Cand> = list
            .iter()
            .map(|&x| Cand {
                d: self.dist(v, self.vec(x as usize)),
                id: x,
            })
            .collect();
        cands.sort_unstable();
        self.select(&cands, cap)
    }

    /// The `k` nearest indexed rows of one query (row numbers and distances, ascending), searching layer 0
    /// with `max(ef, k)` candidates. Fewer than `k` come back only when the index has fewer rows.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<(u32, f32)>> {
        self.check_query(query, "query")?;
        check_ef(ef)?;
        Ok(SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            self.search_prepared(query, k, ef, &mut s);
            s.out
                .iter()
                .take(k)
                .map(|c| (self.ids[c.id as usize], self.report(c.d)))
                .collect()
        }))
    }

    fn check_query(&self, q: &[f32], name: &str) -> Result<()> {
        if q.len() != self.dim {
            return Err(Error::data(
                name,
                format!(
                    "the query has {} columns but the index holds {}-dimensional rows",
                    q.len(),
                    self.dim
                ),
                "pass queries of the same width as the indexed data",
            ));
        }
        Ok(())
    }

    /// Search with a query of the right width; results (internal ids) in `s.out`, ascending.
    fn search_prepared(&self, query: &[f32], k: usize, ef: usize, s: &mut Scratch) {
        let mut qbuf = std::mem::take(&mut s.query);
        let q: &[f32] = match self.metric {
            Metric::Cosine => {
                qbuf.clear();
                qbuf.extend_from_slice(query);
                if let Some(inv) = crate::linalg::inverse_norm(&qbuf) {
                    qbuf.iter_mut().for_each(|v| *v = (*v as f64 * inv) as f32);
                }
                &qbuf
            }
            Metric::Euclidean if self.scale != 1.0 => {
                qbuf.clear();
                qbuf.extend(query.iter().map(|&v| (v as f64 * self.scale) as f32));
                &qbuf
            }
            Metric::Euclidean => query,
        };
        let e = self.entry as usize;
        let mut cur = Cand {
            d: self.dist(q, self.vec(e)),
            id: self.entry,
        };
        for l in (1..=self.max_level).rev() {
            cur = self.greedy(q, cur, l);
        }
        self.search_layer(q, cur, ef.max(k), 0, s);
        s.query = qbuf;
    }

    /// The `k` nearest indexed rows of every query row, in parallel: row numbers and distances, nq × k
    /// row-major. Where the index has fewer than `k` rows the tail is `u32::MAX` / infinity.
    pub fn search_batch(
        &self,
        queries: &Matrix,
        k: usize,
        ef: usize,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        if queries.cols() != self.dim {
            return Err(Error::data(
                queries.name(),
                format!(
                    "queries have {} columns but the index holds {}-dimensional rows",
                    queries.cols(),
                    self.dim
                ),
                "pass queries of the same width as the indexed data",
            ));
        }
        if k == 0 {
            return Err(Error::range(
                Param::K,
                0,
                "k ≥ 1",
                "k = 0 asks for no neighbours",
            ));
        }
        check_ef(ef)?;
        if self.metric == Metric::Cosine {
            crate::neighbors::distance::inverse_norms(queries)?;
        }
        let nq = queries.rows();
        let rows: Vec<(Vec<u32>, Vec<f32>)> = (0..nq)
            .into_par_iter()
            .with_min_len(4)
            .map(|i| {
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    self.search_prepared(queries.row(i), k, ef, &mut s);
                    let mut idx = Vec::with_capacity(k);
                    let mut dist = Vec::with_capacity(k);
                    for c in s.out.iter().take(k) {
                        idx.push(self.ids[c.id as usize]);
                        dist.push(self.report(c.d));
                    }
                    idx.resize(k, u32::MAX);
                    dist.resize(k, f32::INFINITY);
                    (idx, dist)
                })
            })
            .collect();
        let mut idx = Vec::with_capacity(nq * k);
        let mut dist = Vec::with_capacity(nq * k);
        for (i, d) in rows {
            idx.extend(i);
            dist.extend(d);
        }
        Ok((idx, dist))
    }

    /// Assembles an index from stored parts (the file reader validates them first).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        metric: Metric,
        dim: usize,
        m: usize,
        m0: usize,
        ef_construction: usize,
        seed: u64,
        vectors: Vec<f32>,
        ids: Vec<u32>,
        levels: Vec<u8>,
        links0: Vec<u32>,
        upper: Vec<u32>,
        entry: u32,
        max_level: usize,
    ) -> Hnsw {
        let mut vectors = vectors;
        let scale = match metric {
            Metric::Cosine => 1.0,
            Metric::Euclidean => storage_scale(&vectors, dim),
        };
        scale_values(&mut vectors, scale);
        let mut upper_off = Vec::with_capacity(levels.len() + 1);
        let mut acc = 0usize;
        upper_off.push(0);
        for &l in &levels {
            acc += l as usize * (m + 1);
            upper_off.push(acc);
        }
        Hnsw {
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
            upper_off,
            upper,
            entry,
            max_level,
            scale,
            kernel: kernel_for(metric),
        }
    }
}

/// Scales every row to unit length; a zero row is an error naming its input row.
fn normalise_rows(v: &mut [f32], dim: usize, name: &str, ids: &[u32]) -> Result<()> {
    if let Some(i) = crate::linalg::normalise_rows(v, dim) {
        return Err(Error::data(
            name,
            format!(
                "row {} is all zeros, so its cosine distance to anything is undefined",
                ids[i]
            ),
            "remove zero rows or use the euclidean metric",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, d: usize, seed: u64) -> Matrix {
        let mut r = Rng::new(seed);
        let v = (0..n * d).map(|_| r.normal() as f32).collect();
        Matrix::from_vec(n, d, v, "rand").unwrap()
    }

    #[test]
    fn levels_follow_the_exponential_law() {
        let l = draw_levels(100_000, 16, 1);
        let above0 = l.iter().filter(|&&x| x >= 1).count() as f64 / 1e5;
        // P(level ≥ 1) = 1/M.
        assert!((above0 - 1.0 / 16.0).abs() < 0.005, "{above0}");
    }

    #[test]
    fn finds_itself_and_lists_are_within_capacity() {
        let m = random(1500, 12, 4);
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let h = Hnsw::build(&m, metric, &HnswParams::default(), None, None).unwrap();
            for p in 0..h.len() {
                assert!(h.links(p, 0).len() <= h.m0);
                for l in 1..=h.levels[p] as usize {
                    assert!(h.links(p, l).len() <= h.m);
                }
            }
            let mut hits = 0;
            for i in 0..200 {
                let r = h.search(m.row(i), 1, 32).unwrap();
                hits += (r[0].0 == i as u32) as usize;
            }
            assert!(hits >= 199, "{metric:?}: {hits}");
        }
    }
}
