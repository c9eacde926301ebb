# The compiled module; use the functions of `repscope` and `repscope.id`, which check and convert arguments.
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_F32 = npt.NDArray[np.float32]
# Data arrays: float32 (read in place) or float64 (kept in f64).
_Data = Union[npt.NDArray[np.float32], npt.NDArray[np.float64]]

def knn(x: _Data, k: int, metric_name: str) -> Tuple[npt.NDArray[np.int64], _F32]: ...
def twonn(x: _Data, discard_fraction: float, method: str) -> str: ...
class Neighbours:
    @property
    def k(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def shape(self) -> Tuple[int, int, int]: ...
    def arrays(self) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...

def neighbours(x: _Data, k: int, metric_name: str) -> Neighbours: ...
def id_method(
    x: _Data, method: str, graph: Optional[Neighbours] = None
) -> Tuple[str, Optional[npt.NDArray[np.float64]]]: ...
def gride(x: _Data, n1: int, n2: int) -> str: ...
def pca(x: _Data, rule: str, tau: float, alpha: float) -> str: ...
def lid(x: _Data, k: int, metric_name: str) -> Tuple[str, npt.NDArray[np.float64]]: ...
def id_doc(
    x: _Data,
    estimators: List[str],
    k: int,
    discard_fraction: float,
    range_max: int,
    metric_name: str,
    seed: int,
    scale_curve: bool,
) -> str: ...
def spectrum_doc(
    x: Union[_Data, str, List[str]],
    eps2: float,
    alpha_window: Tuple[int, int],
    top_rogue: int,
    key: Optional[str] = None,
    coding_rate: bool = False,
    duplicates: bool = False,
) -> str: ...
def activations_doc(
    x: Union[_Data, str, List[str]],
    token_ids: Optional[List[int]],
    massive_abs: float,
    massive_ratio: float,
    eps: Optional[float],
    peak_factor: float,
    outlier_sigma: float,
    top_rogue: int,
    max_listed: int,
    key: Optional[str] = None,
    duplicates: bool = True,
) -> Tuple[str, List[Tuple[str, npt.NDArray[np.float64]]], npt.NDArray[np.uint32]]: ...
def classes_doc(
    x: Union[_Data, str, List[str]],
    raw_labels: List[str],
    numeric: bool,
    k: int,
    classifier: Optional[_Data] = None,
    bias: Optional[List[float]] = None,
    key: Optional[str] = None,
    knn_sample: int = 20000,
    seed: int = 0,
) -> str: ...
def compare_doc(x: _Data, y: _Data, *args: Any, **kwargs: Any) -> str: ...
def compare_sources_doc(
    x: Union[_Data, str, List[str]],
    y: Union[_Data, str, List[str]],
    metrics: List[str],
    svcca_threshold: float,
    key_x: Optional[str] = None,
    key_y: Optional[str] = None,
) -> str: ...
def layers_doc(names: List[str], arrays: List[_Data], k: int, seed: int) -> str: ...
def report_files(names: List[str], arrays: List[_Data], path: str, *args: Any, **kwargs: Any) -> str: ...

class Sae:
    @staticmethod
    def load(path: str) -> "Sae": ...
    def encode(self, x: _F32) -> _F32: ...
    def decode(self, f: _F32, x: Optional[_F32] = None) -> _F32: ...
    def evaluate(self, x: Any, key: Optional[str] = None, batch: int = 4096) -> str: ...
    def save(self, path: str, metadata: str, force: bool) -> None: ...
    def weights(self) -> List[Tuple[str, _F32]]: ...
    def shape(self) -> Tuple[int, int, int, str]: ...

def sae_train(
    x: Any,
    key: Optional[str],
    width: int,
    k: int,
    arch: str,
    tokens: Optional[int],
    batch: int,
    lr: Optional[float],
    warmup_steps: Optional[int],
    aux_k: Optional[int],
    aux_coef: float,
    dead_tokens: int,
    b_dec_init: str,
    normalize: bool,
    seed: int,
    rescaled_decoder: Optional[float] = None,
) -> Tuple[Sae, str]: ...

# repscope.ray's engine side: passes over one shard, partial results merged, exact kNN in pieces, jobs.
def shard_paths(paths: List[str]) -> List[str]: ...
def shard_info(x: Any, key: Optional[str] = None) -> Tuple[int, int, str]: ...
def pass_map(
    spec: bytes,
    x: Any,
    first_row: int,
    key: Optional[str] = None,
    name: str = "shard",
    y: Any = None,
    key_y: Optional[str] = None,
    name_y: str = "shard",
    keep: Optional[npt.NDArray[np.int64]] = None,
    x_rows: Optional[Tuple[int, int]] = None,
    y_rows: Optional[Tuple[int, int]] = None,
) -> bytes: ...
def pass_narrow(spec: bytes, first_row: int, rows: int) -> Optional[bytes]: ...
def id_neighbours(
    estimators: List[str],
    k_mle: int,
    discard_fraction: float,
    range_max: int,
    metric_name: str,
    seed: int,
    scale_curve: bool,
    name: str,
    n: int,
    n_distinct: int,
) -> int: ...
def pass_merge(a: bytes, b: bytes) -> bytes: ...
def pass_skip(spec: bytes, first_row: int, rows: int, cols: int) -> Optional[bytes]: ...
def pass_rows(spec: bytes) -> Optional[int]: ...
# A block's piece: a shard (a path or an array), its local rows, its name.
_Piece = Tuple[Any, npt.NDArray[np.int64], str]

def knn_self_block(
    pieces: List[_Piece],
    ids: npt.NDArray[np.int64],
    span: Tuple[int, int],
    k: int,
    metric_name: str,
    key: Optional[str] = None,
) -> bytes: ...
def knn_pair_block(
    a: List[_Piece],
    a_ids: npt.NDArray[np.int64],
    a_span: Tuple[int, int],
    b: List[_Piece],
    b_ids: npt.NDArray[np.int64],
    b_span: Tuple[int, int],
    k: int,
    metric_name: str,
    key: Optional[str] = None,
) -> Tuple[bytes, bytes]: ...
def knn_merge(a: bytes, b: bytes) -> bytes: ...
def knn_assemble(
    blocks: List[bytes], first: npt.NDArray[np.uint32], k: int, metric_name: str
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def knn_lid(
    blocks: List[bytes], first: npt.NDArray[np.uint32], k: int, metric_name: str
) -> Tuple[str, npt.NDArray[np.float64]]: ...

class Job:
    @staticmethod
    def spectrum(
        rows: int,
        cols: int,
        name: str,
        elem: str,
        shards: int,
        paths: Optional[List[str]],
        key: Optional[str],
        eps2: float,
        alpha_window: Tuple[int, int],
        top_rogue: int,
        coding_rate: bool,
        duplicates: bool,
    ) -> "Job": ...
    @staticmethod
    def activations(
        rows: int,
        cols: int,
        name: str,
        elem: str,
        shards: int,
        paths: Optional[List[str]],
        key: Optional[str],
        token_ids: Optional[List[int]],
        massive_abs: float,
        massive_ratio: float,
        eps: Optional[float],
        peak_factor: float,
        outlier_sigma: float,
        top_rogue: int,
        max_listed: int,
        duplicates: bool,
    ) -> "Job": ...
    @staticmethod
    def compare(
        rows: int,
        cols: Tuple[int, int],
        names: Tuple[str, str],
        elems: Tuple[str, str],
        shards: Tuple[int, int],
        paths: Tuple[Optional[List[str]], Optional[List[str]]],
        keys: Tuple[Optional[str], Optional[str]],
        metrics: List[str],
        svcca_threshold: float,
    ) -> "Job": ...
    @staticmethod
    def classes(
        rows: int,
        cols: int,
        name: str,
        elem: str,
        shards: int,
        paths: Optional[List[str]],
        key: Optional[str],
        raw_labels: List[str],
        numeric: bool,
        k: int,
        classifier: Optional[npt.ArrayLike],
        bias: Optional[List[float]],
        knn_sample: int,
        seed: int,
    ) -> "Job": ...
    @staticmethod
    def sae_eval(rows: int, cols: int, name: str, elem: str, shards: int, sae: Any, batch: int) -> "Job": ...
    @staticmethod
    def intrinsic_dimension(
        rows: int,
        cols: int,
        name: str,
        elem: str,
        shards: int,
        paths: Optional[List[str]],
        key: Optional[str],
        first: npt.NDArray[np.uint32],
        blocks: List[bytes],
        k: int,
        estimators: List[str],
        k_mle: int,
        discard_fraction: float,
        range_max: int,
        metric_name: str,
        seed: int,
        scale_curve: bool,
    ) -> "Job": ...
    @staticmethod
    def dedup(rows: int, cols: int, name: str, elem: str, shards: int) -> "Job": ...
    def next(self) -> Optional[bytes]: ...
    def answer(self, b: bytes) -> None: ...
    def result(self) -> Any: ...
