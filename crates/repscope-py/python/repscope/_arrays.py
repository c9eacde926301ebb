"""Argument checks and conversions shared by the package's functions and estimators."""

import contextlib
import os
import shutil
import tempfile

import numpy as np


def as_matrix(X, name="X"):
    """X as a 2-D, C-contiguous, aligned, native-endian float32 or float64 array.

    A float32 C-contiguous array (a torch CPU tensor through ``np.asarray`` as well) is returned as is, and the
    engine reads it in place. A float64 array stays float64: the engine keeps its values for exact distances,
    centring, spectra, similarity and class geometry (and reports ``"precision": "f64"``). Anything else
    (int, float16, Fortran order, strided views, big-endian) is converted once, here, into a new array.
    """
    if isinstance(X, np.ndarray):
        a = X
    else:
        try:
            a = np.asarray(X)
        except Exception as e:  # noqa: BLE001 - any failure to convert is bad input
            raise ValueError(f"{name}: cannot be read as a numeric array ({e})") from None
    if a.dtype.kind not in "fiub":
        raise ValueError(
            f"{name}: dtype {a.dtype} is not numeric. Pass an array of floats (float32 is read without a copy)."
        )
    if a.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (n_samples, n_features), got shape {a.shape}. "
            "Reshape it, e.g. X.reshape(len(X), -1)."
        )
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name}: the array is empty (shape {a.shape}). Pass at least one row and one column.")
    dtype = np.float64 if a.dtype == np.float64 else np.float32
    return np.require(a, dtype=dtype, requirements=["C_CONTIGUOUS", "ALIGNED"])


def as_labels(labels, name="labels"):
    """Labels as (strings, numeric): integers (and integral floats, bools) or strings, one per row."""
    a = np.asarray(labels)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name}: expected one label per row (1-D), got shape {a.shape}")
    kind = a.dtype.kind
    if kind in "iub":
        return [str(int(v)) for v in a.tolist()], True
    if kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(
                f"{name}: float labels must be whole numbers. Pass integer or string class labels."
            )
        return [str(int(v)) for v in a.tolist()], True
    if kind == "S":
        return [v.decode("utf-8", "replace") for v in a.tolist()], False
    if kind in "UO":
        return [str(v) for v in a.tolist()], False
    raise ValueError(f"{name}: labels of dtype {a.dtype} are not supported. Pass integers or strings.")


def check_int(value, name, minimum):
    """An integer parameter, at least `minimum`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"invalid parameter {name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"invalid parameter {name}: {value} is below {minimum}")
    if value > _INT_MAX:
        raise ValueError(f"invalid parameter {name}: {value} is above 2**64 - 1, the largest integer repscope takes")
    return int(value)


_INT_MAX = 2**64 - 1


def _is_path(x):
    return isinstance(x, (str, os.PathLike))


def _is_block(x):
    """Whether x is one 2-D block of rows (a numpy array, a torch tensor), not a row or a number."""
    shape = getattr(x, "shape", None)
    return shape is not None and len(shape) == 2


def _blocks(X, name):
    """Checked 2-D blocks of rows, one at a time: every block as_matrix takes, of one width and dtype."""
    first = None
    for i, b in enumerate(X):
        if not _is_block(b):
            raise ValueError(
                f"{name}[{i}]: expected a 2-D block of rows (n_rows, n_features), got "
                f"{type(b).__name__} of shape {getattr(b, 'shape', None)}. Yield arrays such as x[None, :] for one row."
            )
        m = as_matrix(b, f"{name}[{i}]")
        if first is None:
            first = (m.shape[1], m.dtype, i)
        elif (m.shape[1], m.dtype) != first[:2]:
            raise ValueError(
                f"{name}[{i}]: {m.shape[1]} columns of {m.dtype}, but {name}[{first[2]}] has {first[0]} of "
                f"{first[1]}. Every block must have the same width and dtype."
            )
        yield m
    if first is None:
        raise ValueError(f"{name}: the iterable holds no arrays. Pass at least one block of rows.")


@contextlib.contextmanager
def rows(X, name="X"):
    """X as the engine takes rows, for the length of one call.

    - A path (a file, a folder of shards, a pattern) or a list of paths stays as given: the engine streams it.
    - An array is one matrix (``as_matrix``).
    - A list or tuple of 2-D blocks (arrays or tensors of one width and dtype) is their concatenation.
    - Any other iterable of 2-D blocks (a generator, a data loader) is read once, block by block, into a
      temporary folder of ``.npy`` shards under ``tempfile.gettempdir()`` (``TMPDIR``), which the engine streams
      and which is removed when the call ends: memory stays one block, and the disk holds the rows meanwhile.
    """
    if _is_path(X):
        yield os.fspath(X)
        return
    if isinstance(X, (list, tuple)) and X and all(_is_path(p) for p in X):
        yield [os.fspath(p) for p in X]
        return
    if isinstance(X, (list, tuple)) and X and _is_block(X[0]):
        yield np.ascontiguousarray(np.concatenate(list(_blocks(X, name))))
        return
    if isinstance(X, np.ndarray) or hasattr(X, "__array__") or isinstance(X, (list, tuple)):
        yield as_matrix(X, name)
        return
    try:
        it = iter(X)
    except TypeError:
        raise ValueError(
            f"{name}: expected an array, a path, a list of paths, or an iterable of 2-D arrays; got {type(X).__name__}"
        ) from None
    folder = tempfile.mkdtemp(prefix="repscope-rows-")
    try:
        for i, b in enumerate(_blocks(it, name)):
            np.save(os.path.join(folder, f"block_{i}.npy"), b)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
