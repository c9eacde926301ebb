//! A fixed-capacity max-heap of (distance, index) candidates, the worst on top.

/// Keeps the `cap` smallest (distance, index) pairs seen; ties prefer the smaller index.
pub(crate) struct TopK {
    cap: usize,
    items: Vec<(f32, u32)>,
}

#[inline]
fn worse(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

impl TopK {
    pub(crate) fn new(cap: usize) -> Self {
        TopK {
            cap,
            items: Vec::with_capacity(cap),
        }
    }
    /// The value a candidate must beat to enter (infinity while not full).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.items.len() < self.cap {
            f32::INFINITY
        } else {
            self.items[0].0
        }
    }
    #[inline]
    pub(crate) fn push(&mut self, d: f32, i: u32) {
        let it = (d, i);
        if self.items.len() < self.cap {
            self.items.push(it);
            sift_up(&mut self.items);
        } else if worse(self.items[0], it) {
            self.items[0] = it;
            sift_down(&mut self.items);
        }
    }
    pub(crate) fn items(&self) -> &[(f32, u32)] {
        &self.items
    }
}

/// Restores the heap order after the last item was appended.
#[inline]
fn sift_up(items: &mut [(f32, u32)]) {
    let mut c = items.len() - 1;
    while c > 0 {
        let p = (c - 1) / 2;
        if worse(items[c], items[p]) {
            items.swap(c, p);
            c = p;
        } else {
            break;
        }
    }
}

/// Restores the heap order after the top item was replaced.
#[inline]
fn sift_down(items: &mut [(f32, u32)]) {
    let n = items.len();
    let mut p = 0;
    loop {
        let l = 2 * p + 1;
        if l >= n {
            break;
        }
        let r = l + 1;
        let m = if r < n && worse(items[r], items[l]) {
            r
        } else {
            l
        };
        if worse(items[m], items[p]) {
            items.swap(m, p);
            p = m;
        } else {
            break;
        }
    }
}

/// The heaps of a block of rows, each of capacity `cap`, in one allocation: `rows × cap` slots and a
/// length per row. One allocation per block (rather than one per row) is returned to the system as soon
/// as the block is dropped, so the peak memory of a search that holds every row's heap stays predictable.
pub(crate) struct HeapBlock {
    cap: usize,
    items: Vec<(f32, u32)>,
    lens: Vec<u32>,
}

impl HeapBlock {
    pub(crate) fn new(rows: usize, cap: usize) -> Self {
        HeapBlock {
            cap,
            items: vec![(0.0, 0); rows * cap],
            lens: vec![0; rows],
        }
    }
    /// Rows in the block.
    pub(crate) fn rows(&self) -> usize {
        self.lens.len()
    }
    /// The value a candidate must beat to enter row `r`'s heap (infinity while it is not full).
    #[inline]
    pub(crate) fn threshold(&self, r: usize) -> f32 {
        if (self.lens[r] as usize) < self.cap {
            f32::INFINITY
        } else {
            self.items[r * self.cap].0
        }
    }
    #[inline]
    pub(crate) fn push(&mut self, r: usize, d: f32, i: u32) {
        let it = (d, i);
        let len = self.lens[r] as usize;
        let row = &mut self.items[r * self.cap..(r + 1) * self.cap];
        if len < self.cap {
            row[len] = it;
            self.lens[r] += 1;
            sift_up(&mut row[..=len]);
        } else if worse(row[0], it) {
            row[0] = it;
            sift_down(row);
        }
    }
    /// Row `r`'s candidates, in heap order.
    pub(crate) fn items(&self, r: usize) -> &[(f32, u32)] {
        &self.items[r * self.cap..r * self.cap + self.lens[r] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn keeps_the_smallest() {
        let mut r = Rng::new(5);
        let vals: Vec<f32> = (0..1000).map(|_| r.uniform() as f32).collect();
        let mut h = TopK::new(17);
        for (i, &v) in vals.iter().enumerate() {
            h.push(v, i as u32);
        }
        let mut got: Vec<f32> = h.items().iter().map(|x| x.0).collect();
        got.sort_by(f32::total_cmp);
        let mut want = vals.clone();
        want.sort_by(f32::total_cmp);
        assert_eq!(got, want[..17].to_vec());
    }

    #[test]
    fn a_block_keeps_the_same_as_single_heaps() {
        let mut r = Rng::new(6);
        let (rows, cap) = (5, 9);
        let mut block = HeapBlock::new(rows, cap);
        let mut single: Vec<TopK> = (0..rows).map(|_| TopK::new(cap)).collect();
        assert!(block.threshold(2).is_infinite());
        for i in 0..2000u32 {
            let row = (r.uniform() * rows as f64) as usize % rows;
            // Coarse values, so ties (broken by the index) happen.
            let v = (r.uniform() * 50.0).floor() as f32;
            block.push(row, v, i);
            single[row].push(v, i);
        }
        assert_eq!(block.rows(), rows);
        for (row, h) in single.iter().enumerate() {
            assert_eq!(block.items(row), h.items(), "row {row}");
            assert_eq!(block.threshold(row), h.threshold());
        }
    }
}
