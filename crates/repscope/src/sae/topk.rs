//! Top-k selection of one row: the k largest values, ties broken by the lowest index.
//!
//! One pass keeps a min-heap of the best k seen; almost every value is rejected by one comparison with the
//! heap's minimum, so the cost is about one read per value (n ≫ k), far below the sort or partition a
//! general top-k does.

/// (value, index) pairs ordered so that the heap's root is the worst kept pair: the smallest value, and
/// among equal values the largest index.
#[inline(always)]
fn worse(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
}

#[inline(always)]
fn sift_down(h: &mut [(f32, u32)], mut i: usize) {
    let n = h.len();
    loop {
        let l = 2 * i + 1;
        if l >= n {
            return;
        }
        let r = l + 1;
        let c = if r < n && worse(h[r], h[l]) { r } else { l };
        if worse(h[c], h[i]) {
            h.swap(c, i);
            i = c;
        } else {
            return;
        }
    }
}

/// The k largest values of `row` with their indices into `out` (unordered). NaN is never selected over a
/// number. k ≥ row.len() selects every value.
pub fn top_k_row(row: &[f32], k: usize, out: &mut Vec<(f32, u32)>) {
    top_k_row_body::<Scalar>(row, k, out)
}

/// Lanes of the vector pre-filter.
pub(crate) const LANES: usize = 16;

/// The vector steps of the selection kernels. Every implementation gives the same bits: the same IEEE
/// operations in the same order per lane, and no fused multiply-add.
pub(crate) trait Lanes {
    /// Whether any of the 16 values is strictly above `t` (NaN is not).
    fn any_above(block: &[f32], t: f32) -> bool;
    /// Adds `b` to `s` in place; returns max |s_j| (NaN ignored) and whether every s_j is finite.
    fn add_bias(s: &mut [f32], b: &[f32]) -> (f32, bool);
    /// Σ a_t·b_t in f64: lane l sums the terms t ≡ l (mod 32) in order, then the lanes in a fixed tree.
    fn dot_f64(a: &[f32], b: &[f32]) -> f64;
    /// The maximum of each block of 16 values of `s` (the last block may be shorter) into `out`.
    fn block_max(s: &[f32], out: &mut Vec<f32>);
}

/// Plain Rust.
pub(crate) struct Scalar;

impl Lanes for Scalar {
    #[inline(always)]
    fn any_above(block: &[f32], t: f32) -> bool {
        block.iter().any(|&v| v > t)
    }

    #[inline(always)]
    fn add_bias(s: &mut [f32], b: &[f32]) -> (f32, bool) {
        let (mut big, mut ok) = (0.0f32, true);
        for (v, &bb) in s.iter_mut().zip(b) {
            *v += bb;
            let a = v.abs();
            big = if a > big { a } else { big };
            ok &= v.is_finite();
        }
        (big, ok)
    }

    #[inline(always)]
    fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
        let mut s = [0.0f64; 32];
        for (t, (&x, &y)) in a.iter().zip(b).enumerate() {
            s[t % 32] += x as f64 * y as f64;
        }
        reduce32(&s)
    }

    #[inline(always)]
    fn block_max(s: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(s.chunks(LANES).map(|c| {
            c.iter()
                .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
        }));
    }
}

/// The fixed summation tree of [`Lanes::dot_f64`]'s 32 lanes: lanes l and l + 8k first, as four vectors of
/// eight would be added, then the eight in pairs.
#[inline(always)]
fn reduce32(s: &[f64; 32]) -> f64 {
    let v: [f64; 8] = std::array::from_fn(|l| (s[l] + s[l + 8]) + (s[l + 16] + s[l + 24]));
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// AVX-512F. Only inlined into functions compiled with `#[target_feature(enable = "avx512f")]`, which are
/// only called where the CPU has it.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx512 {
    #[inline(always)]
    fn any_above(block: &[f32], t: f32) -> bool {
        use std::arch::x86_64::*;
        debug_assert_eq!(block.len(), LANES);
        // SAFETY: 16 values are read from a slice of 16 (checked by every caller); AVX-512F is enabled in
        // every function this is inlined into.
        unsafe {
            let v = _mm512_loadu_ps(block.as_ptr());
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_set1_ps(t)) != 0
        }
    }

    #[inline(always)]
    fn add_bias(s: &mut [f32], b: &[f32]) -> (f32, bool) {
        use std::arch::x86_64::*;
        let n = s.len().min(b.len());
        let full = n / LANES * LANES;
        // SAFETY: every load and store is of 16 values at an offset below `full` ≤ both lengths.
        let (mut big, mut ok) = unsafe {
            let mut big = _mm512_setzero_ps();
            let mut fin: u16 = 0xffff;
            let zero = _mm512_setzero_ps();
            for i in (0..full).step_by(LANES) {
                let v = _mm512_add_ps(
                    _mm512_loadu_ps(s.as_ptr().add(i)),
                    _mm512_loadu_ps(b.as_ptr().add(i)),
                );
                _mm512_storeu_ps(s.as_mut_ptr().add(i), v);
                let a = _mm512_abs_ps(v);
                // max(a, big) returns `big` where a is NaN, as the scalar compare does.
                big = _mm512_max_ps(a, big);
                fin &= _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_sub_ps(v, v), zero);
            }
            (_mm512_reduce_max_ps(big), fin == 0xffff)
        };
        let (tb, tok) = Scalar::add_bias(&mut s[full..n], &b[full..n]);
        big = if tb > big { tb } else { big };
        ok &= tok;
        (big, ok)
    }

    #[inline(always)]
    fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let full = n / 32 * 32;
        let mut s = [0.0f64; 32];
        // SAFETY: every load is of 8 values at an offset below `full` ≤ both lengths; the stores write the
        // 32 lanes into `s`.
        unsafe {
            let mut acc = [_mm512_setzero_pd(); 4];
            for i in (0..full).step_by(32) {
                for (q, a4) in acc.iter_mut().enumerate() {
                    let x = _mm512_cvtps_pd(_mm256_loadu_ps(a.as_ptr().add(i + 8 * q)));
                    let y = _mm512_cvtps_pd(_mm256_loadu_ps(b.as_ptr().add(i + 8 * q)));
                    *a4 = _mm512_add_pd(*a4, _mm512_mul_pd(x, y));
                }
            }
            for (q, a4) in acc.iter().enumerate() {
                _mm512_storeu_pd(s.as_mut_ptr().add(8 * q), *a4);
            }
        }
        for (t, (&x, &y)) in a[full..n].iter().zip(&b[full..n]).enumerate() {
            s[t % 32] += x as f64 * y as f64;
        }
        reduce32(&s)
    }

    #[inline(always)]
    fn block_max(s: &[f32], out: &mut Vec<f32>) {
        use std::arch::x86_64::*;
        out.clear();
        let full = s.len() / LANES * LANES;
        for i in (0..full).step_by(LANES) {
            // SAFETY: 16 values at an offset below `full` ≤ s.len().
            out.push(unsafe { _mm512_reduce_max_ps(_mm512_loadu_ps(s.as_ptr().add(i))) });
        }
        if full < s.len() {
            out.push(
                s[full..]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m }),
            );
        }
    }
}

/// [`top_k_row`] over any [`Lanes`]. After the first k values, blocks of 16 with no value above the heap's
/// minimum are skipped by one vector compare; the others are walked value by value, so the result is the
/// same.
#[inline(always)]
pub(crate) fn top_k_row_body<L: Lanes>(row: &[f32], k: usize, out: &mut Vec<(f32, u32)>) {
    out.clear();
    let k = k.min(row.len());
    if k == 0 {
        return;
    }
    out.extend(
        row[..k]
            .iter()
            .enumerate()
            .map(|(i, &v)| (if v.is_nan() { f32::NEG_INFINITY } else { v }, i as u32)),
    );
    for i in (0..k / 2).rev() {
        sift_down(out, i);
    }
    let mut min = out[0].0;
    let mut i = k;
    while i < row.len() {
        let end = (i + LANES).min(row.len());
        let block = &row[i..end];
        if block.len() == LANES && !L::any_above(block, min) {
            i = end;
            continue;
        }
        for (j, &v) in block.iter().enumerate() {
            // Equal values keep the earlier (lower) index: only a strictly larger value enters.
            if v > min {
                out[0] = (v, (i + j) as u32);
                sift_down(out, 0);
                min = out[0].0;
            }
        }
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn matches_a_full_sort_with_lowest_index_ties() {
        let mut r = Rng::new(1);
        for case in 0..200 {
            let n = 1 + (r.below(300) as usize);
            // Few distinct values, so ties are common.
            let row: Vec<f32> = (0..n).map(|_| (r.below(20) as f32) - 10.0).collect();
            let k = 1 + (r.below(n as u64 + 3) as usize);
            let mut got = Vec::new();
            top_k_row(&row, k, &mut got);
            got.sort_by_key(|p| p.1);
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            let mut want: Vec<(f32, u32)> = order[..k.min(n)]
                .iter()
                .map(|&i| (row[i as usize], i))
                .collect();
            want.sort_by_key(|p| p.1);
            assert_eq!(got, want, "case {case}: n {n}, k {k}");
        }
    }
}
