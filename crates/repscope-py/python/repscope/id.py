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
import warnings

import numpy as np

from . import _repscope
from ._arrays import as_matrix, check_int

__all__ = [
    "TwoNN", "MLE", "GRIDE", "PCA", "LID", "MOM", "TLE", "MADA", "ESS", "CorrInt", "FisherS", "MiND_ML", "MiND_KL", "lPCA",
    "TwoNNPrior", "Binomial", "BinomialRk", "DANCo", "KNN", "PH", "KStar", "Hidalgo", "neighbours",
    "NotFittedError",
]


def check_bool(value, name):
    """A True/False parameter."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"invalid parameter {name}: expected True or False, got {value!r}")
    return bool(value)


def check_float(value, name, low, high, low_open=True, high_open=True):
    """A real parameter inside (low, high) (bounds closed where asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"invalid parameter {name}: expected a number, got {value!r}")
    v = float(value)
    inside = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not (np.isfinite(v) and inside):
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ValueError(f"invalid parameter {name}: {value!r} is outside {lb}{low}, {high}{hb}")
    return v


def _comb(value, allowed):
    if value not in allowed:
        raise ValueError(f"invalid parameter comb: {value!r}; use one of {', '.join(map(repr, allowed))}")
    return value


Neighbours = _repscope.Neighbours


def neighbours(X, k=100, metric="euclidean"):
    """The exact graph of the k nearest neighbours of X's distinct rows, built once for several estimators.

    Pass it as ``fit(X, graph=g)`` to any neighbour estimator of this module that reads at most k neighbours
    (those that read more lower their order to k with a warning, as scikit-dimension lowers n_neighbors);
    the graph remembers a fingerprint of X and refuses other data. ``g.arrays()`` gives (indices, distances)
    in input row numbering, n × k each.
    """
    k = check_int(k, "k", 1)
    return _repscope.neighbours(as_matrix(X), k, str(metric))


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

    def _fit_method(self, X, graph):
        """Fits the estimator ``self._method()`` describes, on ``graph`` when given."""
        method = json.dumps(self._method())
        X = as_matrix(X)
        if graph is not None and not isinstance(graph, _repscope.Neighbours):
            raise TypeError("graph: pass the result of repscope.id.neighbours(X, k) (or None)")
        doc, pw = _repscope.id_method(X, method, graph)
        doc = json.loads(doc)
        self._set_estimate(doc)
        for note in self.notes_:
            if note.startswith("the estimator reads"):
                warnings.warn(note, UserWarning, stacklevel=3)
        if pw is not None:
            self.dimension_pw_ = pw
        elif "dimension_pw_" in self.__dict__:
            del self.dimension_pw_
        if "eigenvalues" in doc:
            self.eigenvalues_ = np.asarray(doc["eigenvalues"], dtype=np.float64)
        self._arrays = {k: np.asarray(v, dtype=np.float64) for k, v in doc.get("arrays", {}).items()}
        return self

    def _smooth_pw(self, X, graph, smooth):
        """scikit-dimension's ``fit(..., smooth=True)`` of a local estimator: ``dimension_pw_smooth_`` is each
        row's ``dimension_pw_`` averaged with its neighbours' (the estimator's own k neighbours, from
        ``graph`` when given)."""
        if not smooth:
            if "dimension_pw_smooth_" in self.__dict__:
                del self.dimension_pw_smooth_
            return
        pw = self.__dict__.get("dimension_pw_")
        if pw is None:
            raise ValueError(
                f"smooth: {type(self).__name__} with these parameters gives no per-point estimates to smooth"
            )
        k = min(int(self._method()["k"]), self.n_distinct_ - 1)
        if graph is not None:
            idx = graph.arrays()[0][:, :k]
        else:
            from . import knn

            idx, _ = knn(X, k)
        group = np.concatenate([pw[:, None], pw[idx]], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.dimension_pw_smooth_ = np.nanmean(group, axis=1)

    def _set_estimate(self, doc):
        est = doc["estimate"]
        self.estimate_ = est
        self.dimension_ = float(est["value"])
        self.stderr_ = None if est.get("stderr") is None else float(est["stderr"])
        self.notes_ = list(est.get("notes", []))
        self.n_distinct_ = int(doc["n_distinct"])
        self.duplicates_merged_ = int(doc["duplicates_merged"])
        self.is_fitted_ = True


class _Pointwise:
    """scikit-dimension's pointwise use of a global estimator: ``fit_pw`` fits a fresh copy of the estimator
    (same parameters) on the neighbours of every row, and ``smooth=True`` also averages each row's estimate
    with its neighbours' estimates."""

    def fit_pw(self, X, precomputed_knn=None, smooth=False, n_neighbors=100, n_jobs=1):
        """Pointwise ID: the estimator fitted on each row's ``n_neighbors`` nearest neighbours.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        precomputed_knn : array-like of int, shape (n_samples, k), optional
            Each row's neighbours (row numbers of X, nearest first), used as given; otherwise repscope's
            exact Euclidean kNN (``repscope.knn``, duplicates merged as it does) with ``n_neighbors``.
        smooth : bool, default False
            Also sets ``dimension_pw_smooth_``: each row's estimate averaged with its neighbours' (rows whose
            neighbourhood fit failed are left out of the averages).
        n_neighbors : int, default 100
        n_jobs : int, default 1
            Accepted for scikit-dimension compatibility; the fits run one after another.

        Returns
        -------
        self, with ``dimension_pw_`` (NaN where a neighbourhood could not be fitted, for example one whose
        rows are all identical) and, with ``smooth``, ``dimension_pw_smooth_``. The global attributes
        (``dimension_`` ...) are not changed.
        """
        X = np.asarray(as_matrix(X))
        n = X.shape[0]
        if precomputed_knn is None:
            n_neighbors = check_int(n_neighbors, "n_neighbors", 1)
            if n_neighbors >= n:
                raise ValueError(
                    f"n_neighbors: {n_neighbors} neighbours need more than {n_neighbors} rows, but X has {n}: "
                    f"use n_neighbors <= {n - 1}"
                )
            from . import knn

            idx, _ = knn(X, n_neighbors)
        else:
            idx = np.asarray(precomputed_knn)
            if idx.ndim != 2 or idx.shape[0] != n or idx.shape[1] < 1:
                raise ValueError(
                    f"precomputed_knn: expected an array of shape ({n}, k) of row numbers, got shape {idx.shape}"
                )
            if not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"precomputed_knn: expected integer row numbers, got {idx.dtype}")
            if idx.min() < 0 or idx.max() >= n:
                raise ValueError(f"precomputed_knn: row numbers must lie in 0..{n - 1}")
        params = self.get_params()
        values = np.full(n, np.nan)
        for i in range(n):
            est = type(self)(**params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                try:
                    values[i] = est.fit(X[idx[i]]).dimension_
                except ValueError:
                    pass
        self.dimension_pw_ = values
        if smooth:
            out = np.empty(n)
            for i in range(n):
                group = np.append(values[i], values[idx[i]])
                group = group[np.isfinite(group)]
                out[i] = group.mean() if group.size else np.nan
            self.dimension_pw_smooth_ = out
        elif "dimension_pw_smooth_" in self.__dict__:
            del self.dimension_pw_smooth_
        return self

    def transform_pw(self, X=None):
        """``dimension_pw_`` after ``fit_pw``, with ``dimension_pw_smooth_`` as a second value after
        ``fit_pw(smooth=True)``."""
        pw = self.dimension_pw_
        if "dimension_pw_smooth_" in self.__dict__:
            return pw, self.dimension_pw_smooth_
        return pw

    def fit_transform_pw(self, X, precomputed_knn=None, smooth=False, n_neighbors=100, n_jobs=1):
        """``fit_pw`` then ``transform_pw``."""
        return self.fit_pw(X, precomputed_knn, smooth, n_neighbors, n_jobs).transform_pw()


class TwoNN(_Pointwise, _Estimator):
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
        Neighbours per point (at least 2; 3 when unbiased). In skdim the same number is ``fit(X,
        n_neighbors=...)`` (default 20) of ``MLE()``; skdim's constructor ``K`` is only used when
        ``neighborhood_based=False``, so the name differs here.
    comb : {"mle", "mean", "median"}, default "mle"
        How the per-point values combine, as skdim's ``fit(comb=...)``: "mle" is MacKay and Ghahramani's
        1 / mean(1/m_i) (skdim's default too), "mean" the arithmetic mean of m_i (biased upward), "median"
        their median.
    unbiased : bool, default False
        (k - 2) instead of (k - 1) in the numerator, as skdim's ``unbiased=True``.
    neighborhood_based : bool, default True
        False pools the first ``K`` neighbour distances of every point, keeps the ``k`` smallest distinct
        values and applies the formula to them as to one neighbourhood (skdim's global variant; no
        ``dimension_pw_`` then).
    K : int, default 5
        Neighbours per point pooled when ``neighborhood_based=False``.
    dnoise : {None, "dnoiseGaussH"}, default None
        skdim's noise model: each observed distance is the true one plus N(0, sigma^2) noise, and
        log(T_k/T_j) is replaced by its expectation over (0, T_k + 100 sigma).
    sigma : float, default 0
        The noise's standard deviation, in the data's units (> 0 with ``dnoise``).
    n : None
        Accepted for skdim's signature; skdim passes it to the noise density, which ignores it.

    Attributes
    ----------
    dimension_ : float
    stderr_ : float or None
        Delta-method standard error of the aggregate (neighbourhoods overlap, so a lower bound); d/sqrt(k - 1)
        for the global variant; None for the median.
    dimension_pw_ : ndarray of float64, shape (n_samples,)
        m_i for every input row (a duplicated row takes its representative's value; inf where all k
        distances tie). Absent for the global variant.
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: on clean data the two agree to 1e-13 (relative) on all 24 of skdim's benchmark
    manifolds with ``fit(X, n_neighbors=20)`` on skdim's side. skdim keeps duplicate rows, so a duplicated
    point has T_1 = 0, log(T_k/0) is infinite and its "mle" aggregate becomes 0 (seen with 1% of the rows
    duplicated); repscope merges duplicates first and its estimate does not move. With ``dnoise`` the
    integrals are computed to 1e-12 (adaptive Gauss-Kronrod over T_j +- 12 sigma); skdim's ``quad`` stops at
    1e-2 and its values differ from these by 1e-4 to 1e-3 relative (test_id_estimators.py shows both). A
    callable ``dnoise`` and ``integral_approximation`` (skdim: only "Haro" works with a noise model) are not
    offered.
    """

    _params = ("k", "comb", "unbiased", "neighborhood_based", "K", "dnoise", "sigma", "n")

    def __init__(self, k=20, comb="mle", unbiased=False, neighborhood_based=True, K=5, dnoise=None, sigma=0,
                 n=None):
        self.k = k
        self.comb = comb
        self.unbiased = unbiased
        self.neighborhood_based = neighborhood_based
        self.K = K
        self.dnoise = dnoise
        self.sigma = sigma
        self.n = n

    def _method(self):
        k = check_int(self.k, "k", 3 if self.unbiased else 2)
        unbiased = check_bool(self.unbiased, "unbiased")
        if self.dnoise not in (None, "dnoiseGaussH"):
            raise ValueError(f"invalid parameter dnoise: {self.dnoise!r}; use None or 'dnoiseGaussH'")
        sigma = None if self.dnoise is None else check_float(self.sigma, "sigma", 0.0, np.inf)
        if not check_bool(self.neighborhood_based, "neighborhood_based"):
            if sigma is not None:
                raise ValueError("invalid parameter dnoise: the noise model is per neighbourhood; use it with "
                                 "neighborhood_based=True")
            return {"estimator": "mle_global", "k": check_int(self.K, "K", 1), "n": k, "unbiased": unbiased}
        return {"estimator": "mle", "k": k, "comb": _comb(self.comb, ("mle", "mean", "median")), "unbiased": unbiased,
                "sigma": sigma}

    def fit(self, X, y=None, graph=None, smooth=False):
        """Estimates the dimension of X; returns self. ``graph``: a ``repscope.id.neighbours(X, k)`` of this X.
        ``smooth``: also ``dimension_pw_smooth_``, each row's estimate averaged with its k neighbours'
        (scikit-dimension's ``smooth=True``; needs ``neighborhood_based=True``)."""
        self._fit_method(X, graph)
        self._smooth_pw(X, graph, smooth)
        return self

    def fit_transform_pw(self, X, y=None):
        """Fits on X and returns ``dimension_pw_``."""
        return self.fit(X).dimension_pw_


class GRIDE(_Pointwise, _Estimator):
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


class PCA(_Pointwise, _Estimator):
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
        return self._fitted(json.loads(doc), pw)

    def _fitted(self, doc, pw):
        """Sets the fitted attributes from the engine's LID document and per-row values; returns self."""
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


class _Local(_Estimator):
    """A per-point neighbourhood estimator: ``fit`` sets ``dimension_pw_`` and combines it."""

    def fit(self, X, y=None, graph=None, smooth=False):
        """Estimates the dimension of X (n_samples × n_features); returns self. ``graph``: a
        ``repscope.id.neighbours(X, k)`` built on this X, shared by several estimators. ``smooth``: also
        ``dimension_pw_smooth_``, each row's estimate averaged with its k neighbours' (scikit-dimension's
        ``smooth=True``)."""
        self._fit_method(X, graph)
        self._smooth_pw(X, graph, smooth)
        return self

    def fit_transform_pw(self, X, y=None):
        """Fits on X and returns ``dimension_pw_``."""
        return self.fit(X).dimension_pw_


class MOM(_Local):
    """Method of moments (Amsaleg et al. 2018), as scikit-dimension's ``MOM``.

    Per point, with m1 the mean of its k neighbour distances and w the k-th, m_i = m1 / (w - m1).

    Parameters
    ----------
    n_neighbors : int, default 100
        Neighbours per point (skdim's ``fit(X, n_neighbors=100)``; here a constructor parameter, lowered to
        the number of other distinct rows with a warning, as skdim lowers it).
    comb : {"mean", "median"}, default "mean"

    Attributes
    ----------
    dimension_ : float
    stderr_ : float
        Standard error of the mean of the per-point values (neighbourhoods overlap: a lower bound).
    dimension_pw_ : ndarray of float64, shape (n_samples,)
        NaN where all k distances tie (skdim: inf or NaN, which then makes its mean inf or NaN; repscope
        leaves such points out of the mean and says so in ``notes_``).
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: duplicate rows are merged first (skdim counts their zero distances in m1).
    """

    _params = ("n_neighbors", "comb")

    def __init__(self, n_neighbors=100, comb="mean"):
        self.n_neighbors = n_neighbors
        self.comb = comb

    def _method(self):
        return {"estimator": "mom", "k": check_int(self.n_neighbors, "n_neighbors", 2),
                "comb": _comb(self.comb, ("mean", "median"))}


class TLE(_Local):
    """Tight local estimation (Amsaleg et al. 2019), as scikit-dimension 0.5's ``TLE``.

    A per-point maximum likelihood that also reads the distances among the point's k neighbours. The case
    analysis (tied, zero and epsilon-small distances) is that of skdim 0.5.0, which matches the authors'
    MATLAB ``idtlec`` to 1e-6.

    Parameters
    ----------
    n_neighbors : int, default 20
    epsilon : float, default 1e-4
        Distances (and s, t values) below it are left out, as skdim's.
    comb : {"mean", "median"}, default "mean"

    Attributes
    ----------
    dimension_, stderr_, dimension_pw_, duplicates_merged_, n_distinct_, notes_, estimate_ : as for MOM.

    Differences from skdim: a point whose neighbour distances all (nearly) tie has no value (NaN, left out
    of the mean) where skdim 0.5 returns 0 and averages it in.
    """

    _params = ("n_neighbors", "epsilon", "comb")

    def __init__(self, n_neighbors=20, epsilon=1e-4, comb="mean"):
        self.n_neighbors = n_neighbors
        self.epsilon = epsilon
        self.comb = comb

    def _method(self):
        return {"estimator": "tle", "k": check_int(self.n_neighbors, "n_neighbors", 2),
                "epsilon": check_float(self.epsilon, "epsilon", 0.0, np.inf, low_open=False),
                "comb": _comb(self.comb, ("mean", "median"))}


class MADA(_Local):
    """MADA (Farahmand et al. 2007), as scikit-dimension's ``MADA``: log 2 / log(r_k / r_floor(k/2)) per point.

    Parameters
    ----------
    n_neighbors : int, default 20
    comb : {"mean", "median"}, default "mean"

    Attributes
    ----------
    dimension_, stderr_, dimension_pw_, duplicates_merged_, n_distinct_, notes_, estimate_ : as for MOM.

    Differences from skdim: skdim replaces zero distances (the diagonal and duplicate pairs) by the largest
    distance and sorts a full n × n matrix; repscope merges duplicates and reads the shared neighbour graph.
    On distinct rows the values are the same.
    """

    _params = ("n_neighbors", "comb")

    def __init__(self, n_neighbors=20, comb="mean"):
        self.n_neighbors = n_neighbors
        self.comb = comb

    def _method(self):
        return {"estimator": "mada", "k": check_int(self.n_neighbors, "n_neighbors", 2),
                "comb": _comb(self.comb, ("mean", "median"))}


class CorrInt(_Pointwise, _Estimator):
    """Correlation dimension at two scales (Grassberger–Procaccia), as scikit-dimension's ``CorrInt``.

    r1 and r2 are the medians over points of the k1-th and k2-th neighbour distances; C(r) is the share of
    ordered pairs of rows closer than r; the dimension is log(C(r2)/C(r1)) / log(r2/r1).

    Parameters
    ----------
    k1 : int, default 10
    k2 : int, default 20

    Attributes
    ----------
    dimension_ : float
    stderr_ : None
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN; ``estimate_["params"]`` has r1, r2
    and the pair counts.

    Differences from skdim: the pair counts are exact (a pair is compared with r by its exact float64
    distance, where skdim uses the dot-product expansion, which can flip a pair at distance exactly r), and
    duplicate rows are merged first.
    """

    _params = ("k1", "k2")

    def __init__(self, k1=10, k2=20):
        self.k1 = k1
        self.k2 = k2

    def _method(self):
        return {"estimator": "corrint", "k1": check_int(self.k1, "k1", 1), "k2": check_int(self.k2, "k2", 2)}

    def fit(self, X, y=None, graph=None):
        """Estimates the dimension of X; returns self."""
        return self._fit_method(X, graph)


class MiND_ML(_Pointwise, _Estimator):
    """MiND_ML (Rozza et al. 2012), as scikit-dimension's ``MiND_ML``.

    Maximum likelihood of the ratio rho = r_1 / r_{k+1}, whose density is k d rho^(d-1) (1 - rho^d)^(k-1).

    Parameters
    ----------
    k : int, default 20
    D : int, default 10
        The largest dimension searched.
    ver : {"MLk", "MLi"}, default "MLk"
        "MLk": the continuous maximiser on (0, D]; "MLi": the integer one in 1..D. (R's intrinsicDimension
        names the two the other way round.)

    Attributes
    ----------
    dimension_ : float
    stderr_ : float or None
        From the observed information at the maximum ("MLk" only).
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.
    """

    _params = ("k", "D", "ver")

    def __init__(self, k=20, D=10, ver="MLk"):
        self.k = k
        self.D = D
        self.ver = ver

    def _method(self):
        if self.ver not in ("MLk", "MLi"):
            raise ValueError(f"invalid parameter ver: {self.ver!r}; use 'MLk' or 'MLi'")
        return {"estimator": "mind", "k": check_int(self.k, "k", 1), "max_dim": check_int(self.D, "D", 1),
                "integer": self.ver == "MLi"}

    def fit(self, X, y=None, graph=None):
        """Estimates the dimension of X; returns self."""
        return self._fit_method(X, graph)


class MiND_KL(_Pointwise, _Estimator):
    """MiND_KL (Rozza et al. 2012), as the authors' MATLAB ``MiND_KL`` (scikit-dimension has none).

    The ratio rho = r_1 / r_{k+1} of every point, as a sample, is compared with the same ratio on seeded
    uniform balls of the same size in dimensions 1..D, by Wang, Kulkarni and Verdu's one-dimensional
    nearest-neighbour estimate of the Kullback-Leibler divergence; the estimate is the dimension of least
    divergence (an integer).

    Parameters
    ----------
    k : int, default 10
    D : int or None, default None
        The largest dimension compared; None means the number of columns.
    sigma : float or None, default None
        Smooth the divergence curve by a Gaussian of this width (in dimensions) before reading its minimum.
    patience : int or None, default 10
        Stop once this many dimensions past the running minimum have not lowered it; None compares every
        dimension up to D, as the reference does.
    random_state : int or None, default None
        Seed of the balls (None means 0; the same balls as DANCo's calibration at that seed).

    Attributes
    ----------
    dimension_ : float
    kl_divergence_ : float
        The divergence at the estimate.
    divergences_ : ndarray of float64
        The divergence for each dimension compared, 1, 2, ...
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from the reference: the scan stops ``patience`` dimensions past the minimum (set None for
    the whole scan); the smoothing mirrors the curve at both ends (the reference repeats it at the right end).
    """

    _params = ("k", "D", "sigma", "patience", "random_state")

    def __init__(self, k=10, D=None, sigma=None, patience=10, random_state=None):
        self.k = k
        self.D = D
        self.sigma = sigma
        self.patience = patience
        self.random_state = random_state

    def _method(self):
        return {"estimator": "mind_kl", "k": check_int(self.k, "k", 1),
                "max_dim": None if self.D is None else check_int(self.D, "D", 1),
                "sigma": None if self.sigma is None else check_float(self.sigma, "sigma", 0, np.inf),
                "patience": None if self.patience is None else check_int(self.patience, "patience", 1),
                "seed": _seed(self.random_state)}

    def fit(self, X, y=None, graph=None):
        """Estimates the dimension of X; returns self."""
        self._fit_method(X, graph)
        p = self.estimate_["params"]
        self.kl_divergence_ = float(p["kl_divergence"])
        self.divergences_ = np.asarray(p["divergences"], dtype=np.float64)
        return self


class lPCA(_Pointwise, _Estimator):
    """Global PCA rules, as scikit-dimension's ``lPCA``, on the float64 covariance eigenvalues of the
    distinct rows (``eigenvalues_``; min(n, d) of them, as scikit-learn's PCA keeps).

    Parameters
    ----------
    ver : {"FO", "Fan", "maxgap", "ratio", "participation_ratio", "Kaiser", "broken_stick"}, default "FO"
    alphaRatio : float, default 0.05
    alphaFO : float, default 0.05
    alphaFan : float, default 10
    betaFan : float, default 0.8
    PFan : float, default 0.95
        The rules' thresholds, as skdim names them.

    Attributes
    ----------
    dimension_ : float
    eigenvalues_ : ndarray of float64
    stderr_ : None
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim 0.5: eigenvalues at rounding level (below lambda_1 d 2^-52) count as exact
    zeros, as scikit-learn's are for zero columns; "broken_stick" gives min(n, d) where no eigenvalue falls
    below the stick (skdim leaves 0 there). ``center=False`` and skdim's rank versions are not offered.
    """

    _params = ("ver", "alphaRatio", "alphaFO", "alphaFan", "betaFan", "PFan")

    def __init__(self, ver="FO", alphaRatio=0.05, alphaFO=0.05, alphaFan=10, betaFan=0.8, PFan=0.95):
        self.ver = ver
        self.alphaRatio = alphaRatio
        self.alphaFO = alphaFO
        self.alphaFan = alphaFan
        self.betaFan = betaFan
        self.PFan = PFan

    def _method(self):
        v = self.ver
        if v == "FO":
            rule = {"fukunaga_olsen": check_float(self.alphaFO, "alphaFO", 0.0, 1.0)}
        elif v == "Fan":
            rule = {"fan": {"alpha": check_float(self.alphaFan, "alphaFan", 0.0, np.inf),
                            "beta": check_float(self.betaFan, "betaFan", 0.0, 1.0),
                            "p": check_float(self.PFan, "PFan", 0.0, 1.0)}}
        elif v == "maxgap":
            rule = "max_gap"
        elif v == "ratio":
            rule = {"ratio": check_float(self.alphaRatio, "alphaRatio", 0.0, 1.0, high_open=False)}
        elif v == "participation_ratio":
            rule = "participation_ratio"
        elif v == "Kaiser":
            rule = "kaiser"
        elif v == "broken_stick":
            rule = "broken_stick"
        else:
            raise ValueError(
                f"invalid parameter ver: {v!r}; use 'FO', 'Fan', 'maxgap', 'ratio', 'participation_ratio',"
                " 'Kaiser' or 'broken_stick'"
            )
        return {"estimator": "pca", "rule": rule}

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        return self._fit_method(X, None)


class TwoNNPrior(_Pointwise, _Estimator):
    """TwoNN with a Gamma prior on d, as DADApy's ``compute_id_2NN_wprior``.

    The Pareto likelihood of mu = r2/r1 over every point and a Gamma(alpha, beta) prior (shape, rate) give
    the posterior Gamma(alpha + N, beta + sum log mu).

    Parameters
    ----------
    alpha : float, default 2
    beta : float, default 5
    posterior_mean : bool, default True
        The posterior mean (DADApy's default), else its mode.
    level : float, default 0.95
        Probability of the central credible interval (DADApy gives none).

    Attributes
    ----------
    dimension_ : float
    stderr_ : float
        The posterior standard deviation (DADApy's ``intrinsic_dim_err``).
    credible_interval_ : (float, float)
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.
    """

    _params = ("alpha", "beta", "posterior_mean", "level")

    def __init__(self, alpha=2.0, beta=5.0, posterior_mean=True, level=0.95):
        self.alpha = alpha
        self.beta = beta
        self.posterior_mean = posterior_mean
        self.level = level

    def _method(self):
        return {"estimator": "twonn_bayes", "alpha": check_float(self.alpha, "alpha", 0.0, np.inf),
                "beta": check_float(self.beta, "beta", 0.0, np.inf),
                "posterior_mean": check_bool(self.posterior_mean, "posterior_mean"),
                "level": check_float(self.level, "level", 0.0, 1.0)}

    def fit(self, X, y=None, graph=None):
        """Estimates the dimension of X; returns self."""
        self._fit_method(X, graph)
        ci = self.estimate_["params"]["credible_interval"]
        self.credible_interval_ = (float(ci["low"]), float(ci["high"]))
        return self


class Binomial(_Pointwise, _Estimator):
    """The binomial estimator at a neighbour order, as DADApy's ``compute_id_binomial_k(k, r)``.

    Of the k - 1 other points within r_k (a point's k-th neighbour distance), each falls within r r_k with
    probability r^d.

    Parameters
    ----------
    k : int, default 20
    r : float, default 0.5
        In (0, 1). DADApy has no defaults for k and r.
    bayes : bool, default True
        The posterior mean and standard deviation under a Beta(1, 1) prior on r^d (DADApy's default), else
        the maximum-likelihood value and its Cramér–Rao error.

    Attributes
    ----------
    dimension_, stderr_, duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from DADApy: its p-value of the binomial model (from an unseeded generator) is not given.
    """

    _params = ("k", "r", "bayes")

    def __init__(self, k=20, r=0.5, bayes=True):
        self.k = k
        self.r = r
        self.bayes = bayes

    def _method(self):
        return {"estimator": "binomial", "k": check_int(self.k, "k", 2), "r": check_float(self.r, "r", 0.0, 1.0),
                "bayes": check_bool(self.bayes, "bayes")}

    def fit(self, X, y=None, graph=None):
        """Estimates the dimension of X; returns self."""
        return self._fit_method(X, graph)


class ESS(_Local):
    """Expected simplex skewness (Johnsson et al. 2015), as scikit-dimension's ``ESS``.

    In each point's neighbourhood (its ``n_neighbors`` neighbours, centred on their mean), the summed
    volumes of the simplices of d + 1 vectors over the summed products of their lengths ("a"), or for d = 1
    the summed |cos| of pairs over the summed products of lengths ("b"); the dimension is read off the
    closed-form curve of a uniform ball, interpolated linearly between integers.

    Parameters
    ----------
    ver : {"a", "b"}, default "a"
    d : int, default 1
    random_state : int, default 0
        Seeds the draw of 5000 subsets where there are more (d ≥ 2, or more than 100 neighbours); with the
        defaults every one of the C(100, 2) pairs is used and nothing is drawn.
    n_neighbors : int, default 100
    comb : {"mean", "median"}, default "mean"

    Attributes
    ----------
    dimension_, stderr_, dimension_pw_, duplicates_merged_, n_distinct_, notes_, estimate_ : as for MOM.
    essval_ : float
        After ``fit_once`` only: the ESS value of the whole set.

    Differences from skdim: where subsets are drawn, repscope's seeded generator draws them, not numpy's, so
    those values differ from skdim's by sampling noise (the default is exact in both).
    """

    _params = ("ver", "d", "random_state", "n_neighbors", "comb")

    def __init__(self, ver="a", d=1, random_state=0, n_neighbors=100, comb="mean"):
        self.ver = ver
        self.d = d
        self.random_state = random_state
        self.n_neighbors = n_neighbors
        self.comb = comb

    def _method(self, once=False):
        if self.ver not in ("a", "b"):
            raise ValueError(f"invalid parameter ver: {self.ver!r}; use 'a' or 'b'")
        d = check_int(self.d, "d", 1)
        if self.ver == "b" and d != 1:
            raise ValueError(f"invalid parameter d: {d}; version 'b' is defined for d = 1 only")
        return {"estimator": "ess", "k": check_int(self.n_neighbors, "n_neighbors", 2), "d": d, "ver": self.ver,
                "seed": check_int(self.random_state, "random_state", 0), "comb": _comb(self.comb, ("mean", "median")),
                "once": once}

    def fit_once(self, X, y=None):
        """The whole of X as one neighbourhood (skdim's ``fit_once``): sets ``dimension_`` and ``essval_``."""
        doc, _ = _repscope.id_method(as_matrix(X), json.dumps(self._method(once=True)), None)
        self._set_estimate(json.loads(doc))
        self.essval_ = float(self.estimate_["params"]["essval"])
        return self


class FisherS(_Pointwise, _Estimator):
    """Fisher separability (Albergante et al. 2019), as scikit-dimension 0.5's ``FisherS``.

    The rows are centred, projected on the principal directions whose variance exceeds 1/conditional_number
    of the largest, whitened and (by default) put on the unit sphere. The mean share p_alpha of points a
    point is not Fisher-separable from at level alpha gives a dimension per alpha through the Lambert W
    function; the estimate is the one at the alpha nearest 0.9 times the largest alpha with a value.

    Parameters
    ----------
    conditional_number : float, default 10
    project_on_sphere : bool, default True
    alphas : array-like of float or None, default None
        Ascending separability levels in (0, 1); None means skdim's 0.60, 0.62, ..., 0.98.
    limit_maxdim : bool, default False
        Clip the estimate at the number of columns.

    Attributes
    ----------
    dimension_ : float
    n_alpha_ : ndarray of float64
        The dimension at every alpha (NaN where every point is separable).
    alphas_ : ndarray of float64
    p_alpha_mean_ : ndarray of float64
        The mean inseparable share at every alpha (skdim keeps the per-point shares as ``p_alpha_``).
    separable_fraction_ : ndarray of float64
    stderr_ : None
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: duplicate rows are merged first; ``produce_plots`` and ``verbose`` are not
    offered, and the per-point shares are not kept (the pairs are counted in blocks, never as n × n).
    ``separable_fraction_`` is per alpha, as the method defines it (skdim 0.5's holds one value per point).
    """

    _params = ("conditional_number", "project_on_sphere", "alphas", "limit_maxdim")

    def __init__(self, conditional_number=10, project_on_sphere=True, alphas=None, limit_maxdim=False):
        self.conditional_number = conditional_number
        self.project_on_sphere = project_on_sphere
        self.alphas = alphas
        self.limit_maxdim = limit_maxdim

    def _method(self):
        alphas = np.arange(0.6, 1, 0.02).tolist() if self.alphas is None else \
            [float(a) for a in np.ravel(np.asarray(self.alphas, dtype=np.float64))]
        if not alphas or any(not (0 < a < 1) for a in alphas) or any(b <= a for a, b in zip(alphas, alphas[1:])):
            raise ValueError("invalid parameter alphas: use ascending values in (0, 1)")
        return {"estimator": "fisher_s",
                "conditional_number": check_float(self.conditional_number, "conditional_number", 1.0, np.inf),
                "project_on_sphere": bool(self.project_on_sphere) if isinstance(self.project_on_sphere, (int, np.integer)) else check_bool(self.project_on_sphere, "project_on_sphere"),
                "alphas": alphas, "limit_maxdim": check_bool(self.limit_maxdim, "limit_maxdim")}

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        self._fit_method(X, None)
        p = self.estimate_["params"]
        self.alphas_ = np.asarray(p["alphas"], dtype=np.float64)
        self.n_alpha_ = np.array([np.nan if v is None else v for v in p["n_alpha"]], dtype=np.float64)
        self.p_alpha_mean_ = np.asarray(p["p_alpha"], dtype=np.float64)
        self.separable_fraction_ = np.asarray(p["separable_fraction"], dtype=np.float64)
        return self


def _seed(random_state):
    """An integer seed from scikit-learn's random_state (None means 0: repscope's random steps are seeded)."""
    if random_state is None:
        return 0
    return check_int(random_state, "random_state", 0)


class BinomialRk(_Pointwise, _Estimator):
    """The binomial estimator at a fixed radius, as DADApy's ``compute_id_binomial_rk(rk, r)``.

    Of the k_i - 1 other points within the radius rk of point i, each falls within r rk with probability
    r^d; the counts are pooled over every point.

    Parameters
    ----------
    rk : float
        The outer radius, in the data's units. DADApy has no default.
    r : float, default 0.5
        In (0, 1).
    bayes : bool, default True
        The posterior mean and standard deviation under a Beta(1, 1) prior on r^d (DADApy's default), else
        the maximum-likelihood value and its Cramér–Rao error.

    Attributes
    ----------
    dimension_, stderr_, duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.
    scale_ : float
        (rk + r rk) / 2, DADApy's ``intrinsic_dim_scale``.

    Differences from DADApy: the counts are exact over every row, where DADApy counts among its maxk
    neighbours and leaves out the points whose maxk-th neighbour lies within rk (equal when maxk = N - 1);
    a pair at a distance exactly equal to a radius counts outside (DADApy: inside); the p-value of the
    binomial model (from an unseeded generator) is not given.
    """

    _params = ("rk", "r", "bayes")

    def __init__(self, rk, r=0.5, bayes=True):
        self.rk = rk
        self.r = r
        self.bayes = bayes

    def _method(self):
        return {"estimator": "binomial_rk", "rk": check_float(self.rk, "rk", 0.0, np.inf),
                "r": check_float(self.r, "r", 0.0, 1.0), "bayes": check_bool(self.bayes, "bayes")}

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        self._fit_method(X, None)
        self.scale_ = float(self.estimate_["params"]["scale"])
        return self


class DANCo(_Pointwise, _Estimator):
    """DANCo (Ceruti et al. 2014), as scikit-dimension's ``DANCo`` and R's ``dancoDimEst``.

    Three statistics of the data (MiND_MLk's d on r_1/r_(k+1), and the mean location and concentration of
    the von Mises fit to the angles between each point's k neighbour vectors) are compared with those of
    uniform balls of dimension 1..D and the same size by the Kullback-Leibler divergence; the estimate is the
    dimension of least divergence, or with ``fractal`` the minimum of the cubic spline through the
    divergences.

    Parameters
    ----------
    k : int, default 10
    D : int or None, default None
        The largest dimension calibrated; None means the number of columns.
    calibration_data : dict or None, default None
        skdim's format: ``dict(k=k, N=N, maxdim=m, calibration_data=[{"dhat", "mu_nu", "mu_tau"}, ...])``
        for dimensions 1..m; k and N must match the fit. Dimensions beyond m are simulated.
    ver : {"DANCo", "DANCoFit", "MIND_MLk", "MIND_MLi"}, default "DANCo"
        "DANCoFit" calibrates on repscope's precomputed table (the mean of 100 seeded balls per cell, k = 10,
        dimensions 1..100, N = 20..5000, interpolated in N by PCHIP, as skdim's table) instead of simulating
        balls: it needs k = 10, 20 <= N <= 5000 distinct rows and D <= 100 (D=None means min(columns, 100)).
        The MIND versions are MiND_ML with k and D (R's naming: "MIND_MLk" is the continuous one here as in
        skdim).
    fractal : bool, default True
    random_state : int or None, default None
        Seed of the calibration balls (None means 0).

    Attributes
    ----------
    dimension_ : float
    kl_divergence_ : float
        The divergence at the integer estimate.
    calibration_data_ : dict
        The statistics used, in skdim's format (pass it back to skip the simulation).
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: the calibration balls come from repscope's seeded generator (skdim's from numpy's
    RandomState; the two agree in distribution, and exactly when the same calibration_data is given); the
    calibration's MiND search is bounded by 2d + 5 as in R (skdim passes k by mistake); angles are clipped to
    [-1, 1] before arccos; the Bessel functions are exact where skdim's overflow (concentration above 700);
    the spline minimum is exact where skdim's optimiser stops at tol 1e-3; the calibration stops at the first
    dimension past the minimum where five in a row cannot hold it (their divergence of rho alone exceeds the
    minimum). 'DANCoFit' reads repscope's own table, simulated with this calibration (so the 2d + 5 bound
    above); skdim's table comes from its own simulations, so the two agree to the tables' Monte Carlo spread.
    """

    _params = ("k", "D", "calibration_data", "ver", "fractal", "random_state")

    def __init__(self, k=10, D=None, calibration_data=None, ver="DANCo", fractal=True, random_state=None):
        self.k = k
        self.D = D
        self.calibration_data = calibration_data
        self.ver = ver
        self.fractal = fractal
        self.random_state = random_state

    def _method(self):
        return self._settings

    def fit(self, X, y=None, graph=None):
        """Estimates the dimension of X; returns self."""
        X = as_matrix(X)
        k = check_int(self.k, "k", 2)
        D = X.shape[1] if self.D is None else check_int(self.D, "D", 1)
        if self.ver in ("MIND_MLk", "MIND_MLi"):
            self._settings = {"estimator": "mind", "k": k, "max_dim": D, "integer": self.ver == "MIND_MLi"}
            return self._fit_method(X, graph)
        if self.ver not in ("DANCo", "DANCoFit"):
            raise ValueError(f"invalid parameter ver: {self.ver!r}; use 'DANCo', 'DANCoFit', 'MIND_MLk' or "
                             "'MIND_MLi'")
        table = self.ver == "DANCoFit"
        cal = None
        if self.calibration_data is not None:
            c = self.calibration_data
            try:
                ck, cn, stats = c["k"], c["N"], c["calibration_data"]
            except (KeyError, TypeError):
                raise ValueError("invalid parameter calibration_data: use skdim's dict(k=, N=, maxdim=, "
                                 "calibration_data=[{dhat, mu_nu, mu_tau}, ...])") from None
            if ck != k or cn != X.shape[0]:
                raise ValueError(f"invalid parameter calibration_data: it is for k = {ck} and N = {cn}, "
                                 f"this fit has k = {k} and N = {X.shape[0]}")
            cal = [{"dhat": float(s["dhat"]), "mu_nu": float(s["mu_nu"]), "mu_tau": float(s["mu_tau"])}
                   for s in stats]
        # With the table and no D, the engine takes min(columns, the table's 100) and says so.
        self._settings = {"estimator": "danco", "k": k, "max_dim": None if table and self.D is None else D, "fractal": check_bool(self.fractal, "fractal"),
                          "seed": _seed(self.random_state), "calibration": cal, "table": table}
        self._fit_method(X, graph)
        p = self.estimate_["params"]
        self.kl_divergence_ = float(p["kl_divergence"])
        self.calibration_data_ = {"k": k, "N": X.shape[0], "maxdim": len(p["calibration"]),
                                  "calibration_data": p["calibration"]}
        return self


class KNN(_Pointwise, _Estimator):
    """The kNN graph-length estimator (Carter et al. 2010), as scikit-dimension's ``KNN``.

    For random samples of p points (with replacement), L(p) is the total gamma-powered length of each
    sampled point's k nearest others in the sample; the dimension is the m in 1..n_features whose
    least-squares fit L = c p^((m - gamma)/m) leaves the smallest residual.

    Parameters
    ----------
    k : int or None, default None
        None means 2.
    ps : array-like of int or None, default None
        Sample sizes; None means k+1 .. k+4 (skdim's default, which makes the estimate noisy).
    M : int, default 1
        Samples per size.
    gamma : float, default 2
    random_state : int or None, default None
        None means 0.

    Attributes
    ----------
    dimension_ : int
    residual_ : float
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: samples come from repscope's seeded generator (skdim's from RandomState), and
    are drawn from the distinct rows.
    """

    _params = ("k", "ps", "M", "gamma", "random_state")

    def __init__(self, k=None, ps=None, M=1, gamma=2, random_state=None):
        self.k = k
        self.ps = ps
        self.M = M
        self.gamma = gamma
        self.random_state = random_state

    def _method(self):
        k = 2 if self.k is None else check_int(self.k, "k", 1)
        ps = None if self.ps is None else [check_int(int(p), "ps", 1) for p in np.ravel(np.asarray(self.ps))]
        return {"estimator": "knn", "k": k, "ps": ps, "m": check_int(self.M, "M", 1),
                "gamma": check_float(self.gamma, "gamma", 0.0, np.inf), "seed": _seed(self.random_state)}

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        self._fit_method(X, None)
        self.dimension_ = int(round(self.dimension_))
        self.residual_ = float(self.estimate_["params"]["residual"])
        return self


class PH(_Pointwise, _Estimator):
    """The persistent-homology dimension PH0, as scikit-dimension 0.5's ``PH``.

    E = sum of l^alpha over the edges of the Euclidean minimum spanning tree grows as n^((d - alpha)/d);
    for seeded subsamples of increasing size, the slope of log E on log n gives d = alpha / (1 - slope).

    Parameters
    ----------
    alpha : float or sequence of float, default 1.0
        One estimate per value.
    n_range_min, n_range_max : float or int, default 0.5, 1.0
    range_type : {"fraction", "num"}, default "fraction"
    nsteps : int, default 100
    subsamples : int, default 10
    random_state : int or None, default None
        None means 0.

    Attributes
    ----------
    dimension_ : float, or ndarray with one value per alpha when alpha is a sequence
    stderr_ : float
        The regression's error propagated to d (the subsamples overlap, so it understates the spread).
    nmin_, nmax_ : int
    x_ : ndarray, shape (nsteps * subsamples, 1)
        log subsample sizes.
    y_ : ndarray
        log E of each subsample (one column per alpha when alpha is a sequence).
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from skdim: subsamples come from repscope's seeded generator and are drawn from the distinct
    rows; the tree's edge lengths are exact float64 distances; only the euclidean metric is offered;
    ``n_jobs`` is not needed (subsamples run on every core, with the same result).
    """

    _params = ("alpha", "n_range_min", "n_range_max", "range_type", "nsteps", "subsamples", "random_state")

    def __init__(self, alpha=1.0, n_range_min=0.5, n_range_max=1.0, range_type="fraction", nsteps=100,
                 subsamples=10, random_state=None):
        self.alpha = alpha
        self.n_range_min = n_range_min
        self.n_range_max = n_range_max
        self.range_type = range_type
        self.nsteps = nsteps
        self.subsamples = subsamples
        self.random_state = random_state

    def _method(self):
        alpha = np.atleast_1d(np.asarray(self.alpha, dtype=np.float64)).tolist()
        if self.range_type not in ("fraction", "num"):
            raise ValueError(f"invalid parameter range_type: {self.range_type!r}; use 'fraction' or 'num'")
        return {"estimator": "ph", "alpha": alpha,
                "n_range_min": check_float(self.n_range_min, "n_range_min", 0.0, np.inf),
                "n_range_max": check_float(self.n_range_max, "n_range_max", 0.0, np.inf),
                "range_type": self.range_type, "nsteps": check_int(self.nsteps, "nsteps", 2),
                "subsamples": check_int(self.subsamples, "subsamples", 1), "seed": _seed(self.random_state)}

    def fit(self, X, y=None):
        """Estimates the dimension of X; returns self."""
        self._fit_method(X, None)
        p = self.estimate_["params"]
        self.nmin_, self.nmax_ = int(p["nmin"]), int(p["nmax"])
        self.x_ = np.asarray(p["log_sizes"], dtype=np.float64).reshape(-1, 1)
        y = np.asarray(p["log_totals"], dtype=np.float64)
        if np.ndim(self.alpha) == 0:
            self.y_ = y[:, 0]
        else:
            self.y_ = y
            self.dimension_ = np.asarray(p["dimensions"], dtype=np.float64)
        return self


class KStar(_Estimator):
    """The adaptive-neighbourhood ID, as DADApy's ``return_ids_kstar_gride`` and ``return_ids_kstar_binomial``.

    Each point's k* is the largest neighbourhood over which a likelihood-ratio test at p-value ``alpha``
    finds the density constant (comparing the point's and each neighbour's k-neighbour balls); the ID is fitted
    at those per-point scales (GRIDE with n2 = k* rounded up to even and n1 = n2/2, or the binomial estimator
    with r = min(0.975, 0.2032^(1/d))), and k* is recomputed at the new ID, ``n_iter`` times.

    Parameters
    ----------
    fit_method : {"gride", "binomial"}, default "gride"
    initial_id : float or None, default None
        None starts from TwoNN (DADApy's ``compute_id_2NN()``).
    n_iter : int, default 5
    alpha : float, default 1e-6
    maxk : int or None, default None
        Neighbours read per point; None means min(100, N - 1), DADApy's default.

    Attributes
    ----------
    dimension_ : float
    stderr_ : float
        The last fit's error (GRIDE: from the Fisher information; binomial: Cramér–Rao).
    ids_, errors_ : ndarray
        Every iteration's ID and error, the start first (its error NaN).
    log_likelihoods_ : ndarray (GRIDE only)
    kstar_ : ndarray of int, one per input row
        The final k*.
    scale_ : float
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.

    Differences from DADApy: neighbour distances are exact (DADApy's brute-force path uses the dot-product
    expansion); the returned k* is that of the final ID (DADApy returns every iteration's, the earlier ones
    rounded up to even by its in-place update); the binomial p-values (unseeded) are not given.
    """

    _params = ("fit_method", "initial_id", "n_iter", "alpha", "maxk")

    def __init__(self, fit_method="gride", initial_id=None, n_iter=5, alpha=1e-6, maxk=None):
        self.fit_method = fit_method
        self.initial_id = initial_id
        self.n_iter = n_iter
        self.alpha = alpha
        self.maxk = maxk

    def _method(self):
        return self._settings

    def fit(self, X, y=None, graph=None):
        """Estimates the dimension of X; returns self."""
        X = as_matrix(X)
        if self.fit_method not in ("gride", "binomial"):
            raise ValueError(f"invalid parameter fit_method: {self.fit_method!r}; use 'gride' or 'binomial'")
        maxk = min(100, X.shape[0] - 1) if self.maxk is None else check_int(self.maxk, "maxk", 5)
        init = None if self.initial_id is None else check_float(self.initial_id, "initial_id", 0.0, np.inf)
        self._settings = {"estimator": "kstar", "fit": self.fit_method, "initial_id": init,
                          "n_iter": check_int(self.n_iter, "n_iter", 1),
                          "alpha": check_float(self.alpha, "alpha", 0.0, 1.0), "maxk": maxk}
        self._fit_method(X, graph)
        p = self.estimate_["params"]
        self.ids_ = np.asarray(p["ids"], dtype=np.float64)
        self.errors_ = np.array([np.nan if e is None else e for e in p["errors"]], dtype=np.float64)
        if "log_likelihoods" in p:
            self.log_likelihoods_ = np.asarray(p["log_likelihoods"], dtype=np.float64)
        self.kstar_ = self._arrays["kstar"].astype(np.int64)
        self.scale_ = float(p["scale"])
        return self


class Hidalgo(_Estimator):
    """Hidalgo (Allegra et al. 2020): a mixture of K manifolds of different intrinsic dimension, each point
    assigned to one, by seeded Gibbs sampling (the model of the authors' ``hidalgo`` and R's intRinsic).

    A point's TwoNN ratio mu = r2/r1 is Pareto with density d mu^-(d+1) on its manifold; its q nearest
    neighbours share its manifold with probability zeta each; priors d_k ~ Gamma(a, b) (shape, rate) and
    weights ~ Dirichlet(c).

    Parameters
    ----------
    K : int, default 2
    q : int, default 3
    zeta : float, default 0.8
        In (0, 1); 0.5 switches the neighbourhood term off.
    a, b, c : float, default 1
    n_iter : int, default 10000
        Sweeps in all.
    burn_in : float, default 0.9
        The share of sweeps discarded first.
    sampling_rate : int, default 10
        Every sampling_rate-th sweep after the burn-in is kept.
    n_replicas : int, default 1
        Independent chains (run in parallel); the one of highest mean likelihood is reported.
    start : {"smoothed", "random"}, default "smoothed"
        "smoothed": labels from log mu averaged over the neighbour graph and cut at its K-quantiles, which
        converges within tens of sweeps; "random": uniform labels, the authors' start, which can need
        thousands.
    random_state : int or None, default None
        None means 0.

    Attributes
    ----------
    dimension_ : float
        The mean over rows of the per-row posterior mean ID.
    dimension_pw_ : ndarray
        Each row's posterior mean of its manifold's dimension (unaffected by label switching).
    dimension_pw_sd_ : ndarray
    dimensions_, dimensions_sd_ : ndarray, shape (K,)
        Each manifold's posterior mean dimension and sd, manifolds ordered by dimension (every stored draw is
        relabelled so that d_1 < ... < d_K).
    weights_ : ndarray, shape (K,)
    labels_ : ndarray of int
        Each row's most probable manifold (0 = the lowest dimension).
    labels_probability_ : ndarray
        That manifold's posterior probability (the authors leave a point unassigned below 0.8).
    duplicates_merged_, n_distinct_, notes_, estimate_ : as for TwoNN.
    """

    _params = ("K", "q", "zeta", "a", "b", "c", "n_iter", "burn_in", "sampling_rate", "n_replicas", "start",
               "random_state")

    def __init__(self, K=2, q=3, zeta=0.8, a=1.0, b=1.0, c=1.0, n_iter=10000, burn_in=0.9, sampling_rate=10,
                 n_replicas=1, start="smoothed", random_state=None):
        self.K = K
        self.q = q
        self.zeta = zeta
        self.a = a
        self.b = b
        self.c = c
        self.n_iter = n_iter
        self.burn_in = burn_in
        self.sampling_rate = sampling_rate
        self.n_replicas = n_replicas
        self.start = start
        self.random_state = random_state

    def _method(self):
        n_iter = check_int(self.n_iter, "n_iter", 1)
        burn = check_float(self.burn_in, "burn_in", 0.0, 1.0, low_open=False)
        if self.start not in ("smoothed", "random"):
            raise ValueError(f"invalid parameter start: {self.start!r}; use 'smoothed' or 'random'")
        return {"estimator": "hidalgo", "k": check_int(self.K, "K", 1), "q": check_int(self.q, "q", 1),
                "zeta": check_float(self.zeta, "zeta", 0.0, 1.0), "a": check_float(self.a, "a", 0.0, np.inf),
                "b": check_float(self.b, "b", 0.0, np.inf), "c": check_float(self.c, "c", 0.0, np.inf),
                "n_iter": n_iter, "burn_in": int(burn * n_iter),
                "thinning": check_int(self.sampling_rate, "sampling_rate", 1),
                "replicas": check_int(self.n_replicas, "n_replicas", 1), "start": self.start,
                "seed": _seed(self.random_state)}

    def fit(self, X, y=None, graph=None):
        """Fits the mixture to X; returns self."""
        self._fit_method(X, graph)
        p = self.estimate_["params"]
        self.dimensions_ = np.asarray(p["dimensions"], dtype=np.float64)
        self.dimensions_sd_ = np.asarray(p["dimension_sd"], dtype=np.float64)
        self.weights_ = np.asarray(p["weights"], dtype=np.float64)
        self.labels_ = self._arrays["assignment"].astype(np.int64)
        self.labels_probability_ = self._arrays["assignment_probability"]
        self.dimension_pw_sd_ = self._arrays["id_sd"]
        return self
