//! Top-k selection of one row: the k largest values, ties broken by the lowest index.
//!
//! One pass keeps a min-heap of the best k seen; almost every value is rejected by one comparison with the
//! heap's minimum, so the cost is about one read per value (n ≫ k), far below the sort or partition a
//! general top-k does.

/// (value, index) pairs ordered so that the heap's root is the worst kept pair: the smallest value, and
/// among equal values the largest index.
#[inline]
fn worse(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
}

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
    for (i, &v) in row.iter().enumerate().skip(k) {
        // Equal values keep the earlier (lower) index: only a strictly larger value enters.
        if v > min {
            out[0] = (v, i as u32);
            sift_down(out, 0);
            min = out[0].0;
        }
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
