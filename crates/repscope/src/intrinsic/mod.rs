//! Intrinsic-dimension estimators: one file per family. Definitions and defaults follow METRICS.md.
pub mod bayes;
pub mod calibrated;
pub mod carter;
pub mod corrint;
pub mod danco;
pub mod ess;
pub mod fisher;
pub mod gride;
pub mod hidalgo;
pub mod kstar;
pub mod lid;
pub mod local;
pub mod method;
pub mod mind;
pub mod mindkl;
pub mod mle;
pub mod pca;
pub mod ph;
pub mod scale;
pub mod suite;
pub mod twonn;

use serde::Serialize;

/// One estimate: value, uncertainty where the method has one, parameters used, and notes.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Estimate {
    /// Estimator name as used on the command line (e.g. "twonn").
    pub estimator: String,
    /// The variant of the method, spelled out (e.g. "linear fit through the origin, F_i = i/N").
    pub variant: String,
    pub value: f64,
    /// Standard error, where the method defines one.
    pub stderr: Option<f64>,
    /// The parameters actually used.
    pub params: serde_json::Value,
    /// Anything the user should know about this number.
    pub notes: Vec<String>,
}

/// Natural log of a distance ratio, guarded against the non-positive ratios a tie or a bad graph would give.
#[inline]
pub(crate) fn log_ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 && num > 0.0 {
        (num / den).ln()
    } else {
        0.0
    }
}

/// Summary of a per-point array: count, mean, median, min, max.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// Summary of the finite values in `v`.
    pub fn of(v: &[f64]) -> Summary {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        if n == 0 {
            return Summary {
                n: 0,
                mean: f64::NAN,
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            0.5 * (s[n / 2 - 1] + s[n / 2])
        };
        Summary {
            n,
            mean: s.iter().sum::<f64>() / n as f64,
            median,
            min: s[0],
            max: s[n - 1],
        }
    }
}
