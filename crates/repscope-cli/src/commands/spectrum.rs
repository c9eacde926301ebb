//! `repscope spectrum`: covariance spectrum, effective rank / RankMe, α-ReQ, coding rate, anisotropy.
use clap::Args;
use repscope::spectrum::{self, SpectrumConfig, SpectrumReport};

use super::{print_json, SourceInput};
use crate::progress::Bars;
use crate::table::{num, Table};
use crate::{usage, CliResult, Global};

#[derive(Args, Debug)]
pub struct SpectrumArgs {
    #[command(flatten)]
    pub input: SourceInput,
    /// Coding-rate distortion ε² (the squared ε of MCR²).
    #[arg(long, default_value_t = 0.5)]
    pub eps2: f64,
    /// α-ReQ rank window, 1-based and inclusive: FIRST,LAST (clipped to the numerical rank).
    #[arg(long, default_value = "11,100")]
    pub alpha_window: String,
    /// How many rogue dimensions to list.
    #[arg(long, default_value_t = 10)]
    pub top_rogue: usize,
    /// Also compute the coding rate (MCR²). It needs the Gram matrix of the unit rows, a second d × d
    /// product as costly as the covariance's, so the pass takes about twice as long with it.
    #[arg(long, overrides_with = "no_coding_rate")]
    pub coding_rate: bool,
    /// Leave out the coding rate (the default; kept for scripts written when it was on by default).
    #[arg(long, hide = true, overrides_with = "coding_rate")]
    pub no_coding_rate: bool,
    /// Also find exact duplicate rows: a hash of every row in the same pass (8 bytes a row), and a pass
    /// comparing values only where two rows share a hash.
    #[arg(long)]
    pub duplicates: bool,
    /// How many leading eigenvalues the table shows (JSON always has all).
    #[arg(long, default_value_t = 10)]
    pub show: usize,
}

fn window(s: &str) -> Result<(usize, usize), crate::Failure> {
    let bad = || {
        usage(format!(
            "--alpha-window '{s}': expected FIRST,LAST with 1 ≤ FIRST < LAST, e.g. 11,100"
        ))
    };
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b <= a {
        return Err(bad());
    }
    Ok((a, b))
}

pub fn run(a: &SpectrumArgs, g: &Global) -> CliResult {
    let cfg = SpectrumConfig {
        eps2: a.eps2,
        alpha_window: window(&a.alpha_window)?,
        top_rogue: a.top_rogue,
        coding_rate: a.coding_rate && !a.no_coding_rate,
        duplicates: a.duplicates,
        chunk_rows: None,
    };
    let src = a.input.open()?;
    let input = a.input.describe(&*src);
    let bars = Bars::new(g.quiet);
    let r = spectrum::analyse_source(&*src, &cfg, &bars)?;
    if g.json {
        print_json(&repscope::documents::spectrum(&r, input, &cfg))
    } else {
        print!("{}", render(&r, src.name(), a.show));
        Ok(())
    }
}

pub fn render(r: &SpectrumReport, name: &str, show: usize) -> String {
    let mut out = format!(
        "{name}: n = {}, d = {}, numerical rank {}\n\n",
        r.n, r.d, r.numerical_rank
    );
    let mut t = Table::new(&["measure", "value", "definition"]);
    t.row(vec![
        "effective rank (centred)".into(),
        num(r.effective_rank.value),
        "exp entropy of sigma/sum(sigma), centred".into(),
    ]);
    t.row(vec![
        "RankMe (uncentred)".into(),
        num(r.rankme.value),
        "exp entropy of sigma/sum(sigma), not centred".into(),
    ]);
    t.row(vec![
        "participation ratio".into(),
        num(r.participation_ratio),
        "(sum lambda)^2 / sum lambda^2".into(),
    ]);
    match &r.alpha_req {
        Some(a) => t.row(vec![
            "alpha-ReQ".into(),
            num(a.alpha),
            format!(
                "slope of log lambda on -log i, ranks {}..{}, R^2 = {:.4}",
                a.window[0], a.window[1], a.r2
            ),
        ]),
        None => t.row(vec![
            "alpha-ReQ".into(),
            "-".into(),
            "window too short for the rank".into(),
        ]),
    }
    match &r.coding_rate {
        Some(c) => t.row(vec![
            "coding rate".into(),
            num(c.value),
            format!("eps2 = {}, unit rows ({} form)", c.eps2, c.form),
        ]),
        None => t.row(vec![
            "coding rate".into(),
            "-".into(),
            "not computed: pass --coding-rate".into(),
        ]),
    }
    t.row(vec![
        "anisotropy".into(),
        num(r.anisotropy),
        "mean cosine over distinct pairs".into(),
    ]);
    t.row(vec![
        "total variance".into(),
        num(r.total_variance),
        "trace of the covariance".into(),
    ]);
    if let Some(dup) = &r.duplicates {
        t.row(super::duplicates_row(dup));
    }
    out.push_str(&t.render());
    out.push_str("\nleading components\n");
    let mut t = Table::new(&["component", "eigenvalue", "explained", "cumulative"]);
    let mut cum = 0.0;
    for (i, (l, f)) in r
        .eigenvalues
        .iter()
        .zip(&r.explained_variance_ratio)
        .enumerate()
        .take(show)
    {
        cum += f;
        t.row(vec![
            (i + 1).to_string(),
            num(*l),
            format!("{:.4}", f),
            format!("{:.4}", cum),
        ]);
    }
    out.push_str(&t.render());
    if !r.rogue_dimensions.is_empty() {
        out.push_str("\nrogue dimensions (share of the mean cosine similarity)\n");
        let mut t = Table::new(&["dim", "contribution", "share"]);
        for d in &r.rogue_dimensions {
            t.row(vec![
                d.dim.to_string(),
                num(d.contribution),
                format!("{:.4}", d.share),
            ]);
        }
        out.push_str(&t.render());
    }
    if !r.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &r.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}
