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
    pub(crate) fn clear(&mut self) {
        self.items.clear();
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
            let mut c = self.items.len() - 1;
            while c > 0 {
                let p = (c - 1) / 2;
                if worse(self.items[c], self.items[p]) {
                    self.items.swap(c, p);
                    c = p;
                } else {
                    break;
                }
            }
        } else if worse(self.items[0], it) {
            self.items[0] = it;
            let n = self.items.len();
            let mut p = 0;
            loop {
                let l = 2 * p + 1;
                if l >= n {
                    break;
                }
                let r = l + 1;
                let m = if r < n && worse(self.items[r], self.items[l]) {
                    r
                } else {
                    l
                };
                if worse(self.items[m], self.items[p]) {
                    self.items.swap(m, p);
                    p = m;
                } else {
                    break;
                }
            }
        }
    }
    pub(crate) fn items(&self) -> &[(f32, u32)] {
        &self.items
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
}
