from typing import Any, Dict, List, Optional, TypeVar

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

class TwoNN(_Estimator):
    discard_fraction: float
    method: str
    stderr_: float
    def __init__(self, discard_fraction: float = 0.1, method: str = "linear") -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "TwoNN": ...

class MLE(_Estimator):
    k: int
    comb: str
    stderr_: float
    dimension_pw_: npt.NDArray[np.float64]
    def __init__(self, k: int = 20, comb: str = "mle") -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "MLE": ...
    def fit_transform_pw(self, X: npt.ArrayLike, y: Any = None) -> npt.NDArray[np.float64]: ...

class GRIDE(_Estimator):
    n1: int
    n2: Optional[int]
    stderr_: float
    def __init__(self, n1: int = 1, n2: Optional[int] = None) -> None: ...
    def fit(self, X: npt.ArrayLike, y: Any = None) -> "GRIDE": ...

class PCA(_Estimator):
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

__all__: List[str]
