from os import PathLike
from typing import Any, Dict, Iterable, Literal, Optional, Union

import numpy as np
import numpy.typing as npt

_Rows = Union[npt.ArrayLike, Iterable[npt.ArrayLike], str, PathLike]

class TopKSAE:
    width: int
    k: int
    arch: str
    tokens: Optional[int]
    batch: int
    lr: Optional[float]
    warmup_steps: Optional[int]
    aux_k: Optional[int]
    aux_coef: float
    dead_tokens: int
    b_dec_init: str
    normalize: bool
    seed: int
    decoder: str
    decoder_init_norm: float
    W_enc_: npt.NDArray[np.float32]
    W_dec_: npt.NDArray[np.float32]
    b_enc_: npt.NDArray[np.float32]
    b_dec_: npt.NDArray[np.float32]
    threshold_: Optional[npt.NDArray[np.float32]]
    summary_: Dict[str, Any]
    def __init__(
        self,
        width: int,
        k: int = 32,
        arch: str = "topk",
        tokens: Optional[int] = None,
        batch: int = 4096,
        lr: Optional[float] = None,
        warmup_steps: Optional[int] = None,
        aux_k: Optional[int] = None,
        aux_coef: float = 1.0 / 32.0,
        dead_tokens: int = 10_000_000,
        b_dec_init: str = "median",
        normalize: bool = True,
        seed: int = 0,
        decoder: Literal["unit", "rescaled"] = "unit",
        decoder_init_norm: float = 0.1,
    ) -> None: ...
    def get_params(self, deep: bool = True) -> Dict[str, Any]: ...
    def set_params(self, **params: Any) -> "TopKSAE": ...
    def fit(self, X: _Rows, y: Any = None, key: Optional[str] = None) -> "TopKSAE": ...
    def encode(self, X: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
    def transform(self, X: npt.ArrayLike) -> npt.NDArray[np.float32]: ...
    def decode(self, F: npt.ArrayLike, X: Optional[npt.ArrayLike] = None) -> npt.NDArray[np.float32]: ...
    def evaluate(self, X: _Rows, key: Optional[str] = None, batch: int = 4096) -> Dict[str, Any]: ...
    def save(self, path: Union[str, PathLike], force: bool = False) -> None: ...

def load(path: Union[str, PathLike]) -> TopKSAE: ...
