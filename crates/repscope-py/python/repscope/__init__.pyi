from os import PathLike
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import id as id
from . import sae as sae

__version__: str

ArrayLike = npt.ArrayLike
Layers = Union[Mapping[str, ArrayLike], Sequence[ArrayLike]]
# Rows a streaming function reads: an array, a path or shard paths, or an iterable of 2-D arrays.
Rows = Union[ArrayLike, str, PathLike[str], Sequence[Union[str, PathLike[str]]], Iterable[ArrayLike]]

def knn(
    X: ArrayLike, k: int = 10, metric: str = "euclidean"
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def intrinsic_dimension(
    X: ArrayLike,
    estimators: Optional[Union[str, Sequence[str]]] = None,
    k: int = 20,
    discard_fraction: float = 0.1,
    range_max: int = 64,
    metric: str = "euclidean",
    seed: int = 0,
    scale_curve: bool = True,
) -> Dict[str, Any]: ...
def spectrum(
    X: Rows,
    eps2: float = 0.5,
    alpha_window: Tuple[int, int] = (11, 100),
    top_rogue: int = 10,
    key: Optional[str] = None,
    coding_rate: bool = False,
    duplicates: bool = False,
) -> Dict[str, Any]: ...
def activations(
    X: Rows,
    token_ids: Optional[ArrayLike] = None,
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
) -> Dict[str, Any]: ...
def classes(
    X: Rows,
    labels: ArrayLike,
    k: int = 10,
    classifier: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    key: Optional[str] = None,
    knn_sample: int = 20000,
    seed: int = 0,
) -> Dict[str, Any]: ...
def compare(
    X: Rows,
    Y: Rows,
    metrics: Optional[Union[str, Sequence[str]]] = None,
    k: int = 10,
    labels: Optional[ArrayLike] = None,
    cka_route: str = "auto",
    rbf_threshold: float = 1.0,
    rbf_median: str = "pairs",
    batch_size: int = 1000,
    anchors: Optional[int] = None,
    anchor_mode: str = "first",
    svcca_threshold: float = 0.99,
    gram_limit: int = 20000,
    seed: int = 0,
    key_x: Optional[str] = None,
    key_y: Optional[str] = None,
) -> Dict[str, Any]: ...
def layers(arrays: Layers, k: int = 10, seed: int = 0) -> Dict[str, Any]: ...
def report(
    X: Union[ArrayLike, Layers],
    path: Union[str, PathLike],
    labels: Optional[ArrayLike] = None,
    seed: int = 0,
    sample: Optional[int] = None,
    force: bool = False,
    sae: Optional[Any] = None,
    label_names: Optional[Sequence[str]] = None,
    search: bool = False,
) -> Dict[str, Any]: ...

__all__: List[str]
