//! Products of f32 matrices on Intel AMX tiles, with a proven error bound.
//!
//! Each f32 value is split into two bf16 values, `hi = bf16(v)` and `lo = bf16(v − hi)`, which together hold
//! 16 of its 24 significand bits. A product `a·b` is taken as `hi·hi + hi·lo + lo·hi`: three tile products
//! (`tdpbf16ps`), each bf16 × bf16 term exact in f32, summed in f32 accumulators. The result is an
//! approximation with a bound (see [`error_bound`]), for callers that select candidates from it and then
//! compute the few values they keep exactly: the SAE encoder's top-k, for example. It is never used where
//! its values are printed as they are.
//!
//! [`available`] checks the CPU (CPUID), the operating system (XCR0) and asks Linux for the permission to use
//! the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) once. `REPSCOPE_NO_AMX=1` turns the kernels off, so that
//! the other path can be measured and tested on the same machine.

/// Whether the AMX kernels can run here (x86-64 Linux with AMX-BF16, the tile state enabled by the operating
/// system and its permission granted), and `REPSCOPE_NO_AMX` is not set.
pub fn available() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        if std::env::var_os("REPSCOPE_NO_AMX").is_some_and(|v| !v.is_empty() && v != "0") {
            return false;
        }
        imp::detect()
    })
}

/// The relative part ε of the bound: |[`product`] − a·b| ≤ ε·‖a‖·‖b‖ + η, for vectors of length k.
///
/// - The split leaves out lo·lo and the two rounding residues, each at most u²·|a_t|·|b_t| (u = 2⁻⁸, bf16's
///   unit roundoff) up to (1 + u)² factors: at most 3.1·u² Σ|a_t b_t|.
/// - The three bf16 products of each term are exact in f32; the 3k terms are summed in f32 in any order,
///   each addition rounded: at most γ₃ₖ·Σ|terms| with γ_m = m·2⁻²³/(1 − m·2⁻²³) (twice f32's unit roundoff, so
///   any rounding mode is covered), and Σ|terms| ≤ 1.02·Σ|a_t b_t|.
/// - Σ|a_t b_t| ≤ ‖a‖·‖b‖ (Cauchy–Schwarz).
pub fn error_bound(k: usize) -> f64 {
    let u = 2f64.powi(-8);
    let m = 3.0 * k as f64 * 2f64.powi(-23);
    3.1 * u * u + 1.02 * m / (1.0 - m)
}

/// The absolute part η of the bound, for vectors of length k with norms `na` and `nb`. AMX treats bf16
/// subnormals as zero and flushes subnormal results: each dropped term or partial sum is below 2⁻¹²⁶ in
/// magnitude (a term with a subnormal factor is at most 2⁻¹²⁶·(1 + u)·|other factor|).
pub fn flush_bound(k: usize, na: f64, nb: f64) -> f64 {
    let kf = k as f64;
    2f64.powi(-124) * (kf.sqrt() * (na + nb) * 1.01 + 3.0 * kf + 1.0)
}

/// `v` rounded to bf16 (to nearest, ties to even), as its bits; NaN stays NaN.
#[inline]
fn bf16(v: f32) -> u16 {
    let b = v.to_bits();
    if v.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[inline]
fn widen(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// The (hi, lo) bf16 pair of `v`.
#[inline]
fn split(v: f32) -> (u16, u16) {
    let h = bf16(v);
    let hv = widen(h);
    let rest = if hv.is_finite() { v - hv } else { 0.0 };
    (h, bf16(rest))
}

/// Columns of a tile row, in bf16 values (64 bytes).
const TK: usize = 32;
/// Rows of a tile.
const TR: usize = 16;

/// The right-hand matrix B (n × k, row-major: one row per output column) split and laid out as AMX tiles:
/// for each block of 16 rows of B and each chunk of 32 of k, one 16 × 64-byte tile whose row p holds, for
/// each of the 16 rows c, the pair (B[c][2p], B[c][2p + 1]) ("VNNI" order). Rows are padded to a multiple of
/// 32 and k to a multiple of 32 with zeros.
#[derive(Clone, Debug)]
pub struct Packed {
    pub n: usize,
    pub k: usize,
    chunks: usize,
    /// n rounded up to a multiple of 32.
    pub n_pad: usize,
    hi: Vec<u16>,
    lo: Vec<u16>,
}

impl Packed {
    pub fn new(b: &[f32], n: usize, k: usize) -> Packed {
        assert_eq!(b.len(), n * k);
        let chunks = k.div_ceil(TK).max(1);
        let n_pad = n.div_ceil(2 * TR) * 2 * TR;
        let tile = TR * TK;
        let mut hi = vec![0u16; (n_pad / TR) * chunks * tile];
        let mut lo = hi.clone();
        for j in 0..n {
            let (jb, c) = (j / TR, j % TR);
            for t in 0..k {
                let (kc, kk) = (t / TK, t % TK);
                let at = (jb * chunks + kc) * tile + (kk / 2) * TK + c * 2 + (kk % 2);
                let (h, l) = split(b[j * k + t]);
                hi[at] = h;
                lo[at] = l;
            }
        }
        Packed {
            n,
            k,
            chunks,
            n_pad,
            hi,
            lo,
        }
    }
}

/// The left-hand rows split into bf16 (hi, lo), row-major with `chunks·32` columns, rows padded to a
/// multiple of 32.
#[derive(Default)]
pub struct Lhs {
    hi: Vec<u16>,
    lo: Vec<u16>,
    rows_pad: usize,
    stride: usize,
}

impl Lhs {
    /// Splits `m` rows of `a` (m × k, row-major) for a product with `p`.
    pub fn fill(&mut self, a: &[f32], m: usize, p: &Packed) {
        let k = p.k;
        self.stride = p.chunks * TK;
        self.rows_pad = m.div_ceil(2 * TR) * 2 * TR;
        let len = self.rows_pad * self.stride;
        self.hi.clear();
        self.hi.resize(len, 0);
        self.lo.clear();
        self.lo.resize(len, 0);
        for r in 0..m {
            let row = &a[r * k..(r + 1) * k];
            let (h, l) = (
                &mut self.hi[r * self.stride..r * self.stride + k],
                &mut self.lo[r * self.stride..r * self.stride + k],
            );
            for ((hv, lv), &v) in h.iter_mut().zip(l.iter_mut()).zip(row) {
                let (a, b) = split(v);
                *hv = a;
                *lv = b;
            }
        }
    }
}

/// out (rows_pad × (p.n_pad + 16), row-major) ≈ A·Bᵀ for the rows in `a` (filled by [`Lhs::fill`]). Panics
/// where [`available`] is false (the permission request happens there). Returns the row stride of `out` (p.n_pad + 16: a stride of a multiple of 4 KiB would put a tile's 16
/// stored rows in one L1 set).
pub fn product(a: &Lhs, p: &Packed, out: &mut Vec<f32>) -> usize {
    assert_eq!(a.stride, p.chunks * TK);
    assert!(
        available(),
        "AMX products called where AMX is not available"
    );
    let stride = p.n_pad + TR;
    out.clear();
    out.resize(a.rows_pad * stride, 0.0);
    imp::product(a, p, out, stride);
    stride
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::{Lhs, Packed, TK, TR};
    use std::arch::asm;

    /// The tile configuration (palette 1): eight tiles of 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    const CONFIG: Config = Config {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
    };

    pub(super) fn detect() -> bool {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        let (max, l1) = (__cpuid(0).eax, __cpuid(1));
        if max < 7 || l1.ecx & (1 << 27) == 0 {
            return false; // no leaf 7, or no OSXSAVE
        }
        let l7 = __cpuid_count(7, 0);
        let (tile, bf16) = (l7.edx & (1 << 24) != 0, l7.edx & (1 << 22) != 0);
        if !(tile && bf16) {
            return false;
        }
        let (lo, _hi): (u32, u32);
        // SAFETY: OSXSAVE is set, so XGETBV with ECX = 0 is allowed.
        unsafe {
            asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") _hi, options(nomem, nostack));
        }
        if lo & (0b11 << 17) != 0b11 << 17 {
            return false; // XTILECFG and XTILEDATA not enabled by the operating system
        }
        // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): permission for this process's threads.
        let ret: i64;
        // SAFETY: a plain system call with integer arguments; it changes no memory of this process.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64, in("rsi") 18i64,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    pub(super) fn product(a: &Lhs, p: &Packed, out: &mut [f32], stride: usize) {
        let tile = TR * TK;
        let a_stride = a.stride * 2; // bytes
        let o_stride = stride * 4; // bytes
        let chunks = p.chunks;
        // SAFETY: the CPU and the operating system support AMX (the caller checked `available`); every tile
        // load reads 16 rows of 64 bytes inside `a.hi`/`a.lo` (rows_pad rows of `stride` values, a multiple
        // of 32 each) or one packed 1 KiB tile inside `p.hi`/`p.lo`, and every store writes 16 rows of
        // 64 bytes inside `out` (rows_pad × n_pad values), as the index arithmetic below bounds.
        unsafe {
            asm!("ldtilecfg [{0}]", in(reg) &CONFIG as *const Config, options(nostack, readonly));
            for jb in (0..p.n_pad / TR).step_by(2) {
                for r0 in (0..a.rows_pad).step_by(2 * TR) {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nomem, nostack)
                    );
                    for kc in 0..chunks {
                        let ah0 = a.hi.as_ptr().add(r0 * a.stride + kc * TK);
                        let ah1 = ah0.add(TR * a.stride);
                        let al0 = a.lo.as_ptr().add(r0 * a.stride + kc * TK);
                        let al1 = al0.add(TR * a.stride);
                        let b0 = (jb * chunks + kc) * tile;
                        let b1 = ((jb + 1) * chunks + kc) * tile;
                        let (bh0, bh1) = (p.hi.as_ptr().add(b0), p.hi.as_ptr().add(b1));
                        let (bl0, bl1) = (p.lo.as_ptr().add(b0), p.lo.as_ptr().add(b1));
                        asm!(
                            "tileloadd tmm4, [{ah0} + {sa}*1]",
                            "tileloadd tmm5, [{ah1} + {sa}*1]",
                            "tileloadd tmm6, [{bl0} + {sb}*1]",
                            "tileloadd tmm7, [{bl1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            "tileloadd tmm6, [{bh0} + {sb}*1]",
                            "tileloadd tmm7, [{bh1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            "tileloadd tmm4, [{al0} + {sa}*1]",
                            "tileloadd tmm5, [{al1} + {sa}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            ah0 = in(reg) ah0, ah1 = in(reg) ah1, al0 = in(reg) al0, al1 = in(reg) al1,
                            bh0 = in(reg) bh0, bh1 = in(reg) bh1, bl0 = in(reg) bl0, bl1 = in(reg) bl1,
                            sa = in(reg) a_stride, sb = in(reg) 64usize,
                            options(nostack, readonly),
                        );
                    }
                    let c = out.as_mut_ptr().add(r0 * stride + jb * TR);
                    asm!(
                        "tilestored [{c00} + {so}*1], tmm0",
                        "tilestored [{c01} + {so}*1], tmm1",
                        "tilestored [{c10} + {so}*1], tmm2",
                        "tilestored [{c11} + {so}*1], tmm3",
                        c00 = in(reg) c, c01 = in(reg) c.add(TR),
                        c10 = in(reg) c.add(TR * stride), c11 = in(reg) c.add(TR * stride + TR),
                        so = in(reg) o_stride,
                        options(nostack),
                    );
                }
            }
            asm!("tilerelease", options(nomem, nostack));
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::{Lhs, Packed};
    pub(super) fn detect() -> bool {
        false
    }
    pub(super) fn product(_: &Lhs, _: &Packed, _: &mut [f32], _: usize) {
        unreachable!("the AMX kernels run only where `available()` is true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn split_holds_sixteen_bits() {
        let mut r = Rng::new(3);
        for _ in 0..10_000 {
            let v = (r.normal() * 1e3) as f32;
            let (h, l) = split(v);
            let e = (v as f64 - widen(h) as f64 - widen(l) as f64).abs();
            assert!(e <= (v as f64).abs() * 2f64.powi(-16), "{v}: {e}");
        }
        assert_eq!(split(0.0), (0, 0));
        assert!(widen(bf16(f32::NAN)).is_nan());
    }

    /// Within the bound of f64 products, over shapes that exercise the padding of rows, columns and k, and
    /// over magnitudes from tiny to large.
    #[test]
    fn product_is_within_its_bound() {
        if !available() {
            eprintln!("AMX not available here: the product test has nothing to run");
            return;
        }
        let mut r = Rng::new(7);
        for &(m, n, k, scale) in &[
            (1usize, 1usize, 1usize, 1.0f64),
            (17, 33, 31, 1.0),
            (64, 64, 64, 1e-20),
            (40, 70, 384, 1e15),
            (33, 100, 97, 1.0),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| (r.normal() * scale) as f32).collect();
            let b: Vec<f32> = (0..n * k).map(|_| r.normal() as f32).collect();
            let p = Packed::new(&b, n, k);
            let mut lhs = Lhs::default();
            lhs.fill(&a, m, &p);
            let mut out = Vec::new();
            let stride = product(&lhs, &p, &mut out);
            let eps = error_bound(k);
            let mut worst = 0.0f64;
            for i in 0..m {
                let ar = &a[i * k..(i + 1) * k];
                let na = ar.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                for j in 0..n {
                    let br = &b[j * k..(j + 1) * k];
                    let nb = br.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                    let exact: f64 = ar.iter().zip(br).map(|(&x, &y)| x as f64 * y as f64).sum();
                    let got = out[i * stride + j] as f64;
                    let bound = eps * na * nb + flush_bound(k, na, nb);
                    assert!(
                        (got - exact).abs() <= bound,
                        "{m}×{n}×{k}: {got} vs {exact}"
                    );
                    worst = worst.max((got - exact).abs() / (na * nb));
                }
            }
            // The bound is not vacuous: the split keeps about 16 bits, so errors are far below bf16's.
            assert!(worst < 1e-4, "{m}×{n}×{k}: worst {worst}");
        }
    }
}
