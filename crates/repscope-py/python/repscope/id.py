"""Intrinsic-dimension estimators in scikit-dimension's style.

Each estimator is configured in its constructor, fitted with ``.fit(X)`` (which returns the estimator) and
then carries ``dimension_`` (the estimate), ``stderr_`` (its standard error where the method defines one, else
None) and, for per-point estimators, ``dimension_pw_`` (one value per input row). Parameter names follow
scikit-dimension (skdim 0.5.0) where the meaning is the same; each docstring says where repscope differs.

What every estimator does differently from scikit-dimension:

- Exact duplicate rows are grouped first and the neighbour estimators run on the distinct rows; per-point
  values are mapped back to every input row. A duplicated row therefore never yields a zero distance, which
  makes skdim's MLE return 0 (and other estimators NaN or inf). ``duplicates_merged_`` says how many rows
  were merged.
- Neighbour distances are exact, computed in float32 storage with float64 accumulation, and recomputed
  directly as ||x - y|| (never from the ||x||^2 + ||y||^2 - 2 x.y expansion) where the estimators take
  ratios or logs of them.
- Inputs are float32: a C-contiguous float32 array is read in place, anything else is converted once.
- NaN or inf raises ValueError naming the first bad row and column.

Definitions and defaults are those of repscope's METRICS.md.
"""

import json

import numpy as np

from . import _repscope
from ._arrays import as_matrix, check_int

__all__ = ["TwoNN", "MLE", "GRIDE", "PCA", "LID", "NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """A fitted attribute (``dimension_`` and the like) was read before ``fit``; as scikit-learn's."""


class _Estimator:
    """Shared scikit-learn-style plumbing: get_params/set_params, repr, fit_transform."""

    _params = ()

    def get_params(self, deep=True):
        """The constructor parameters, as a dict."""
        return {p: getattr(self, p) for p in self._params}

    def set_params(self, **params):
        """Sets constructor parameters; returns self."""
        for k, v in params.items():
            if k not in self._params:
                raise ValueError(f"invalid parameter {k} for {type(self).__name__}: use one of {list(self._params)}")
            setattr(self, k, v)
        return self

    def __repr__(self):
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in self._params)
        return f"{type(self).__name__}({args})"

    def __getattr__(self, name):
        # Only reached for attributes that are not set: fitted ones (ending in "_") before fit.
        if name.endswith("_") and not name.startswith("__"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet, so it has no {name}: call fit(X) first"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def fit_transform(self, X, y=None):
        """Fits on X and returns ``dimension_``."""
        return self.fit(X).dimension_

    def _set_estimate(self, doc):
        est = doc["estimate"]
        self.estimate_ = est
        self.dimension_ = float(est["value"])
        self.stderr_ = None if est.get("stderr") is None else float(est["stderr"])
        self.notes_ = list(est.get("notes", []))
        self.n_distinct_ = int(doc["n_distinct"])
        self.duplicates_merged_ = int(doc["duplicates_merged"])
        self.is_fitted_ = True


class TwoNN(_Estimator):
    """TwoNN (Facco et al. 2017): the ratio mu = r2/r1 of second to first neighbour distance is Pareto(d).

    Parameters
    ----------
    discard_fraction : float, default 0.1
        Fraction of the largest ratios left out of the fit, in [0, 1). Same meaning as skdim's: the fit keeps
        floor(N (1 - discard_fraction)) points with F_i = i/N.
    method : {"linear", "mle"}, default "linear"
        "linear": least-squares slope through the origin of -log(1 - F_i) on log mu_i (the paper, and skdim's
        default). "mle": maximum likelihood with the discarded ratios treated as censored,
        (m - 1) / (sum_{i<=m} log mu_(i) + (N - m) log mu_(m)).

    Attributes
    ----------
    dimension_ : float
    stderr_ : float
        d / sqrt(m) for the linear fit (the Pareto likelihood's asymptotic error over the m kept points; the
        regression's own error is far too small because sorted residuals are correlated), d / sqrt(m - 1) for
        "mle".
    duplicates_merged_, n_distinct_ : int
    notes_ : list of str
        For example how many points tie (mu = 1, quantised data).
    estimate_ : dict
        The estimate as the CLI's JSON writes it (value, stderr, variant, params, notes).

    Differences from skdim: on clean data the two agree to 1e-13 (relative) on all 24 of skdim's benchmark
    manifolds. Duplicate rows are merged before the search, so duplicating rows leaves this estimate
    unchanged; skdim drops the points whose first distance is 0 (above 25 columns its distances come from
    the expansion and a duplicate can keep a tiny non-zero r1 instead), which moved its estimate by up to 3%
    with 1% of the rows duplicated. skdim's ``dist=True`` input mode is not offered; ``repscope.knn`` gives
    the neighbours.
    """

    _params = ("discard_fraction", "method")

    def __init__(self, discard_fraction=0.1, method="linear"):
        self.discard_fraction = discard_fraction
        self.method = method

    def fit(self, X, y=None):
        """Estimates the dimension of X (n_samples × n_features); returns self."""
        X = as_matrix(X)
        doc = json.loads(_repscope.twonn(X, float(self.discard_fraction), str(self.method)))
        self._set_estimate(doc)
        return self


class MLE(_Estimator):
    """Levina–Bickel maximum likelihood (2005) with k neighbours.

    Per point, m_i = (k - 1) / sum_{j<k} log(T_k / T_j) over its k nearest neighbour distances T_1..T_k.

    Parameters
    ----------
    k : int, default 20
        Neighbours per point (at least 2). In skdim the same number is ``fit(X, n_neighbors=...)`` (default
        20) of ``MLE()``; skdim's constructor ``K`` is only used when ``neighborhood_based=False``, so the
        name differs here.
    comb : {"mle", "mean"}, default "mle"
        How the per-point values combine, as skdim's ``fit(comb=...)``: "mle" is MacKay and Ghahramani's
        1 / mean(1/m_i) (skdim's default too), "mean" the arithmetic mean of m_i (biased upward). skdim's
        "median" is not offered.

    Attributes
    ----------
    dimension_ : float
    stderr_ : float
        Delta-method standard error of the aggregate (neighbourhoods overlap, so a lower bound).
    dimension_pw_ : ndarray of float64, shape (n_samples,)
        m_i for every input row (a duplicated row takes its representative's value; inf where all k
        distances tie).
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: on clean data the two agree to 1e-13 (relative) on all 24 of skdim's benchmark
    manifolds with ``fit(X, n_neighbors=20)`` on skdim's side. skdim keeps duplicate rows, so a duplicated
    point has T_1 = 0, log(T_k/0) is infinite and its "mle" aggregate becomes 0 (seen with 1% of the rows
    duplicated); repscope merges duplicates first and its estimate does not move.
    skdim's noise model options (``dnoise``, ``sigma``, ``integral_approximation``) are not offered.
    """

    _params = ("k", "comb")

    def __init__(self, k=20, comb="mle"):
        self.k = k
        self.comb = comb

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        k = check_int(self.k, "k", 2)
        X = as_matrix(X)
        doc, pw = _repscope.mle(X, k, str(self.comb))
        self._set_estimate(json.loads(doc))
        self.dimension_pw_ = pw
        return self

    def fit_transform_pw(self, X, y=None):
        """Fits on X and returns ``dimension_pw_``."""
        return self.fit(X).dimension_pw_


class GRIDE(_Estimator):
    """GRIDE (Denti et al. 2022): maximum likelihood on the ratio r_n2 / r_n1 of two neighbour distances.

    Parameters
    ----------
    n1 : int, default 1
    n2 : int or None, default None
        Must exceed n1; None means 2·n1 (so (1, 2) by default, which is exactly the TwoNN MLE (N-1)/sum log mu),
        as in skdim.

    Attributes
    ----------
    dimension_ : float
    stderr_ : float
        From the observed information of the likelihood.
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: points whose two distances tie (r_n1 = r_n2) are dropped and counted in
    ``notes_``; skdim's ``multiscale`` curve is in ``repscope.intrinsic_dimension(X)["scale_curve"]``.
    """

    _params = ("n1", "n2")

    def __init__(self, n1=1, n2=None):
        self.n1 = n1
        self.n2 = n2

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        n1 = check_int(self.n1, "n1", 1)
        n2 = 2 * n1 if self.n2 is None else check_int(self.n2, "n2", 2)
        X = as_matrix(X)
        self._set_estimate(json.loads(_repscope.gride(X, n1, n2)))
        return self


class PCA(_Estimator):
    """Global PCA rules on the centred covariance eigenvalues (float64) of the distinct rows.

    Parameters
    ----------
    rule : {"fo", "ev", "pr"}, default "fo"
        "fo": Fukunaga–Olsen, the count of eigenvalues above alpha × the largest (skdim's lPCA ``ver="FO"``);
        "ev": the smallest m whose components explain at least tau of the variance;
        "pr": the participation ratio (sum lambda)^2 / sum lambda^2 (not an integer).
    alpha : float, default 0.05
        The Fukunaga–Olsen threshold (skdim's ``alphaFO``).
    tau : float, default 0.95
        The explained-variance threshold.

    Attributes
    ----------
    dimension_ : float
    stderr_ : None
        The rules have no standard error.
    eigenvalues_ : ndarray, float64
        Covariance eigenvalues (divided by n - 1), largest first.
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN. ``notes_`` warns when a few points
    carry the top principal direction (one outlier can move these rules a lot).
    """

    _params = ("rule", "alpha", "tau")

    def __init__(self, rule="fo", alpha=0.05, tau=0.95):
        self.rule = rule
        self.alpha = alpha
        self.tau = tau

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        X = as_matrix(X)
        doc = json.loads(_repscope.pca(X, str(self.rule).lower(), float(self.tau), float(self.alpha)))
        self._set_estimate(doc)
        self.eigenvalues_ = np.asarray(doc["eigenvalues"], dtype=np.float64)
        return self


class LID(_Estimator):
    """Local intrinsic dimension per point (Amsaleg et al. 2015): LID_i = -1 / mean_j log(r_j / r_k).

    Parameters
    ----------
    k : int, default 20
        Neighbours per point (at least 2).
    metric : {"euclidean", "cosine"}, default "euclidean"

    Attributes
    ----------
    dimension_pw_ : ndarray of float64, shape (n_samples,)
        LID of every input row; NaN where all k distances tie (undefined). A duplicated row takes its
        representative's value.
    dimension_ : float
        The mean of the finite per-point values (``summary_`` also has the median, min and max).
    stderr_ : None
        Not defined for a distribution of local values.
    summary_ : dict
        n, mean, median, min, max of the finite values, as ``repscope lid --json``.
    undefined_points_ : int
    duplicates_merged_, n_distinct_ : int

    Differences from skdim: skdim has no estimator of this exact form (its local estimators average
    neighbourhood-wise MLEs); this is the LID MLE used in nearest-neighbour search studies.
    """

    _params = ("k", "metric")

    def __init__(self, k=20, metric="euclidean"):
        self.k = k
        self.metric = metric

    def fit(self, X, y=None):
        """Estimates the LID of every row of X; returns self."""
        k = check_int(self.k, "k", 2)
        X = as_matrix(X)
        doc, pw = _repscope.lid(X, k, str(self.metric))
        doc = json.loads(doc)
        self.dimension_pw_ = pw
        self.summary_ = doc["summary"]
        mean = doc["summary"]["mean"]
        self.dimension_ = float("nan") if mean is None else float(mean)
        self.stderr_ = None
        self.undefined_points_ = int(doc["undefined_points"])
        self.n_distinct_ = int(doc["n_distinct"])
        self.duplicates_merged_ = int(doc["duplicates_merged"])
        self.notes_ = []
        self.is_fitted_ = True
        return self

    def fit_transform_pw(self, X, y=None):
        """Fits on X and returns ``dimension_pw_``."""
        return self.fit(X).dimension_pw_
