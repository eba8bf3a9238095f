"""Image-classification data as in-memory tensors: Fashion-MNIST, identity folders, subsets.

Fashion-MNIST is read straight from its IDX files (gzipped or not), so the Debian package
``dataset-fashion-mnist`` and a torchvision download (``<root>/FashionMNIST/raw``) both work
without torchvision's checksums. Identity datasets (CASIA-Face100 and the like) use the
ImageFolder layout ``root/<identity>/<image>``.

Everything is a :class:`ImageClassData`: a uint8 image tensor ``(N, C, H, W)``, int64 labels
and the class names. The datasets these tasks use fit in memory many times over, and
indexing tensors is far faster than a ``DataLoader`` of PIL images on a CPU.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.forget_retain import select_per_class

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_DEBIAN_ROOT",
    "ImageClassData",
    "read_idx",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "load_image_folder",
    "stratified_split",
    "subsample_per_class",
    "BatchSampler",
    "DataSplits",
    "load_splits",
]

logger = logging.getLogger(__name__)

#: Fashion-MNIST class names in label order.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: Environment variable naming a Fashion-MNIST folder (overrides the default locations).
FASHION_MNIST_ENV = "DET_FORGET_FASHION_MNIST"
#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".webp")


@dataclass
class ImageClassData:
    """Images and labels of a classification dataset, held in memory.

    Attributes:
        images: uint8 ``(N, C, H, W)``.
        labels: int64 ``(N,)`` class ids in ``[0, len(classes))``.
        classes: class names in id order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"images must be (N, C, H, W) matching labels (N,), got "
                f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}"
            )
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (including those without samples here)."""
        return len(self.classes)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageClassData:
        """The samples at ``indices`` (same class list)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageClassData(self.images[idx], self.labels[idx], self.classes)

    def of_classes(self, classes: Sequence[int]) -> ImageClassData:
        """The samples whose label is in ``classes`` (same class list)."""
        keep = torch.isin(self.labels, torch.as_tensor(list(classes), dtype=torch.long))
        return self.subset(torch.nonzero(keep).flatten())


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (the MNIST format), gzipped or plain.

    Args:
        path: ``*.gz`` or uncompressed IDX file.

    Returns:
        The array with the shape stored in the header.

    Raises:
        ValueError: the header is not IDX or the payload has the wrong size.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    payload = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {payload.size} values")
    return payload.reshape(shape)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """The folder holding Fashion-MNIST's four IDX files.

    Looked up in order: ``root``, ``$DET_FORGET_FASHION_MNIST``, Debian's
    ``/usr/share/datasets/fashion-mnist``. Each candidate may hold the files directly or
    in torchvision's ``FashionMNIST/raw`` sub-folder.

    Args:
        root: an explicit folder (empty or None: use the environment / default).

    Returns:
        The folder with ``train-images-idx3-ubyte[.gz]`` and its siblings.

    Raises:
        FileNotFoundError: no candidate has the files; the message says how to get them.
    """
    candidates: list[Path] = []
    if root:
        candidates.append(Path(root))
    if os.environ.get(FASHION_MNIST_ENV):
        candidates.append(Path(os.environ[FASHION_MNIST_ENV]))
    if not root:
        candidates.append(Path(FASHION_MNIST_DEBIAN_ROOT))
    stems = [
        f"{p}-{kind}"
        for p in _SPLIT_PREFIX.values()
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    ]
    for cand in candidates:
        for folder in (cand, cand / "FashionMNIST" / "raw"):
            if all(_idx_file(folder, s) is not None for s in stems):
                return folder
    raise FileNotFoundError(
        f"Fashion-MNIST IDX files not found in {[str(c) for c in candidates]}. Install them "
        "with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, files land in "
        f"{FASHION_MNIST_DEBIAN_ROOT}), or download them with internet access via "
        "`torchvision.datasets.FashionMNIST(ROOT, download=True)` and set CLS.DATA_ROOT or "
        f"${FASHION_MNIST_ENV} to ROOT."
    )


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> ImageClassData:
    """Fashion-MNIST ``"train"`` (60,000) or ``"test"`` (10,000) images.

    Args:
        split: ``"train"`` or ``"test"``.
        root: folder to look in first (see :func:`find_fashion_mnist`).

    Returns:
        uint8 images ``(N, 1, 28, 28)`` with labels and :data:`FASHION_MNIST_CLASSES`.
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(
            f"Fashion-MNIST split must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}"
        )
    folder = find_fashion_mnist(root)
    prefix = _SPLIT_PREFIX[split]
    images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))  # type: ignore[arg-type]
    labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))  # type: ignore[arg-type]
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{folder}: {split} images {images.shape} do not match labels {labels.shape}"
        )
    logger.info("Fashion-MNIST %s: %d images from %s", split, len(labels), folder)
    return ImageClassData(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        FASHION_MNIST_CLASSES,
    )


def load_image_folder(
    root: str | os.PathLike,
    *,
    image_size: int,
    channels: int = 3,
    classes: Sequence[str] | None = None,
) -> ImageClassData:
    """Load an ImageFolder-style dataset ``root/<class>/<image>`` into memory.

    This is the CASIA-Face100 layout (one folder per identity). Images are resized to
    ``image_size`` x ``image_size``.

    Args:
        root: dataset folder.
        image_size: output side length in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        classes: class folder names in id order (to share ids between splits); default:
            the sorted sub-folder names of ``root``.

    Returns:
        An :class:`ImageClassData`.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no images.
        ValueError: ``classes`` names a folder that does not exist.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"identity dataset folder {root} does not exist")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = tuple(classes) if classes is not None else tuple(found)
    missing = [c for c in classes if c not in found]
    if missing:
        raise ValueError(f"class folders {missing} not found under {root}; found {found[:10]}")
    images, labels = [], []
    mode = "L" if channels == 1 else "RGB"
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in _IMAGE_EXTENSIONS:
                continue
            with Image.open(path) as im:
                im = im.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
            images.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(_IMAGE_EXTENSIONS)}) under {root}/*/")
    logger.info("%s: %d images of %d identities", root, len(images), len(classes))
    return ImageClassData(
        torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long), classes
    )


def stratified_split(
    labels: torch.Tensor, per_class: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into ``(rest, held_out)`` with ``per_class`` held-out samples per class.

    Used to carve a validation set out of the training split, so that early stopping and
    checkpoint selection never look at the test split.

    Args:
        labels: int64 labels ``(N,)``.
        per_class: held-out samples per class (a class with fewer keeps at least one
            sample in ``rest``).
        seed: RNG seed.

    Returns:
        Two sorted index tensors.
    """
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        held.append(idx[: min(per_class, max(len(idx) - 1, 0))])
    held_out = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.long)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out] = False
    return torch.nonzero(mask).flatten(), held_out


def subsample_per_class(
    labels: torch.Tensor,
    classes: Sequence[int],
    *,
    ratio: float = 1.0,
    shots: int = 0,
    seed: int = 0,
) -> torch.Tensor:
    """Indices of a per-class subset of labelled samples (``shots`` per class, or a ``ratio``).

    :func:`det_forget.data.forget_retain.select_per_class` on one label per sample, so
    classification and detection sample alike.

    Args:
        labels: int64 labels ``(N,)``.
        classes: which classes to draw from.
        ratio: fraction of each class kept when ``shots == 0`` (at least one sample).
        shots: if > 0, exactly this many per class (all when a class has fewer).
        seed: RNG seed.

    Returns:
        Sorted indices.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"data ratio must be in (0, 1], got {ratio}")
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    idx = select_per_class(
        [(int(v),) for v in labels.tolist()],
        classes,
        ratio=None if shots > 0 else ratio,
        shots=shots or None,
        seed=seed,
    )
    return torch.tensor(idx, dtype=torch.long)


class BatchSampler:
    """Endless random mini-batches of indices over a dataset (reshuffled every pass).

    Args:
        num_samples: dataset size.
        batch_size: samples per batch (a pass shorter than that wraps around).
        seed: RNG seed; the stream of batches is fully determined by it.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0) -> None:
        if num_samples <= 0:
            raise ValueError("BatchSampler needs at least one sample")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        parts, need = [], self.batch_size
        while need > 0:
            if self._pos >= len(self._order):
                self._order = torch.randperm(self.num_samples, generator=self.generator)
                self._pos = 0
            take = self._order[self._pos : self._pos + need]
            self._pos += len(take)
            need -= len(take)
            parts.append(take)
        return torch.cat(parts)


@dataclass
class DataSplits:
    """Train (minus validation), validation (carved from train) and test data."""

    train: ImageClassData
    val: ImageClassData
    test: ImageClassData


def load_splits(cfg) -> DataSplits:
    """The dataset named by ``cfg.CLS.DATASET``, with a validation split carved from train.

    ``CLS.VAL_PER_CLASS`` training images per class (drawn with ``CLS.SPLIT_SEED``) become
    the validation split; the test split is only ever used for reporting.

    Args:
        cfg: a config with the ``CLS`` node.

    Returns:
        A :class:`DataSplits`.
    """
    c = cfg.CLS
    if c.DATASET == "fashion_mnist":
        full = load_fashion_mnist("train", c.DATA_ROOT or None)
        test = load_fashion_mnist("test", c.DATA_ROOT or None)
    elif c.DATASET == "image_folder":
        if not c.DATA_ROOT or not c.TEST_ROOT:
            raise ValueError("CLS.DATASET 'image_folder' needs CLS.DATA_ROOT and CLS.TEST_ROOT")
        full = load_image_folder(
            c.DATA_ROOT, image_size=c.MODEL.IMG_SIZE, channels=c.MODEL.IN_CHANS
        )
        test = load_image_folder(
            c.TEST_ROOT,
            image_size=c.MODEL.IMG_SIZE,
            channels=c.MODEL.IN_CHANS,
            classes=full.classes,
        )
    else:
        raise ValueError(
            f"unknown CLS.DATASET {c.DATASET!r}; valid: 'fashion_mnist', 'image_folder'"
        )
    rest, held = stratified_split(full.labels, c.VAL_PER_CLASS, seed=c.SPLIT_SEED)
    if c.TEST_PER_CLASS > 0:
        test = test.subset(
            subsample_per_class(
                test.labels, range(test.num_classes), shots=c.TEST_PER_CLASS, seed=c.SPLIT_SEED
            )
        )
    return DataSplits(train=full.subset(rest), val=full.subset(held), test=test)
