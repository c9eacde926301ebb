from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import numpy.typing as npt

_E = TypeVar("_E", bound="_Estimator")

class NotFittedError(ValueError, AttributeError): ...

class _Estimator:
    dimension_: float
    stderr_: Optional[float]
    notes_: List[str]
    n_distinct_: int
    duplicates_merged_: int
    estimate_: Dict[str, Any]
    is_fitted_: bool
    def get_params(self, deep: bool = True) -> Dict[str, Any]: ...
    def set_params(self: _E, **params: Any) -> _E: ...
    def fit_transform(self, X: npt.ArrayLike, y: Any = None) -> float: ...

class _Pointwise:
    dimension_pw_: npt.NDArray[np.float64]
    dimension_pw_smooth_: npt.NDArray[np.float64]
    def fit_pw(
        self,
        X: npt.ArrayLike,
        precomputed_knn: Optional[npt.ArrayLike] = None,
        smooth: bool = False,
        n_neighbors: int = 100,
        n_jobs: int = 1,
    ) -> Any: ...
    def transform_pw(
        self, X: Any = None
    ) -> Union[npt.NDArray[np.float64], Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]: ...
    def fit_transform_pw(
        self,
        X: npt.ArrayLike,
        precomputed_knn: Optional[npt.ArrayLike] = None,
        smooth: bool = False,
        n_neighbors: int = 100,
        n_jobs: int = 1,
    ) -> Union[npt.NDArray[np.float64], Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]: ...

class TwoNN(_Pointwise, _Estimator):
    discard_fraction: float
    method: str
    stderr_: float
    def __init__(self, discard_fraction: float = 0.1, method: str = "linear") -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "TwoNN": ...

class Neighbours:
    @property
    def k(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def shape(self) -> Tuple[int, int, int]: ...
    def arrays(self) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...

def neighbours(X: npt.ArrayLike, k: int = 100, metric: Literal["euclidean", "cosine"] = "euclidean") -> Neighbours: ...

class MLE(_Estimator):
    k: int
    comb: str
    unbiased: bool
    neighborhood_based: bool
    K: int
    dnoise: Optional[str]
    sigma: float
    n: Optional[int]
    dimension_pw_: npt.NDArray[np.float64]
    def __init__(
        self,
        k: int = 20,
        comb: Literal["mle", "mean", "median"] = "mle",
        unbiased: bool = False,
        neighborhood_based: bool = True,
        K: int = 5,
        dnoise: Optional[Literal["dnoiseGaussH"]] = None,
        sigma: float = 0,
        n: Optional[int] = None,
    ) -> None: ...
    dimension_pw_smooth_: npt.NDArray[np.float64]
    def fit(
        self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None, smooth: bool = False
    ) -> "MLE": ...
    def fit_transform_pw(self, X: npt.ArrayLike, y: Any = None) -> npt.NDArray[np.float64]: ...

class GRIDE(_Pointwise, _Estimator):
    n1: int
    n2: Optional[int]
    stderr_: float
    def __init__(self, n1: int = 1, n2: Optional[int] = None) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "GRIDE": ...

class PCA(_Pointwise, _Estimator):
    rule: str
    alpha: float
    tau: float
    stderr_: None
    eigenvalues_: npt.NDArray[np.float64]
    def __init__(self, rule: str = "fo", alpha: float = 0.05, tau: float = 0.95) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "PCA": ...

class LID(_Estimator):
    k: int
    metric: str
    stderr_: None
    dimension_pw_: npt.NDArray[np.float64]
    summary_: Dict[str, Any]
    undefined_points_: int
    def __init__(self, k: int = 20, metric: str = "euclidean") -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "LID": ...
    def fit_transform_pw(self, X: npt.ArrayLike, y: Any = None) -> npt.NDArray[np.float64]: ...

class _Local(_Estimator):
    dimension_pw_: npt.NDArray[np.float64]
    dimension_pw_smooth_: npt.NDArray[np.float64]
    def fit(
        self: _E, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None, smooth: bool = False
    ) -> _E: ...
    def fit_transform_pw(self, X: npt.ArrayLike, y: Any = None) -> npt.NDArray[np.float64]: ...

class MOM(_Local):
    n_neighbors: int
    comb: str
    def __init__(self, n_neighbors: int = 100, comb: Literal["mean", "median"] = "mean") -> None: ...

class TLE(_Local):
    n_neighbors: int
    epsilon: float
    comb: str
    def __init__(
        self, n_neighbors: int = 20, epsilon: float = 1e-4, comb: Literal["mean", "median"] = "mean"
    ) -> None: ...

class MADA(_Local):
    n_neighbors: int
    comb: str
    def __init__(self, n_neighbors: int = 20, comb: Literal["mean", "median"] = "mean") -> None: ...

class ESS(_Local):
    ver: str
    d: int
    random_state: int
    n_neighbors: int
    comb: str
    essval_: float
    def __init__(
        self,
        ver: Literal["a", "b"] = "a",
        d: int = 1,
        random_state: int = 0,
        n_neighbors: int = 100,
        comb: Literal["mean", "median"] = "mean",
    ) -> None: ...
    def fit_once(self, X: npt.ArrayLike, y: Any = None) -> "ESS": ...

class CorrInt(_Pointwise, _Estimator):
    k1: int
    k2: int
    def __init__(self, k1: int = 10, k2: int = 20) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "CorrInt": ...

class FisherS(_Pointwise, _Estimator):
    conditional_number: float
    project_on_sphere: bool
    alphas: Optional[Sequence[float]]
    limit_maxdim: bool
    n_alpha_: npt.NDArray[np.float64]
    alphas_: npt.NDArray[np.float64]
    p_alpha_mean_: npt.NDArray[np.float64]
    separable_fraction_: npt.NDArray[np.float64]
    def __init__(
        self,
        conditional_number: float = 10,
        project_on_sphere: bool = True,
        alphas: Optional[Sequence[float]] = None,
        limit_maxdim: bool = False,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "FisherS": ...

class MiND_ML(_Pointwise, _Estimator):
    k: int
    D: int
    ver: str
    def __init__(self, k: int = 20, D: int = 10, ver: Literal["MLk", "MLi"] = "MLk") -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "MiND_ML": ...

class MiND_KL(_Pointwise, _Estimator):
    k: int
    D: Optional[int]
    sigma: Optional[float]
    patience: Optional[int]
    random_state: Optional[int]
    kl_divergence_: float
    divergences_: npt.NDArray[np.float64]
    def __init__(
        self,
        k: int = 10,
        D: Optional[int] = None,
        sigma: Optional[float] = None,
        patience: Optional[int] = 10,
        random_state: Optional[int] = None,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "MiND_KL": ...

class lPCA(_Pointwise, _Estimator):
    ver: str
    alphaRatio: float
    alphaFO: float
    alphaFan: float
    betaFan: float
    PFan: float
    eigenvalues_: npt.NDArray[np.float64]
    def __init__(
        self,
        ver: Literal["FO", "Fan", "maxgap", "ratio", "participation_ratio", "Kaiser", "broken_stick"] = "FO",
        alphaRatio: float = 0.05,
        alphaFO: float = 0.05,
        alphaFan: float = 10,
        betaFan: float = 0.8,
        PFan: float = 0.95,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "lPCA": ...

class TwoNNPrior(_Pointwise, _Estimator):
    alpha: float
    beta: float
    posterior_mean: bool
    level: float
    credible_interval_: Tuple[float, float]
    def __init__(
        self, alpha: float = 2.0, beta: float = 5.0, posterior_mean: bool = True, level: float = 0.95
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "TwoNNPrior": ...

class Binomial(_Pointwise, _Estimator):
    k: int
    r: float
    bayes: bool
    def __init__(self, k: int = 20, r: float = 0.5, bayes: bool = True) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "Binomial": ...

class BinomialRk(_Pointwise, _Estimator):
    rk: float
    r: float
    bayes: bool
    scale_: float
    def __init__(self, rk: float, r: float = 0.5, bayes: bool = True) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "BinomialRk": ...

class DANCo(_Pointwise, _Estimator):
    k: int
    D: Optional[int]
    calibration_data: Optional[Dict[str, Any]]
    ver: str
    fractal: bool
    random_state: Optional[int]
    kl_divergence_: float
    calibration_data_: Dict[str, Any]
    def __init__(
        self,
        k: int = 10,
        D: Optional[int] = None,
        calibration_data: Optional[Dict[str, Any]] = None,
        ver: Literal["DANCo", "DANCoFit", "MIND_MLk", "MIND_MLi"] = "DANCo",
        fractal: bool = True,
        random_state: Optional[int] = None,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "DANCo": ...

class KNN(_Pointwise, _Estimator):
    k: Optional[int]
    ps: Optional[npt.ArrayLike]
    M: int
    gamma: float
    random_state: Optional[int]
    residual_: float
    def __init__(
        self,
        k: Optional[int] = None,
        ps: Optional[npt.ArrayLike] = None,
        M: int = 1,
        gamma: float = 2,
        random_state: Optional[int] = None,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "KNN": ...

class PH(_Pointwise, _Estimator):
    alpha: Union[float, Sequence[float]]
    n_range_min: float
    n_range_max: float
    range_type: str
    nsteps: int
    subsamples: int
    random_state: Optional[int]
    nmin_: int
    nmax_: int
    x_: npt.NDArray[np.float64]
    y_: npt.NDArray[np.float64]
    def __init__(
        self,
        alpha: Union[float, Sequence[float]] = 1.0,
        n_range_min: float = 0.5,
        n_range_max: float = 1.0,
        range_type: Literal["fraction", "num"] = "fraction",
        nsteps: int = 100,
        subsamples: int = 10,
        random_state: Optional[int] = None,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "PH": ...

class KStar(_Estimator):
    fit_method: str
    initial_id: Optional[float]
    n_iter: int
    alpha: float
    maxk: Optional[int]
    ids_: npt.NDArray[np.float64]
    errors_: npt.NDArray[np.float64]
    log_likelihoods_: npt.NDArray[np.float64]
    kstar_: npt.NDArray[np.int64]
    scale_: float
    def __init__(
        self,
        fit_method: Literal["gride", "binomial"] = "gride",
        initial_id: Optional[float] = None,
        n_iter: int = 5,
        alpha: float = 1e-6,
        maxk: Optional[int] = None,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "KStar": ...

class Hidalgo(_Estimator):
    K: int
    q: int
    zeta: float
    a: float
    b: float
    c: float
    n_iter: int
    burn_in: float
    sampling_rate: int
    n_replicas: int
    start: str
    random_state: Optional[int]
    dimension_pw_: npt.NDArray[np.float64]
    dimension_pw_sd_: npt.NDArray[np.float64]
    dimensions_: npt.NDArray[np.float64]
    dimensions_sd_: npt.NDArray[np.float64]
    weights_: npt.NDArray[np.float64]
    labels_: npt.NDArray[np.int64]
    labels_probability_: npt.NDArray[np.float64]
    def __init__(
        self,
        K: int = 2,
        q: int = 3,
        zeta: float = 0.8,
        a: float = 1.0,
        b: float = 1.0,
        c: float = 1.0,
        n_iter: int = 10000,
        burn_in: float = 0.9,
        sampling_rate: int = 10,
        n_replicas: int = 1,
        start: Literal["smoothed", "random"] = "smoothed",
        random_state: Optional[int] = None,
    ) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None, graph: Optional[Neighbours] = None) -> "Hidalgo": ...

__all__: List[str]
