//! The summary that opens each input of the report: a few sentences written from the measures by fixed
//! rules (docs/METRICS.md, "The report's summary"), never tuned per dataset. Every number in a sentence
//! is a [`Fact`] that names the JSON pointer of the value it shows, so the page and a test can check that
//! the sentence says what the measures say.
use serde::{Deserialize, Serialize};

use crate::activations::ActivationReport;
use crate::classes::ClassReport;
use crate::intrinsic::suite::{IdReport, ScalePoint};
use crate::spectrum::SpectrumReport;

/// One number of a sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// The value as stored at `pointer`.
    pub value: f64,
    /// RFC 6901 pointer of the value, relative to the input's object in report.json.
    pub pointer: String,
    /// The sentence shows value × scale (100 for a percentage).
    pub scale: f64,
    /// Whether the value is a count (shown without decimals).
    pub integer: bool,
}

impl Fact {
    fn new(value: f64, pointer: impl Into<String>) -> Fact {
        Fact {
            value,
            pointer: pointer.into(),
            scale: 1.0,
            integer: false,
        }
    }
    fn count(value: usize, pointer: impl Into<String>) -> Fact {
        Fact {
            integer: true,
            ..Fact::new(value as f64, pointer)
        }
    }
    fn percent(value: f64, pointer: impl Into<String>) -> Fact {
        Fact {
            scale: 100.0,
            ..Fact::new(value, pointer)
        }
    }
    /// The number as the sentence shows it: counts and whole numbers without decimals, anything else to
    /// three significant digits.
    pub fn shown(&self) -> String {
        let v = self.value * self.scale;
        if self.integer || (v.fract() == 0.0 && v.abs() < 1e9) {
            format!("{}", v.round() as i64)
        } else {
            three_digits(v)
        }
    }
}

/// A number to three significant digits (whole numbers from 1000 on, an exponent below 0.001).
pub fn three_digits(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() || a == 0.0 {
        return format!("{v}");
    }
    if a < 1e-3 {
        return format!("{v:.2e}");
    }
    if a >= 1000.0 {
        return format!("{}", v.round() as i64);
    }
    let order = a.log10().floor() as i32;
    let decimals = (2 - order).max(0) as usize;
    let s = format!("{v:.decimals$}");
    // Rounding can carry into the next power of ten (99.96 → "100.0"); one decimal fewer then.
    let carried = s.parse::<f64>().map(f64::abs).unwrap_or(0.0) >= 10f64.powi(order + 1);
    if decimals > 0 && carried {
        format!("{v:.prec$}", prec = decimals - 1)
    } else {
        s
    }
}

/// One sentence: its topic, the template with `{0}`, `{1}`, … where the facts go, and the text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Line {
    /// "intrinsic_dimension", "spectrum", "classes", "activations", "sae", "search", "neighbours" or
    /// "warning".
    pub topic: String,
    pub template: String,
    pub facts: Vec<Fact>,
    /// The sentence with the facts written in.
    pub text: String,
}

impl Line {
    fn new(topic: &str, template: String, facts: Vec<Fact>) -> Line {
        let mut text = template.clone();
        for (i, f) in facts.iter().enumerate() {
            text = text.replace(&format!("{{{i}}}"), &f.shown());
        }
        Line {
            topic: topic.into(),
            template,
            facts,
            text,
        }
    }

    /// The sentence in pieces: text, then a fact's index, in order.
    pub fn pieces(&self) -> Vec<Piece<'_>> {
        let mut out = Vec::new();
        let mut rest = self.template.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                break;
            };
            match rest[open + 1..close].parse::<usize>() {
                Ok(i) if i < self.facts.len() => {
                    out.push(Piece::Text(&rest[..open]));
                    out.push(Piece::Fact(i));
                }
                _ => out.push(Piece::Text(&rest[..=close])),
            }
            rest = &rest[close + 1..];
        }
        out.push(Piece::Text(rest));
        out
    }
}

/// A piece of a sentence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Piece<'a> {
    Text(&'a str),
    Fact(usize),
}

/// A sentence being written: text, with a `{i}` slot wherever fact i goes. Clauses after the first are
/// joined by "; ", and the first is capitalised.
#[derive(Default)]
struct Sentence {
    template: String,
    facts: Vec<Fact>,
    /// Whether a clause is open (the next one continues it, and `end` closes it).
    open: bool,
}

impl Sentence {
    /// Appends text; braces are dropped, as they would read as fact slots.
    fn text(&mut self, t: &str) -> &mut Self {
        self.template.push_str(&t.replace(['{', '}'], ""));
        self
    }
    /// Appends the slot of a fact.
    fn fact(&mut self, f: Fact) -> &mut Self {
        self.template.push_str(&format!("{{{}}}", self.facts.len()));
        self.facts.push(f);
        self
    }
    /// Starts a clause: a new sentence the first time, else "; " and the clause.
    fn clause(&mut self, t: &str) -> &mut Self {
        if self.open {
            self.text("; ").text(t)
        } else {
            self.open = true;
            let mut c = t.chars();
            let first: String = c
                .next()
                .map(|f| f.to_uppercase().collect())
                .unwrap_or_default();
            self.text(" ").text(&(first + c.as_str()))
        }
    }
    /// Closes the open clause with a full stop.
    fn end(&mut self) -> &mut Self {
        if self.open {
            self.open = false;
            self.text(".");
        }
        self
    }
    fn line(mut self, topic: &str) -> Line {
        self.end();
        Line::new(topic, self.template, self.facts)
    }
}

/// The summary of one input: sentences, then warnings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    pub lines: Vec<Line>,
    pub warnings: Vec<Line>,
}

/// What the summary reads: the typed results of the input's sections (None where a section failed or was
/// not asked for), and the input's own counts.
pub struct Inputs<'a> {
    pub id: Option<&'a IdReport>,
    pub spectrum: Option<&'a SpectrumReport>,
    pub activations: Option<&'a ActivationReport>,
    pub classes: Option<&'a ClassReport>,
    pub sae: Option<&'a crate::sae::eval::EvalReport>,
    pub search: Option<&'a crate::search::study::StudyReport>,
    /// Rows merged as duplicates before the neighbour measures.
    pub duplicates_merged: usize,
    /// (rows analysed, rows in the file) when a sample was analysed.
    pub sample: Option<(usize, usize)>,
    /// Sections that failed, with their notes.
    pub failed: Vec<(String, String)>,
}

const ID: &str = "/sections/intrinsic_dimension/value";
const SPECTRUM: &str = "/sections/spectrum/value";
const CLASSES: &str = "/sections/classes/value";
const ACTIVATIONS: &str = "/sections/activations/value";
const SAE: &str = "/sections/sae/value";
const SEARCH: &str = "/sections/search/value";

/// Whether an estimate is one of the PCA rules (they count linear directions).
fn is_pca_rule(name: &str) -> bool {
    name.starts_with("pca_")
}

/// The summary, by the rules of docs/METRICS.md.
pub fn summarise(inp: &Inputs) -> Summary {
    let mut s = Summary::default();
    if let Some(id) = inp.id {
        if let Some(l) = id_line(id) {
            s.lines.push(l);
        }
    }
    if let Some(sp) = inp.spectrum {
        s.lines.push(spectrum_line(sp, inp.id));
    }
    if let Some(c) = inp.classes {
        s.lines.push(classes_line(c));
    }
    if let Some(a) = inp.activations {
        let mut t = Sentence::default();
        t.text("Activations:");
        if let Some(g) = a.outlier_ratio.filter(|g| g.is_finite()) {
            t.text(" outlier ratio ‖mean‖/‖std‖ ")
                .fact(Fact::new(g, format!("{ACTIVATIONS}/outlier_ratio")))
                .text(";");
        }
        t.text(" ")
            .fact(Fact::percent(
                a.zero_fraction,
                format!("{ACTIVATIONS}/zero_fraction"),
            ))
            .text("% of the values are exactly zero; the mean row norm is ")
            .fact(Fact::new(
                a.mean_row_norm,
                format!("{ACTIVATIONS}/mean_row_norm"),
            ))
            .text(".");
        s.lines.push(t.line("activations"));
    }
    if let Some(e) = inp.sae {
        s.lines.push(Line::new(
            "sae",
            "The SAE's {0} latents leave {1} of the variance unexplained (FVU) with {2} active per row; {3} never fire.".into(),
            vec![
                Fact::count(e.width, format!("{SAE}/width")),
                Fact::new(e.fvu, format!("{SAE}/fvu")),
                Fact::new(e.l0, format!("{SAE}/l0")),
                Fact::count(e.dead_latents, format!("{SAE}/dead_latents")),
            ],
        ));
    }
    if let Some(st) = inp.search {
        s.lines.push(search_line(st));
    }
    if let Some(cert) = inp.id.and_then(|id| id.neighbours.as_ref()) {
        let p = format!("{ID}/neighbours");
        let redone = cert.recomputed + cert.exhaustive;
        let line = if !cert.exact {
            Line::new(
                "warning",
                "The neighbour graph is approximate: {0} rows are not proven.".into(),
                vec![Fact::count(cert.rows, format!("{p}/rows"))],
            )
        } else if redone > 0 {
            Line::new(
                "warning",
                "The neighbour graph is exact on all {0} distinct rows: {1} were certified by the f32 pass's rounding bound, and {2} it could not prove were recomputed exactly in f64 (tight clusters or repeated tokens).".into(),
                vec![
                    Fact::count(cert.rows, format!("{p}/rows")),
                    Fact::count(cert.certified, format!("{p}/certified")),
                    Fact::count(cert.recomputed, format!("{p}/recomputed")),
                ],
            )
        } else {
            Line::new(
                "neighbours",
                "The neighbour graph is exact: all {0} distinct rows were certified by the f32 pass's rounding bound.".into(),
                vec![Fact::count(cert.rows, format!("{p}/rows"))],
            )
        };
        if line.topic == "warning" {
            s.warnings.push(line);
        } else {
            s.lines.push(line);
        }
    }
    if inp.duplicates_merged > 0 {
        s.warnings.push(Line::new(
            "warning",
            "{0} rows repeat an earlier row; the neighbour measures read each distinct row once."
                .into(),
            vec![Fact::count(inp.duplicates_merged, "/duplicates_merged")],
        ));
    }
    if let Some((a, f)) = inp.sample {
        s.warnings.push(Line::new(
            "warning",
            "A seeded sample of {0} of the {1} rows was analysed (the activation statistics read every row).".into(),
            vec![
                Fact::count(a, "/sample/rows_analysed"),
                Fact::count(f, "/sample/rows_in_file"),
            ],
        ));
    }
    if let Some(t) = inp
        .classes
        .and_then(|c| c.knn_accuracy.as_ref())
        .filter(|a| a.n_points_with_tied_vote > 0)
    {
        s.warnings.push(Line::new(
            "warning",
            "{0} rows had a tied kNN vote (ties go to the label of the nearest neighbour).".into(),
            vec![Fact::count(
                t.n_points_with_tied_vote,
                format!("{CLASSES}/knn_accuracy/n_points_with_tied_vote"),
            )],
        ));
    }
    if let Some(m) = inp.activations.map(|a| &a.massive).filter(|m| m.count > 0) {
        s.warnings.push(Line::new(
            "warning",
            "Massive activations: {0} values in {1} rows exceed both |a| > {2} and {3} × their row's median |a|.".into(),
            vec![
                Fact::count(m.count as usize, format!("{ACTIVATIONS}/massive/count")),
                Fact::count(m.rows as usize, format!("{ACTIVATIONS}/massive/rows")),
                Fact::new(m.abs_threshold, format!("{ACTIVATIONS}/massive/abs_threshold")),
                Fact::new(m.ratio_threshold, format!("{ACTIVATIONS}/massive/ratio_threshold")),
            ],
        ));
    }
    for (name, note) in &inp.failed {
        let mut w = Sentence::default();
        w.text(&format!("The {name} section failed: {note}"));
        s.warnings.push(w.line("warning"));
    }
    s
}

/// "Intrinsic dimension about X (estimator). The neighbour estimators range from A (a) to B (b); across
/// scales it reads C at neighbour distance r and D at r′. The PCA rules count P to Q linear directions."
fn id_line(id: &IdReport) -> Option<Line> {
    let rec = id.dimension.as_ref()?;
    let est = |i: usize| Fact::new(id.estimates[i].value, format!("{ID}/estimates/{i}/value"));
    let mut t = Sentence::default();
    t.text("Intrinsic dimension about ")
        .fact(Fact::new(rec.value, format!("{ID}/dimension/value")))
        .text(&format!(" ({}).", rec.estimator));
    // The smallest and largest finite estimate of the neighbour estimators (pca = false) or PCA rules.
    let pick = |pca: bool| -> Option<(usize, usize)> {
        let vals = id
            .estimates
            .iter()
            .enumerate()
            .filter(|(_, e)| is_pca_rule(&e.estimator) == pca && e.value.is_finite());
        let lo = vals
            .clone()
            .min_by(|a, b| a.1.value.total_cmp(&b.1.value))?
            .0;
        let hi = vals.max_by(|a, b| a.1.value.total_cmp(&b.1.value))?.0;
        Some((lo, hi))
    };
    if let Some((lo, hi)) = pick(false).filter(|(l, h)| l != h) {
        t.clause("the neighbour estimators range from ")
            .fact(est(lo))
            .text(&format!(" ({}) to ", id.estimates[lo].estimator))
            .fact(est(hi))
            .text(&format!(" ({})", id.estimates[hi].estimator));
    }
    // (index, d, neighbour distance, its field) of each finite point of the scale curve.
    let curve: Vec<(usize, f64, f64, &str)> = id
        .scale_curve
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            ScalePoint::Gride(g) => (i, g.d, g.mean_r_n2, "mean_r_n2"),
            ScalePoint::Decimation(q) => (i, q.d, q.mean_r1, "mean_r1"),
        })
        .filter(|p| p.1.is_finite() && p.2.is_finite())
        .collect();
    let lo = curve.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let hi = curve.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(lo), Some(hi)) = (lo, hi) {
        if lo.0 != hi.0 {
            let d =
                |p: &(usize, f64, f64, &str)| Fact::new(p.1, format!("{ID}/scale_curve/{}/d", p.0));
            let r = |p: &(usize, f64, f64, &str)| {
                Fact::new(p.2, format!("{ID}/scale_curve/{}/{}", p.0, p.3))
            };
            t.clause("across scales it reads ")
                .fact(d(lo))
                .text(" at neighbour distance ")
                .fact(r(lo))
                .text(" and ")
                .fact(d(hi))
                .text(" at ")
                .fact(r(hi));
        }
    }
    t.end();
    if let Some((lo, hi)) = pick(true) {
        if lo == hi {
            t.text(" The PCA rule counts ").fact(est(lo));
        } else {
            t.text(" The PCA rules count ")
                .fact(est(lo))
                .text(" to ")
                .fact(est(hi));
        }
        t.text(" linear directions, an upper bound for curved data.");
    }
    Some(t.line("intrinsic_dimension"))
}

/// "Variance spreads over about PR directions (participation ratio); P% of it lies in the top one[, and
/// K directions hold 95%][; the rows share a common direction (mean cosine A)]."
fn spectrum_line(sp: &SpectrumReport, id: Option<&IdReport>) -> Line {
    let mut t = Sentence::default();
    t.text("Variance spreads over about ")
        .fact(Fact::new(
            sp.participation_ratio,
            format!("{SPECTRUM}/participation_ratio"),
        ))
        .text(" directions (participation ratio)");
    if let Some(&top) = sp.explained_variance_ratio.first() {
        t.text("; ")
            .fact(Fact::percent(
                top,
                format!("{SPECTRUM}/explained_variance_ratio/0"),
            ))
            .text("% of it lies in the top one");
    }
    if let Some((i, e)) = id.and_then(|id| {
        id.estimates
            .iter()
            .enumerate()
            .find(|(_, e)| e.estimator == "pca_ev")
    }) {
        t.text(", and ")
            .fact(Fact::new(e.value, format!("{ID}/estimates/{i}/value")))
            .text(" directions hold 95%");
    }
    // Anisotropy above 0.2 is worth a clause: the mean cosine of random directions is about 0.
    if sp.anisotropy.is_finite() && sp.anisotropy >= 0.2 {
        t.text("; the rows share a common direction (mean cosine ")
            .fact(Fact::new(sp.anisotropy, format!("{SPECTRUM}/anisotropy")))
            .text(")");
    }
    t.text(".");
    t.line("spectrum")
}

/// "HNSW with M m and ef_search e finds R of the exact k neighbours of Q held-out queries; the ef_search
/// sweep reaches R′ at ef_search e′. The smallest representation keeping recall T is C (B bytes per
/// vector, recall R″)."
fn search_line(st: &crate::search::study::StudyReport) -> Line {
    let u = &st.user;
    let mut t = Sentence::default();
    t.text("HNSW with M ")
        .fact(Fact::count(u.m, format!("{SEARCH}/user/m")))
        .text(" and ef_search ")
        .fact(Fact::count(u.ef_search, format!("{SEARCH}/user/ef_search")))
        .text(" finds ")
        .fact(Fact::new(u.recall, format!("{SEARCH}/user/recall")))
        .text(" of the exact ")
        .fact(Fact::count(st.k, format!("{SEARCH}/k")))
        .text(" neighbours of ")
        .fact(Fact::count(st.n_queries, format!("{SEARCH}/n_queries")))
        .text(" held-out queries");
    if let Some((i, best)) = st
        .ef_curve
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.recall.total_cmp(&b.1.recall).then(b.0.cmp(&a.0)))
    {
        t.text("; the ef_search sweep reaches ")
            .fact(Fact::new(
                best.recall,
                format!("{SEARCH}/ef_curve/{i}/recall"),
            ))
            .text(" at ef_search ")
            .fact(Fact::count(
                best.ef_search,
                format!("{SEARCH}/ef_curve/{i}/ef_search"),
            ));
    }
    t.text(".");
    if let Some(a) = st.compression.as_ref().map(|c| &c.advice) {
        let at = |f: &str| format!("{SEARCH}/compression/advice/{f}");
        t.text(" The smallest representation keeping recall ")
            .fact(Fact::new(a.target_recall, at("target_recall")))
            .text(&format!(" is {} (", a.choice))
            .fact(Fact::count(a.bytes_per_vector, at("bytes_per_vector")))
            .text(" bytes per vector, recall ")
            .fact(Fact::new(a.recall, at("recall")))
            .text(").");
    }
    t.line("search")
}

/// How the mean CDNV reads: below 0.1 the classes are well separated, below 1 they partly overlap, and
/// from 1 on the within-class spread matches the distance between class means.
pub fn separation_words(cdnv: f64) -> &'static str {
    if cdnv < 0.1 {
        "well separated"
    } else if cdnv < 1.0 {
        "partly overlapping"
    } else {
        "overlapping"
    }
}

/// "C classes, S: nearest-class-centre accuracy A, leave-one-out k-NN accuracy B, mean CDNV Z; the most
/// overlapping pair is a and b (CDNV W)."
fn classes_line(c: &ClassReport) -> Line {
    let words = if c.cdnv.is_finite() {
        separation_words(c.cdnv)
    } else {
        "with coinciding class means"
    };
    let mut t = Sentence::default();
    t.fact(Fact::count(c.n_classes, format!("{CLASSES}/n_classes")))
        .text(&format!(
            " classes, {words}: nearest-class-centre accuracy "
        ))
        .fact(Fact::new(c.ncc_accuracy, format!("{CLASSES}/ncc_accuracy")));
    if let Some(k) = &c.knn_accuracy {
        t.text(&format!(", leave-one-out {}-NN accuracy ", k.k))
            .fact(Fact::new(
                k.accuracy,
                format!("{CLASSES}/knn_accuracy/accuracy"),
            ));
    }
    if c.cdnv.is_finite() {
        t.text(", mean CDNV ")
            .fact(Fact::new(c.cdnv, format!("{CLASSES}/cdnv")));
    }
    let p = &c.pairs;
    let mut worst: Option<(usize, usize, f64)> = None;
    for (i, row) in p.cdnv.iter().enumerate() {
        for (j, v) in row.iter().enumerate().skip(i + 1) {
            if let Some(v) = *v {
                if worst.is_none_or(|w| v > w.2) {
                    worst = Some((i, j, v));
                }
            }
        }
    }
    if let Some((i, j, v)) = worst {
        t.text(&format!(
            "; the most overlapping pair is {} and {} (CDNV ",
            c.class_names[p.classes[i]], c.class_names[p.classes[j]]
        ))
        .fact(Fact::new(v, format!("{CLASSES}/pairs/cdnv/{i}/{j}")))
        .text(")");
    }
    t.text(".");
    t.line("classes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_the_template_at_each_fact() {
        let l = Line::new(
            "spectrum",
            "about {0} directions; {1}% in the top".into(),
            vec![Fact::new(12.0, "/a"), Fact::percent(0.05, "/b")],
        );
        assert_eq!(l.text, "about 12 directions; 5% in the top");
        assert_eq!(
            l.pieces(),
            vec![
                Piece::Text("about "),
                Piece::Fact(0),
                Piece::Text(" directions; "),
                Piece::Fact(1),
                Piece::Text("% in the top"),
            ]
        );
        assert_eq!(Fact::count(7, "/c").shown(), "7");
    }

    #[test]
    fn clauses_join_with_semicolons_and_names_cannot_open_a_slot() {
        let mut t = Sentence::default();
        t.text("Start.")
            .clause("first ")
            .fact(Fact::new(1.5, "/a"))
            .clause("second {0} ")
            .fact(Fact::count(3, "/b"))
            .end()
            .text(" Done.");
        let l = t.line("x");
        assert_eq!(l.template, "Start. First {0}; second 0 {1}. Done.");
        assert_eq!(l.text, "Start. First 1.50; second 0 3. Done.");
        let mut u = Sentence::default();
        u.text("No clause");
        assert_eq!(u.line("x").text, "No clause", "nothing to close");
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(three_digits(29.883), "29.9");
        assert_eq!(three_digits(1.0659), "1.07");
        assert_eq!(three_digits(114.357), "114");
        assert_eq!(three_digits(0.6384), "0.638");
        assert_eq!(three_digits(0.0123456), "0.0123");
        assert_eq!(three_digits(99.96), "100");
        assert_eq!(three_digits(9.996), "10.0");
        assert_eq!(three_digits(2345.6), "2346");
        assert_eq!(three_digits(0.00012345), "1.23e-4");
        assert_eq!(three_digits(-5.306), "-5.31");
    }

    #[test]
    fn separation_follows_the_documented_thresholds() {
        assert_eq!(separation_words(0.05), "well separated");
        assert_eq!(separation_words(0.5), "partly overlapping");
        assert_eq!(separation_words(3.0), "overlapping");
    }
}
