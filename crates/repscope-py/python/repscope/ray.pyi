from os import PathLike
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

# Paths, folders or patterns; arrays or object refs of arrays; or a Ray Dataset.
_Source = Union[str, PathLike, Sequence[Any], npt.ArrayLike, Any]

MAX_RETRIES: int

def knn(
    source: _Source,
    k: int = 10,
    metric: str = "euclidean",
    *,
    key: Optional[str] = None,
    column: Optional[str] = None,
    block_rows: Optional[int] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def lid(
    source: _Source,
    k: int = 20,
    metric: str = "euclidean",
    *,
    key: Optional[str] = None,
    column: Optional[str] = None,
    block_rows: Optional[int] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Any: ...
def intrinsic_dimension(
    source: _Source,
    estimators: Optional[Union[str, Sequence[str]]] = None,
    k: int = 20,
    discard_fraction: float = 0.1,
    range_max: int = 64,
    metric: str = "euclidean",
    seed: int = 0,
    scale_curve: bool = True,
    *,
    key: Optional[str] = None,
    column: Optional[str] = None,
    block_rows: Optional[int] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, Any]: ...
def spectrum(
    source: _Source,
    eps2: float = 0.5,
    alpha_window: Tuple[int, int] = (11, 100),
    top_rogue: int = 10,
    key: Optional[str] = None,
    coding_rate: bool = False,
    duplicates: bool = False,
    *,
    column: Optional[str] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, Any]: ...
def activations(
    source: _Source,
    token_ids: Optional[npt.ArrayLike] = None,
    tokenizer: Optional[Callable[[int], str]] = None,
    massive_abs: float = 100.0,
    massive_ratio: float = 1000.0,
    eps: Optional[float] = None,
    peak_factor: float = 10.0,
    outlier_sigma: float = 3.0,
    top_rogue: int = 10,
    max_listed: int = 100,
    key: Optional[str] = None,
    duplicates: bool = True,
    *,
    column: Optional[str] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, Any]: ...
def compare(
    X: _Source,
    Y: _Source,
    metrics: Optional[Union[str, Sequence[str]]] = None,
    svcca_threshold: float = 0.99,
    *,
    key_x: Optional[str] = None,
    key_y: Optional[str] = None,
    column_x: Optional[str] = None,
    column_y: Optional[str] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, Any]: ...
def classes(
    source: _Source,
    labels: npt.ArrayLike,
    k: int = 10,
    classifier: Optional[npt.ArrayLike] = None,
    bias: Optional[npt.ArrayLike] = None,
    key: Optional[str] = None,
    knn_sample: int = 20000,
    seed: int = 0,
    *,
    column: Optional[str] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, Any]: ...
def sae_eval(
    sae: Any,
    source: _Source,
    key: Optional[str] = None,
    batch: int = 4096,
    *,
    column: Optional[str] = None,
    address: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, Any]: ...
