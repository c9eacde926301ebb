//! The GEMM floor of linear CKA's feature route: only the matrix products it needs (the lower triangle of
//! ZᵀZ for Z = [X_c | Y_c], which holds XᵀX, YᵀY and YᵀX) in f64, on data already widened and centred.
//! Used by bench/similarity.py. Usage: gemm_floor X.npy Y.npy [repeats]
use std::time::Instant;

use faer::Mat;
use repscope::linalg;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gemm_floor X.npy Y.npy [repeats]");
        std::process::exit(2);
    }
    let x = repscope::data::load_matrix(args[1].as_ref(), None).expect("X");
    let y = repscope::data::load_matrix(args[2].as_ref(), None).expect("Y");
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let (n, dx, dy) = (x.rows(), x.cols(), y.cols());
    let d = dx + dy;
    let (mx, my) = (linalg::column_means(&x), linalg::column_means(&y));
    // Column-major n × d, centred (the layout faer's kernels prefer on both sides).
    let z = Mat::<f64>::from_fn(n, d, |i, j| {
        if j < dx {
            x.row(i)[j] as f64 - mx[j]
        } else {
            y.row(i)[j - dx] as f64 - my[j - dx]
        }
    });
    let mut best = f64::INFINITY;
    let mut g = Mat::<f64>::zeros(d, d);
    for _ in 0..reps {
        let t = Instant::now();
        linalg::gemm_lower(g.as_mut(), false, z.as_ref().transpose(), z.as_ref(), true);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{{\"gemm_floor_s\": {best}, \"n\": {n}, \"d\": {d}, \"check\": {}}}",
        g[(d - 1, 0)]
    );
}
