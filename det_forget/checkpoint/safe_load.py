"""Reading weights files without running code from them.

A ``.pkl`` or ``.pth`` file is a Python pickle, and unpickling may call any function the
file names: a "model" someone sends can create files or start programs the moment it is
loaded. det_forget reads every weights file through this module:

* ``.pkl`` (detectron2 / Detectron model zoo): :class:`RestrictedUnpickler`, which builds
  only dicts, lists, tuples, strings, bytes, numbers, booleans, ``None``, numpy arrays,
  scalars and dtypes, and refuses anything else naming the ``module.name`` it met;
* ``.pth`` / ``.pyth``: ``torch.load(weights_only=True)`` (tensors, containers, numpy
  arrays), with a det_forget message when the file holds other Python objects;
* ``.safetensors``: no code at all.

Nothing here is a sandbox: a file that is refused is not loaded, not half-loaded.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
import re
from typing import Any

import numpy as np
import torch

from ..errors import UnfitFileError, UnsafeFileError

__all__ = [
    "RestrictedUnpickler",
    "load_pickle_weights",
    "load_safetensors_weights",
    "load_torch_weights",
    "load_weights_file",
    "trusted_conversion_hint",
]


# (module, name) pairs a weights pickle may name; numpy moved numpy.core to numpy._core in
# 2.0 and files of either era are in circulation.
_ALLOWED_GLOBALS = frozenset(
    [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *[
            (prefix + mod, name)
            for prefix in ("numpy.core.", "numpy._core.")
            for mod, name in (
                ("multiarray", "_reconstruct"),
                ("multiarray", "scalar"),
                ("numeric", "_frombuffer"),
            )
        ],
        # Protocol <= 2 pickles of ``bytes`` under Python 3.
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
    ]
)

# numpy objects torch's weights-only unpickler must also accept for .pth files that hold
# numpy arrays (detectron2 conversions write some).
_NUMPY_SAFE_GLOBALS = [
    np.ndarray,
    np.dtype,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    *{type(np.dtype(t)) for t in np.sctypeDict.values()},
]


def trusted_conversion_hint(path: str | os.PathLike) -> str:
    """How to keep only the weights of a file the user trusts (a one-line command)."""
    stem, suffix = os.path.splitext(str(path))
    if suffix == ".pkl":
        out = f"{stem}_weights.pkl"
        code = (
            f"import pickle, numpy; c = pickle.load(open({str(path)!r}, 'rb'), "
            "encoding='latin1'); pickle.dump({'model': {k: numpy.asarray(v) for k, v in "
            "c['model'].items()}, '__author__': str(c.get('__author__', 'converted'))}, "
            f"open({out!r}, 'wb'))"
        )
    else:
        out = f"{stem}_weights.pth"
        code = (
            f"import torch; c = torch.load({str(path)!r}, weights_only=False); "
            "m = c['model'] if isinstance(c, dict) and 'model' in c else c; "
            "m = m.state_dict() if hasattr(m, 'state_dict') else m; "
            f"torch.save({{'model': dict(m)}}, {out!r})"
        )
    return (
        "only if you trust where the file came from, keep just its weights with: "
        f'python -c "{code}" and load {out}'
    )


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that builds plain data and numpy arrays only.

    Args:
        file: a binary file.
        source: the file's name, for messages.
        encoding: how Python 2 ``str`` objects are decoded (``latin1``, as detectron2 reads
            model-zoo files).

    Raises (from :meth:`load`):
        UnsafeFileError: the pickle names a global outside the allowed set.
    """

    def __init__(self, file, *, source: str = "the file", encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding, fix_imports=True)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (__builtin__.set, ...), mapped as pickle's own find_class does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafeFileError(
                f"{self.source} is not a plain weights file: loading it would call "
                f"{module}.{name}; det_forget loads .pkl files holding only dicts, lists, "
                "numbers, strings and numpy arrays, and refuses this one",
                hint=trusted_conversion_hint(self.source),
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(
            f"{self.source} refers to external objects ({pid!r}); it is not a .pkl weights file"
        )


def load_pickle_weights(path: str | os.PathLike, file=None) -> Any:
    """The contents of a ``.pkl`` weights file, read with :class:`RestrictedUnpickler`.

    Args:
        path: the file (also its name in messages).
        file: an open binary file to read instead of opening ``path``.

    Raises:
        UnsafeFileError: the file names a Python object outside the allowed set.
        UnfitFileError: the file is truncated or not a pickle.
    """
    path = str(path)
    try:
        if file is None:
            with open(path, "rb") as f:
                return RestrictedUnpickler(f, source=path).load()
        return RestrictedUnpickler(file, source=path).load()
    except UnsafeFileError:
        raise
    except (OSError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - any other failure means "not a pickle we read"
        # A text or random file fails inside the unpickler in many ways (UnpicklingError,
        # EOFError, IndexError, KeyError, UnicodeDecodeError, ...): all are unfit files.
        raise UnfitFileError(
            f"cannot read {path} as a .pkl weights file (truncated or not a pickle): "
            f"{type(e).__name__}: {e}"
        ) from e


def load_torch_weights(path: str | os.PathLike, file=None) -> Any:
    """The contents of a ``.pth`` file, read with ``torch.load(weights_only=True)`` (numpy
    arrays allowed), on the CPU.

    Raises:
        UnsafeFileError: the file holds Python objects other than tensors, containers and
            numpy arrays (names the first one); the hint says how to convert a trusted file.
        UnfitFileError: the file is truncated or not a torch file.
    """
    path = str(path)
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE_GLOBALS):
            return torch.load(path if file is None else file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not re.search(r"Unsupported global|allowed global|call reduce", str(e)):
            found = re.search(r"WeightsUnpickler error:\s*(.+?)\n\n", str(e), re.S)
            detail = " ".join((found.group(1) if found else str(e)).split())
            raise UnfitFileError(
                f"cannot read {path} as a checkpoint (corrupt or not a torch file): {detail}"
            ) from None
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)|for ([\w.]+)", str(e))
        what = next((g for g in found.groups() if g), "") if found else ""
        raise UnsafeFileError(
            f"{path} holds Python objects beyond tensors"
            + (f" ({what})" if what else "")
            + "; det_forget loads only tensors, containers and numpy arrays from .pth files, "
            "since unpickling anything else can run code from the file",
            hint=trusted_conversion_hint(path),
        ) from None
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - a text or random file fails in many ways
        # RuntimeError, EOFError, BadZipFile, ValueError, and from the legacy (non-zip)
        # reader IndexError ("pop from empty list") or KeyError on arbitrary bytes.
        detail = (
            str(e).split(". ")[0] if isinstance(e, RuntimeError) else f"{type(e).__name__}: {e}"
        )
        raise UnfitFileError(
            f"cannot read {path} as a checkpoint (truncated, corrupt or not a torch file): {detail}"
        ) from e


def load_safetensors_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, on the CPU.

    Raises:
        UnfitFileError: the file is truncated or not a safetensors file.
    """
    from safetensors.torch import load

    path = str(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return load(data)
    except Exception as e:  # SafetensorError, and a header that is not JSON
        raise UnfitFileError(
            f"cannot read {path} as a .safetensors file (truncated or corrupt): {e}"
        ) from e


def load_weights_file(path: str | os.PathLike) -> Any:
    """A weights file of any format det_forget reads, by its suffix (``.pkl``,
    ``.safetensors``, else a torch file), without running code from it.

    Raises:
        FileNotFoundError: no such file.
        UnsafeFileError: the file holds Python objects beyond weights.
        UnfitFileError: the file is truncated or corrupt.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.endswith(".pkl"):
        return load_pickle_weights(path)
    if path.endswith(".safetensors"):
        return load_safetensors_weights(path)
    return load_torch_weights(path)
