"""kdviz.core.data: the offline datasets, subsets, jitter, and torchvision datasets read from disk or failing offline
(Fashion-MNIST from Debian's package: tests/test_fashion.py)."""
from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from kdviz.core import data
from kdviz.core.data import DatasetUnavailable, load_dataset, random_shift, stratified_subset

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory):
    return load_dataset("mnist5k", tmp_path_factory.mktemp("mnist5k-root"))


def _class_counts(labels: torch.Tensor) -> list[int]:
    return torch.bincount(labels, minlength=10).tolist()


# ---- offline datasets ------------------------------------------------------------------------------------------

def test_mnist5k_has_a_fixed_stratified_train_validation_test_split(mnist5k):
    assert mnist5k.name == "mnist5k" and mnist5k.classes == tuple("0123456789")
    assert mnist5k.train_x.shape == (3200, 1, 28, 28) and mnist5k.val_x.shape == (800, 1, 28, 28)
    assert mnist5k.test_x.shape == (1000, 1, 28, 28)
    assert mnist5k.train_x.dtype == torch.float32 and mnist5k.train_y.dtype == torch.int64
    assert _class_counts(mnist5k.train_y) == [320] * 10
    assert _class_counts(mnist5k.val_y) == [80] * 10
    assert _class_counts(mnist5k.test_y) == [100] * 10
    assert mnist5k.input_shape == (1, 28, 28) and mnist5k.num_classes == 10
    assert mnist5k.split == {"train": 3200, "validation": 800, "test": 1000, "validation_fraction": 0.2,
                             "seed": data.SPLIT_SEED, "version": data.DATA_VERSION}


def _digests(x: torch.Tensor) -> set[str]:
    return {hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in x}


def test_train_validation_and_test_share_no_image(mnist5k):
    """mnist5k's 5000 images are all distinct, so disjoint contents mean a true three-way split of the set."""
    train, val, test = (_digests(x) for x in (mnist5k.train_x, mnist5k.val_x, mnist5k.test_x))
    assert len(train) + len(val) + len(test) == 5000
    assert not train & val and not train & test and not val & test


def test_the_split_is_the_same_for_everyone(mnist5k, tmp_path):
    again = load_dataset("mnist5k", tmp_path)  # another root: loaded again, not the memoised object
    assert again is not mnist5k
    assert torch.equal(again.train_x, mnist5k.train_x) and torch.equal(again.test_y, mnist5k.test_y)
    assert torch.equal(again.val_x, mnist5k.val_x) and torch.equal(again.val_y, mnist5k.val_y)


def test_the_data_is_bit_identical_whatever_torch_thread_count_loaded_it(tmp_path):
    """Normalisation statistics must not depend on the thread count at load time (a torch reduction's summation order
    does): the app, the CLI and a sweep load the data at different moments, with different counts."""
    threads = torch.get_num_threads()
    try:
        loaded = []
        for count, root in ((1, tmp_path / "one"), (3, tmp_path / "three")):
            torch.set_num_threads(count)
            loaded.append(load_dataset("mnist5k", root))
    finally:
        torch.set_num_threads(threads)
    one, three = loaded
    assert (one.mean, one.std) == (three.mean, three.std)
    assert torch.equal(one.train_x, three.train_x) and torch.equal(one.test_x, three.test_x)


def test_validation_statistics_come_from_the_training_part_only(mnist5k):
    """Normalised with the training part's mean and std: the validation and test parts are near, not exactly, 0/1."""
    assert abs(float(mnist5k.train_x.mean())) < 1e-4
    assert 0 < abs(float(mnist5k.val_x.mean())) < 0.1 and 0 < abs(float(mnist5k.test_x.mean())) < 0.1


def test_the_background_is_a_normalised_black_pixel(mnist5k):
    assert mnist5k.background == pytest.approx(-mnist5k.mean / mnist5k.std)
    corner = mnist5k.train_x[:, 0, 0, 0]  # MNIST's corners are black
    assert torch.allclose(corner, torch.full_like(corner, mnist5k.background))


def test_load_dataset_memoises_per_name_and_root(tmp_path):
    assert load_dataset("digits", tmp_path) is load_dataset("digits", tmp_path)


def test_digits_is_offline_8x8_and_stratified(tmp_path):
    digits = load_dataset("digits", tmp_path)
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert (len(digits.train_y), len(digits.val_y), len(digits.test_y)) == (1151, 287, 359)
    everything = torch.bincount(torch.cat([digits.train_y, digits.val_y, digits.test_y]), minlength=10)
    test_share = torch.bincount(digits.test_y, minlength=10) / everything
    val_share = torch.bincount(digits.val_y, minlength=10) / everything
    assert torch.all((test_share - 0.2).abs() < 0.01) and torch.all((val_share - 0.16).abs() < 0.01)
    assert abs(float(digits.train_x.mean())) < 1e-4


def test_registry_lists_offline_and_download_datasets(tmp_path, monkeypatch):
    names = [info.name for info in data.list_datasets()]
    assert {"mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "cifar10-lecture"} <= set(names)
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(tmp_path))  # an empty folder: Fashion-MNIST is a download
    offline = data.offline_names()
    assert {"mnist5k", "digits"} <= set(offline)
    assert not {"mnist", "fashion-mnist", "cifar10", "cifar10-lecture"} & set(offline)
    for name in data.FASHION_MNIST_FILES:  # its four files (Debian's dataset-fashion-mnist): offline, asked anew
        (tmp_path / name).touch()
    assert set(data.offline_names()) == {"mnist5k", "digits", "fashion-mnist"}
    assert [info.name for info in data.list_datasets() if info.offline] == data.offline_names()


def test_unknown_dataset_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'imagenet-22k'") as error:
        load_dataset("imagenet-22k")
    assert "mnist5k" in str(error.value)  # and says what to choose instead


# ---- stratified_subset -----------------------------------------------------------------------------------------

def test_stratified_subset_is_balanced_seeded_and_unique(mnist5k):
    labels = mnist5k.train_y
    subset = stratified_subset(labels, 500, seed=3)
    assert len(subset) == len(set(subset.tolist())) == 500
    assert torch.equal(subset, subset.sort().values)
    assert _class_counts(labels[subset]) == [50] * 10
    assert torch.equal(subset, stratified_subset(labels, 500, seed=3))
    assert not torch.equal(subset, stratified_subset(labels, 500, seed=4))


def test_stratified_subset_of_odd_size_differs_by_at_most_one_per_class(mnist5k):
    counts = _class_counts(mnist5k.train_y[stratified_subset(mnist5k.train_y, 37, seed=0)])
    assert sum(counts) == 37 and max(counts) - min(counts) <= 1


def test_stratified_subset_with_unbalanced_classes_takes_everything_when_asked():
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert stratified_subset(labels, 10, seed=0).tolist() == list(range(10))
    assert torch.bincount(labels[stratified_subset(labels, 4, seed=0)]).tolist() == [2, 2]


@pytest.mark.parametrize("size", [0, -5, 4001])
def test_stratified_subset_rejects_bad_sizes_by_name(mnist5k, size):
    with pytest.raises(ValueError, match=f"got {size}"):
        stratified_subset(mnist5k.train_y, size, seed=0)


# ---- random_shift (jitter) -------------------------------------------------------------------------------------

def _dot_images(n: int, size: int = 9) -> torch.Tensor:
    x = torch.zeros(n, 1, size, size)
    x[:, 0, size // 2, size // 2] = 1.0
    return x


def test_random_shift_keeps_shape_and_moves_each_image_by_at_most_k():
    k, x = 2, _dot_images(400)
    shifted = random_shift(x, k, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(400))  # the dot stays inside, nothing else appears
    rows, cols = (shifted[:, 0] == 1).nonzero()[:, 1:].T
    offsets = set(zip((rows - 4).tolist(), (cols - 4).tolist()))
    assert offsets == {(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)}  # every shift occurs


def test_random_shift_fills_with_the_value_it_is_given():
    x = torch.ones(200, 3, 6, 6)
    shifted = random_shift(x, 1, torch.Generator().manual_seed(1), fill=0.0)
    for image in shifted:
        assert set(image.unique().tolist()) <= {0.0, 1.0}
        rows = image[0].sum(1).gt(0).sum().item()
        cols = image[0].sum(0).gt(0).sum().item()
        assert image.sum().item() == 3 * rows * cols  # a shifted block of ones, zeros where it moved away
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # channels move together
    assert (shifted == 0).any()


def test_jitter_of_an_image_with_a_background_border_adds_no_grey_frame(mnist5k):
    """A real digit (black border of several pixels) shifted by ±2 with the dataset's background: every pixel of the
    result is a pixel value of the original image, the border stays black, and the ink is only moved."""
    image = mnist5k.train_x[:1]
    assert torch.all(image[0, 0, :2] == mnist5k.background) and torch.all(image[0, 0, :, :2] == mnist5k.background)
    shifted = random_shift(image.repeat(64, 1, 1, 1), 2, torch.Generator().manual_seed(0), mnist5k.background)
    values = set(image.unique().tolist())
    assert set(shifted.unique().tolist()) <= values  # nothing new: in particular no 0 (the mean grey)
    assert 0.0 not in values
    ink = image > mnist5k.background
    assert torch.all((shifted > mnist5k.background).sum(dim=(1, 2, 3)) == ink.sum())  # the whole digit, moved
    assert torch.allclose(shifted.sort(dim=-1).values.sum(), image.repeat(64, 1, 1, 1).sort(dim=-1).values.sum())


def test_random_shift_is_deterministic_given_the_generator():
    x = torch.randn(32, 1, 8, 8)
    a = random_shift(x, 2, torch.Generator().manual_seed(7))
    b = random_shift(x, 2, torch.Generator().manual_seed(7))
    c = random_shift(x, 2, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_shift_of_zero_is_the_identity():
    x = torch.randn(4, 1, 8, 8)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert torch.equal(random_shift(x, 0, generator), x)
    assert torch.equal(generator.get_state(), state)  # and draws nothing, so batch order is unaffected


# ---- torchvision datasets, without a network -------------------------------------------------------------------

def _cifar_batch(labels: list[int], name: str) -> dict:
    """A batch in CIFAR-10's python format: rows of 3072 bytes (1024 red, 1024 green, 1024 blue), row-major 32×32."""
    images = np.zeros((len(labels), 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 0], images[i, 1], images[i, 2] = 10 * label, 10 * label + 1, 10 * label + 2
        images[i, :, 0, 0] = 255  # a top-left marker to check the image's orientation
    return {"batch_label": name, "labels": labels, "data": images.reshape(len(labels), 3072),
            "filenames": [f"{name}_{i}.png" for i in range(len(labels))]}


@pytest.fixture
def tiny_cifar10(kdviz_home, monkeypatch):
    """A 5×20 + 20 image CIFAR-10 in the on-disk format under KDVIZ_HOME/data/cifar10; only md5 checks are skipped."""
    import torchvision.datasets.cifar

    folder = kdviz_home / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        batch = _cifar_batch([(j + i) % 10 for j in range(20)], f"training batch {i} of 5")
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(_cifar_batch([j % 10 for j in range(20)], "testing"), 2))
    meta = {"label_names": CIFAR_CLASSES, "num_cases_per_batch": 20, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    # a 1 MB fixture cannot match the real files' md5 sums: keep the existence check, drop the checksum
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    return folder


def test_cifar10_loads_from_the_torchvision_folder(tiny_cifar10, offline):
    cifar = load_dataset("cifar10")
    assert cifar.classes == tuple(CIFAR_CLASSES)
    assert cifar.train_x.shape == (90, 3, 32, 32) and cifar.val_x.shape == (10, 3, 32, 32)
    assert cifar.test_x.shape == (20, 3, 32, 32)
    assert _class_counts(cifar.train_y) == [9] * 10 and _class_counts(cifar.val_y) == [1] * 10
    pixels = cifar.to_pixels(torch.cat([cifar.train_x, cifar.val_x]))  # (N, 32, 32, 3)
    labels = torch.cat([cifar.train_y, cifar.val_y]).numpy()
    np.testing.assert_array_equal(pixels[:, 5, 5], np.stack([10 * labels, 10 * labels + 1, 10 * labels + 2], 1))
    assert np.all(pixels[:, 0, 0] == 255) and np.all(pixels[:, 31, 31] != 255)
    assert abs(float(cifar.train_x.mean())) < 1e-4


def test_cifar10_lecture_keeps_dog_cat_automobile_ship_in_that_order(tiny_cifar10, offline):
    lecture = load_dataset("cifar10-lecture")
    assert lecture.name == "cifar10-lecture"
    assert lecture.classes == ("dog", "cat", "automobile", "ship")
    assert lecture.num_classes == 4 and lecture.input_shape == (3, 32, 32)
    assert (lecture.train_x.shape[0], lecture.val_x.shape[0], lecture.test_x.shape[0]) == (36, 4, 8)
    assert sorted(lecture.train_y.unique().tolist()) == [0, 1, 2, 3]
    original = {0: 5, 1: 3, 2: 1, 3: 8}  # new label → CIFAR-10 label
    for x, y in ((lecture.train_x, lecture.train_y), (lecture.val_x, lecture.val_y), (lecture.test_x, lecture.test_y)):
        red = lecture.to_pixels(x)[:, 5, 5, 0]
        np.testing.assert_array_equal(red, [10 * original[int(label)] for label in y])


@pytest.mark.parametrize("name", ["cifar10", "cifar10-lecture", "mnist", "fashion-mnist"])
def test_download_datasets_fail_offline_naming_the_offline_ones(name, offline, tmp_path, monkeypatch):
    monkeypatch.setenv(data.FASHION_MNIST_DIR_VARIABLE, str(tmp_path / "missing"))  # no Debian Fashion-MNIST either
    with pytest.raises(DatasetUnavailable) as error:
        load_dataset(name)
    assert isinstance(error.value, ValueError)  # the UI and the CLI show ValueErrors as one-line messages
    message = str(error.value)
    assert "mnist5k" in message and "digits" in message and "download" in message
    assert name.split("-lecture")[0] in message


def test_a_damaged_download_folder_is_retried_then_reported_offline(tiny_cifar10, offline):
    (tiny_cifar10 / "data_batch_3").unlink()
    with pytest.raises(DatasetUnavailable, match="cifar10"):
        load_dataset("cifar10")
