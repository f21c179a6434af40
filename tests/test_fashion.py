"""Fashion-MNIST offline: Debian's dataset-fashion-mnist (or KDVIZ_FASHION_MNIST_DIR) read by torchvision's reader,
a download otherwise; and the fashion preset, its teacher and its place in `prepare` and the image explorer."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from kdviz.core import data, presets
from kdviz.core.data import DatasetUnavailable, load_dataset

NEEDS_PACKAGE = f"needs Debian's dataset-fashion-mnist ({data.FASHION_MNIST_INSTALL})"
CLASSES = tuple(torchvision.datasets.FashionMNIST.classes)


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """An idx file as LeCun's and Zalando's originals, gzipped: magic 0x0000 08 NDIM (08: unsigned bytes), then each
    dimension as a big-endian int32, then the bytes in row-major order."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def make_fashion_folder(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """The four original files of a tiny Fashion-MNIST: labels 0-9 in turn, random pixels, and each image's number in
    its top-left pixel (train 0…, test 100…) so that a loaded image can be matched to the one written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, n, first in (("train", n_train, 0), ("t10k", n_test, 100)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(first, first + n)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx_gz(folder / f"{part}-images-idx3-ubyte.gz", images)
        write_idx_gz(folder / f"{part}-labels-idx1-ubyte.gz", labels)
        written[part] = (images, labels)
    return written


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch) -> dict:
    written = make_fashion_folder(tmp_path / "fashion-mnist")
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(tmp_path / "fashion-mnist"))
    return written


@pytest.fixture
def no_fashion(tmp_path, monkeypatch) -> Path:
    missing = tmp_path / "not-installed"
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(missing))
    return missing


@pytest.fixture
def downloads(monkeypatch) -> list:
    """Every call of FashionMNIST.download (none may happen when the files are on this machine)."""
    calls = []
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", lambda self: calls.append(self.root))
    return calls


def _info():
    return data.check_dataset_name("fashion-mnist")


# ---- the files on this machine ---------------------------------------------------------------------------------

def test_the_file_names_are_torchvisions():
    assert data.FASHION_MNIST_FILES == tuple(name for name, _ in torchvision.datasets.FashionMNIST.resources)


def test_with_the_folder_fashion_mnist_is_offline(tiny_fashion, tmp_path):
    assert _info().offline and "fashion-mnist" in data.offline_names()
    assert data.fashion_mnist_dir() == tmp_path / "fashion-mnist"
    assert "offline" in _info().description and str(tmp_path / "fashion-mnist") in _info().description


def test_it_loads_without_network_through_torchvisions_reader(tiny_fashion, offline, downloads, kdviz_home):
    fashion = load_dataset("fashion-mnist")
    assert downloads == []
    assert fashion.classes == CLASSES and fashion.num_classes == 10 and fashion.input_shape == (1, 28, 28)
    # 60 training images, 6 a class: one a class for validation (fraction 0.1); the 20 test images untouched
    assert (len(fashion.train_y), len(fashion.val_y), len(fashion.test_y)) == (50, 10, 20)
    assert torch.bincount(fashion.val_y, minlength=10).tolist() == [1] * 10
    assert fashion.split["validation_fraction"] == 0.1
    # the layout torchvision's own FashionMNIST(root, download=False) reads: root/FashionMNIST/raw/<name without .gz>
    raw = kdviz_home / "data" / "fashion-mnist" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == \
        sorted(name[:-3] for name in data.FASHION_MNIST_FILES)
    assert len(torchvision.datasets.FashionMNIST(str(raw.parents[1]), train=False, download=False)) == 20


def test_the_pixels_and_labels_are_the_ones_written(tiny_fashion, offline):
    fashion = load_dataset("fashion-mnist")
    train_images, train_labels = tiny_fashion["train"]
    test_images, test_labels = tiny_fashion["t10k"]
    for x, y, images, labels, first in ((fashion.train_x, fashion.train_y, train_images, train_labels, 0),
                                        (fashion.val_x, fashion.val_y, train_images, train_labels, 0),
                                        (fashion.test_x, fashion.test_y, test_images, test_labels, 100)):
        pixels = fashion.to_pixels(x)[..., 0]  # (N, 28, 28) uint8: the normalisation undone
        number = pixels[:, 0, 0].astype(int) - first
        np.testing.assert_array_equal(pixels, images[number])
        np.testing.assert_array_equal(y.numpy(), labels[number])
    seen = np.concatenate([fashion.to_pixels(x)[:, 0, 0, 0] for x in (fashion.train_x, fashion.val_x)])
    assert sorted(seen.tolist()) == list(range(60))  # every training image once, in train or validation
    assert abs(float(fashion.train_x.mean())) < 1e-4  # normalised with the training part's statistics


def test_offline_is_asked_each_time_not_frozen_at_import(tmp_path, monkeypatch):
    folder = tmp_path / "later"
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(folder))
    assert not _info().offline and "fashion-mnist" not in data.offline_names()
    make_fashion_folder(folder)  # the package is installed while the process runs
    assert _info().offline and "fashion-mnist" in data.offline_names()
    (folder / data.FASHION_MNIST_FILES[2]).unlink()  # all four files, or it is a download
    assert not _info().offline


def test_another_folder_is_read_again_not_served_from_the_old_copy(tmp_path, monkeypatch, offline):
    make_fashion_folder(tmp_path / "a", seed=1)
    make_fashion_folder(tmp_path / "b", n_train=30, seed=2)
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(tmp_path / "a"))
    first = load_dataset("fashion-mnist")
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(tmp_path / "b"))
    second = load_dataset("fashion-mnist")
    assert len(first.train_y) + len(first.val_y) == 60 and len(second.train_y) + len(second.val_y) == 30
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(tmp_path / "a"))
    assert load_dataset("fashion-mnist") is first  # memoised per folder


def test_a_damaged_file_is_one_clear_message(tmp_path, monkeypatch, offline, downloads):
    folder = tmp_path / "damaged"
    make_fashion_folder(folder)
    payload = (folder / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(payload[:len(payload) // 2])  # a truncated gzip stream
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(folder))
    with pytest.raises(DatasetUnavailable) as error:
        load_dataset("fashion-mnist")
    message = str(error.value)
    assert str(folder) in message and data.FASHION_MNIST_DIR_VARIABLE in message and "dataset-fashion-mnist" in message
    assert downloads == []


# ---- without the folder: a download, as before -------------------------------------------------------------------

def test_without_the_folder_it_is_a_download(no_fashion):
    assert not _info().offline and "fashion-mnist" not in data.offline_names()
    assert data.fashion_mnist_dir() is None and "download" in _info().description


def test_without_the_folder_and_network_the_message_says_what_to_install(no_fashion, offline):
    with pytest.raises(DatasetUnavailable) as error:
        load_dataset("fashion-mnist")
    message = str(error.value)
    assert "'fashion-mnist'" in message and "download" in message and "mnist5k" in message
    assert "apt-get install dataset-fashion-mnist" in message


# ---- the real thing: Debian's package ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def debian_fashion(tmp_path_factory):
    """The full Fashion-MNIST from /usr/share/datasets/fashion-mnist, loaded once for the module."""
    if not all((data.DEBIAN_FASHION_MNIST_DIR / name).is_file() for name in data.FASHION_MNIST_FILES):
        pytest.skip(NEEDS_PACKAGE)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(data.FASHION_MNIST_DIR_VARIABLE, raising=False)
        assert data.fashion_mnist_dir() == data.DEBIAN_FASHION_MNIST_DIR and _info().offline
        yield load_dataset("fashion-mnist", tmp_path_factory.mktemp("fashion-root"))


def test_debians_fashion_mnist_has_the_full_split_and_names(debian_fashion):
    assert (len(debian_fashion.train_y), len(debian_fashion.val_y), len(debian_fashion.test_y)) == (54000, 6000, 10000)
    assert debian_fashion.classes == CLASSES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                                 "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert torch.bincount(debian_fashion.val_y, minlength=10).tolist() == [600] * 10
    assert torch.bincount(debian_fashion.test_y, minlength=10).tolist() == [1000] * 10
    assert debian_fashion.train_x.shape == (54000, 1, 28, 28)


# ---- the preset, prepare and the explorer ---------------------------------------------------------------------------

def test_the_fashion_preset_distils_a_cnn_into_a_smaller_student():
    from kdviz.core.engine import check_config
    from kdviz.core.models import count_parameters, create_model

    config = presets.get_preset("fashion")
    assert check_config(config) is config and config.dataset == "fashion-mnist"
    assert config.teacher.model.arch == "cnn"
    teacher = count_parameters(create_model(config.teacher.model, (1, 28, 28), 10))
    student = count_parameters(create_model(config.student, (1, 28, 28), 10))
    assert student < teacher


def test_prepare_leaves_the_slow_fashion_teacher_out_unless_named(tiny_fashion):
    teacher = presets.get_preset("fashion").teacher
    assert "fashion-mnist" in data.offline_names()  # offline, yet minutes on a CPU: only on request
    assert teacher not in presets.teachers_to_prepare()
    assert presets.DEFAULT_TEACHER in presets.teachers_to_prepare()
    assert presets.teachers_to_prepare(["fashion"]) == [teacher]


def test_the_explorer_offers_fashion_mnist_when_it_is_offline(tiny_fashion, monkeypatch, tmp_path):
    from kdviz.views import explorer

    assert "fashion-mnist" in explorer.explorable_datasets()
    assert explorer.preset_for("fashion-mnist") == "fashion"
    assert explorer.teacher_for("fashion-mnist") == presets.get_preset("fashion").teacher
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(tmp_path / "uninstalled"))
    assert "fashion-mnist" not in explorer.explorable_datasets()
