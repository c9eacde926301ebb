//! The spectrum of a representation: covariance eigenvalues, effective rank / RankMe, participation ratio,
//! α-ReQ, coding rate, anisotropy and rogue dimensions. Definitions follow METRICS.md ("Spectrum and
//! collapse"); every sum is accumulated in f64 and nothing n × n is formed unless n < d (coding rate's
//! smaller form).
mod rank;
mod unit;

use crate::error::Param;
use serde::Serialize;

pub use rank::{alpha_req, effective_rank, singular_values, AlphaReq};
pub use unit::{rogue_dimensions, unit_row_stats, UnitRowStats};

use crate::data::duplicates::Duplicates;
use crate::data::source::RowSource;
use crate::data::Matrix;
use crate::error::{Error, Result};
use crate::intrinsic::pca::{PcaRule, Spectrum};
use crate::linalg;
use crate::moments;
use crate::partial::{Local, Passes};
use crate::progress::{Progress, Silent};

/// Settings of the spectrum report; the defaults are those of METRICS.md.
#[derive(Clone, Debug)]
pub struct SpectrumConfig {
    /// Coding-rate distortion ε² (not ε).
    pub eps2: f64,
    /// α-ReQ rank window, 1-based and inclusive, clipped to the available rank.
    pub alpha_window: (usize, usize),
    /// How many rogue dimensions to list.
    pub top_rogue: usize,
    /// Whether to compute the coding rate (off by default). It needs the Gram matrix of the unit rows, a
    /// second d × d product per pass as costly as the covariance's; without it the report's coding rate is
    /// None.
    pub coding_rate: bool,
    /// Whether to find exact duplicate rows: a hash per row in the same pass (8 bytes a row, so memory is
    /// no longer O(d²) alone), and a second pass comparing values only when two rows share a hash.
    pub duplicates: bool,
    /// Rows per chunk of the pass (None: about 2²⁰ values); changes only the last digits.
    pub chunk_rows: Option<usize>,
}

impl Default for SpectrumConfig {
    fn default() -> Self {
        SpectrumConfig {
            eps2: 0.5,
            alpha_window: (11, 100),
            top_rogue: 10,
            coding_rate: false,
            duplicates: false,
            chunk_rows: None,
        }
    }
}

/// Roy & Vetterli's effective rank of a matrix's singular values, with whether the matrix was centred.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct EffectiveRank {
    pub value: f64,
    /// Whether the column means were subtracted before taking singular values.
    pub centred: bool,
    /// exp(−Σ p log p), p_k = σ_k/Σσ + 1e-7 over the min(n, d) singular values σ (not σ²).
    pub variant: String,
}

/// The coding rate R = ½ logdet(I + d/(n ε²) ZᵀZ) on L2-normalised rows.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct CodingRate {
    pub value: f64,
    pub eps2: f64,
    /// "d x d" or "n x n": which of the two equal determinants was computed.
    pub form: String,
}

/// One rogue dimension: its contribution to the mean cosine similarity and its share of it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RogueDimension {
    /// Column index (0-based).
    pub dim: usize,
    /// ((Σ_i u_ij)² − Σ_i u_ij²) / (n(n−1)).
    pub contribution: f64,
    /// contribution / anisotropy.
    pub share: f64,
}

/// Everything `repscope spectrum` reports.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SpectrumReport {
    pub n: usize,
    pub d: usize,
    /// Centred covariance eigenvalues (divided by n − 1), largest first.
    pub eigenvalues: Vec<f64>,
    /// Each eigenvalue's fraction of the total variance.
    pub explained_variance_ratio: Vec<f64>,
    /// Σ λ (the trace of the covariance).
    pub total_variance: f64,
    /// Effective rank of the centred data.
    pub effective_rank: EffectiveRank,
    /// RankMe (Garrido et al. 2023): the effective rank of the uncentred data.
    pub rankme: EffectiveRank,
    /// (Σλ)² / Σλ².
    pub participation_ratio: f64,
    /// None when the available rank leaves fewer than three points in the window.
    pub alpha_req: Option<AlphaReq>,
    /// None when the configuration left it out.
    pub coding_rate: Option<CodingRate>,
    /// Mean cosine similarity over all distinct pairs, (‖Σu_i‖² − n) / (n(n−1)).
    pub anisotropy: f64,
    /// Dimensions by contribution to the anisotropy, largest first.
    pub rogue_dimensions: Vec<RogueDimension>,
    /// Number of eigenvalues above λ₁·max(n, d)·ε.
    pub numerical_rank: usize,
    /// Exact duplicate rows, when the configuration asked for them.
    pub duplicates: Option<Duplicates>,
    pub notes: Vec<String>,
}

/// A compact summary for per-layer tables.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct SpectrumSummary {
    pub effective_rank: f64,
    pub rankme: f64,
    pub participation_ratio: f64,
    pub alpha: Option<f64>,
    pub alpha_r2: Option<f64>,
    pub anisotropy: f64,
    pub top_rogue_dim: Option<usize>,
    pub top_rogue_share: Option<f64>,
    pub coding_rate: Option<f64>,
    pub top1_variance_fraction: f64,
}

impl SpectrumReport {
    /// The numbers a layer table shows.
    pub fn summary(&self) -> SpectrumSummary {
        SpectrumSummary {
            effective_rank: self.effective_rank.value,
            rankme: self.rankme.value,
            participation_ratio: self.participation_ratio,
            alpha: self.alpha_req.as_ref().map(|a| a.alpha),
            alpha_r2: self.alpha_req.as_ref().map(|a| a.r2),
            anisotropy: self.anisotropy,
            top_rogue_dim: self.rogue_dimensions.first().map(|r| r.dim),
            top_rogue_share: self.rogue_dimensions.first().map(|r| r.share),
            coding_rate: self.coding_rate.as_ref().map(|c| c.value),
            top1_variance_fraction: self
                .explained_variance_ratio
                .first()
                .copied()
                .unwrap_or(f64::NAN),
        }
    }
}

/// Computes the whole spectrum report of a matrix. `m` must be finite (see [`crate::data::check_finite`]).
pub fn analyse(m: &Matrix, cfg: &SpectrumConfig) -> Result<SpectrumReport> {
    analyse_source(m, cfg, &Silent)
}

/// The whole spectrum report of a row source (a matrix, a file or shards), from one pass that takes the
/// moments of the rows and of the unit rows, plus a second pass only when the outlier check of the top
/// direction cannot be settled from the first (see [`Spectrum::from_moments`]). Memory is O(d²) plus two
/// chunks of rows.
pub fn analyse_source(
    src: &dyn RowSource,
    cfg: &SpectrumConfig,
    progress: &dyn Progress,
) -> Result<SpectrumReport> {
    Ok(analyse_with_principal(src, cfg, progress)?.0)
}

/// [`analyse_source`], and the one decomposition it was computed from, for the measures that also need
/// the principal directions (the report's map of the points).
pub fn analyse_with_principal(
    src: &dyn RowSource,
    cfg: &SpectrumConfig,
    progress: &dyn Progress,
) -> Result<(SpectrumReport, crate::decomposition::Principal)> {
    analyse_passes(&Local(src), cfg, progress)
}

/// [`analyse_with_principal`] of rows read through passes, in this process or on a cluster.
pub fn analyse_passes(
    src: &dyn Passes,
    cfg: &SpectrumConfig,
    progress: &dyn Progress,
) -> Result<(SpectrumReport, crate::decomposition::Principal)> {
    let (n, d) = (src.rows(), src.cols());
    if n < 2 {
        return Err(Error::data(
            src.name(),
            format!("the spectrum needs at least 2 rows, got {n}"),
            "pass more rows",
        ));
    }
    if !(cfg.eps2 > 0.0 && cfg.eps2.is_finite()) {
        return Err(Error::param(
            Param::Eps2,
            format!("ε² = {} must be positive", cfg.eps2),
            "use the default 0.5 or another positive value",
        ));
    }
    let pass = moments::PassConfig {
        rows: true,
        unit_rows: true,
        unit_gram: cfg.coding_rate,
        row_hashes: cfg.duplicates,
        chunk_rows: cfg.chunk_rows,
    };
    let mut mom = moments::moments_of(src, &pass, progress)?;
    let spec = Spectrum::from_moments(&mom, src, progress)?;
    let mut notes = spec.notes.clone();
    let duplicates = match mom.row_hashes.take() {
        Some(h) => Some(src.duplicates(h, false, progress)?.0),
        None => None,
    };
    if let Some(dup) = duplicates.as_ref().filter(|d| d.has_duplicates()) {
        notes.push(format!(
            "{} of {n} rows repeat an earlier row ({} distinct values repeated, the largest group {} rows); every measure here counts each row",
            dup.merged, dup.groups, dup.max_multiplicity
        ));
    }
    let ev = spec.eigenvalues.clone();
    let total: f64 = ev.iter().sum();
    let evr: Vec<f64> = ev.iter().map(|l| l / total).collect();
    let eps = f64::EPSILON;
    let tol = ev[0] * (n.max(d) as f64) * eps;
    let numerical_rank = ev.iter().filter(|&&l| l > tol).count();

    // Singular values of the data, centred and not: square roots of the scatter matrices' eigenvalues.
    let k = n.min(d);
    let sv_c: Vec<f64> = ev
        .iter()
        .take(k)
        .map(|&l| (l * (n - 1) as f64).sqrt())
        .collect();
    let sv_u: Vec<f64> = linalg::sym_eigenvalues_desc(mom.uncentred_scatter().as_ref())?
        .iter()
        .take(k)
        .map(|&l| l.max(0.0).sqrt())
        .collect();
    let variant = "exp(-sum p log p), p_k = sigma_k/sum(sigma) + 1e-7 over min(n,d) singular values (sigma, not sigma^2)".to_string();
    let effective_rank_c = EffectiveRank {
        value: effective_rank(&sv_c),
        centred: true,
        variant: variant.clone(),
    };
    let rankme = EffectiveRank {
        value: effective_rank(&sv_u),
        centred: false,
        variant,
    };
    if n < 25_000 {
        notes.push(format!(
            "RankMe is specified for about 25k rows (n >> d); this input has {n}, so it is a small-sample value"
        ));
    }
    let participation_ratio = spec.dimension(PcaRule::ParticipationRatio);
    let alpha = alpha_req(&ev, cfg.alpha_window, numerical_rank);
    if alpha.is_none() {
        notes.push(format!(
            "alpha-ReQ not computed: the window {:?} leaves fewer than 3 ranks below the numerical rank {numerical_rank}",
            cfg.alpha_window
        ));
    }
    let unit = UnitRowStats::from_moments(&mom, src.name(), cfg.eps2)?;
    if unit.zero_rows > 0 {
        notes.push(format!(
            "{} all-zero rows have no direction: anisotropy, coding rate and the rogue dimensions use the other {} rows",
            unit.zero_rows, unit.n
        ));
    }
    let rogue = unit.rogue(cfg.top_rogue);
    // Variances in the data's own units (the pass may have scaled tiny f64 rows; see the note then).
    let unscale = 1.0 / (spec.scale * spec.scale);
    let report = SpectrumReport {
        n,
        d,
        explained_variance_ratio: evr,
        total_variance: total * unscale,
        eigenvalues: ev.iter().map(|l| l * unscale).collect(),
        effective_rank: effective_rank_c,
        rankme,
        participation_ratio,
        alpha_req: alpha,
        coding_rate: unit.coding_rate.map(|(value, form)| CodingRate {
            value,
            eps2: cfg.eps2,
            form: form.to_string(),
        }),
        anisotropy: unit.anisotropy,
        rogue_dimensions: rogue,
        numerical_rank,
        duplicates,
        notes,
    };
    Ok((report, spec.principal))
}
