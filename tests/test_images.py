"""Uploads: safe decoding of every kind of file, and MNIST / digits preprocessing like the datasets were made."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from kdviz.views import images
from upload_fixtures import UPLOADS, decompression_bomb, drawn_seven, over_cap, png_seven


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and "Traceback" not in message \
        and message.count(". ") == 0 and len(message) < 200


@pytest.mark.parametrize("name", list(UPLOADS))
def test_every_upload_fixture_works_or_gets_one_sentence(name):
    make, must_work = UPLOADS[name]
    data = make()
    if must_work:
        prepared = images.prepare(data, "mnist5k", (1, 28, 28))
        assert prepared.model_input.shape == (1, 28, 28)
        assert prepared.model_input.dtype == np.float32
        assert prepared.model_input.max() == pytest.approx(1.0, abs=0.05)  # the ink was found
        row, col = images.centre_of_mass(prepared.model_input[0])
        assert abs(row - 13.5) <= 1 and abs(col - 13.5) <= 1
    else:
        with pytest.raises(images.ImageRejected) as caught:
            images.prepare(data, "mnist5k", (1, 28, 28))
        assert _one_sentence(str(caught.value)), str(caught.value)
        assert isinstance(caught.value, ValueError)


@pytest.fixture
def pixel_loads(monkeypatch) -> list:
    """Every call that decodes pixels (Image.load / ImageFile.load) on this test's thread, recorded; the real decoding
    still runs. Other threads are not this test's: a page an earlier test left running in this worker may draw an
    image meanwhile (seen in a full run: two 1×256 loads)."""
    import threading

    calls, here = [], threading.get_ident()
    for cls in (Image.Image, ImageFile.ImageFile):
        real = cls.load

        def spy(self, *args, _real=real, **kwargs):
            if threading.get_ident() == here:
                calls.append(self.size)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "load", spy)
    return calls


@pytest.mark.parametrize("make, message", [
    (decompression_bomb, "The image is too large"),  # 30000×30000 in its header, a few hundred bytes on disk
    (over_cap, "images up to 10 MB are accepted"),
    (lambda: b"", "The file is empty"),
    (lambda: b"%PDF-1.4 this is not a picture\n" * 20, "not an image we can read"),
])
def test_files_refused_from_their_header_are_never_decoded(pixel_loads, make, message):
    with pytest.raises(images.ImageRejected, match=message) as caught:
        images.decode(make())
    assert pixel_loads == [], "no pixel may be decoded before the file is refused"
    if make is decompression_bomb:
        assert f"at most {images.MAX_PIXELS // 1_000_000} megapixels" in str(caught.value)


def test_a_large_header_within_pillows_limit_is_still_refused_by_its_size_unread(pixel_loads, monkeypatch):
    """Our own cap (25 MP) applies where Pillow's bomb check would let the header through."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's check off: only decode()'s own check remains
    with pytest.raises(images.ImageRejected) as caught:
        images.decode(decompression_bomb())
    assert str(caught.value) == ("The image is too large (30,000×30,000 pixels): upload one of at most "
                                 f"{images.MAX_PIXELS // 1_000_000} megapixels.")
    assert pixel_loads == []


def test_the_spy_sees_a_normal_upload_being_decoded(pixel_loads):
    """The spy itself works: a good PNG is decoded through load()."""
    assert images.decode(png_seven()).shape == (160, 240, 3)
    assert pixel_loads


def test_off_centre_dark_digit_on_white_comes_out_centred_inverted_28x28():
    prepared = images.prepare(png_seven(), "mnist5k", (1, 28, 28))
    x = prepared.model_input[0]
    assert prepared.inverted
    assert x.shape == (28, 28)
    assert x[0].max() == 0 and x[-1].max() == 0 and x[:, 0].max() == 0 and x[:, -1].max() == 0  # black border
    ink = x > images.INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 20  # the longer side fits MNIST's 20×20 box
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 >= 18
    row, col = images.centre_of_mass(x)
    assert abs(row - 13.5) <= 0.75 and abs(col - 13.5) <= 0.75


def test_light_digit_on_dark_is_not_inverted_and_matches_the_dark_on_light_one():
    light_on_dark = io.BytesIO()
    drawn_seven(ink="white", paper="black").save(light_on_dark, "PNG")
    a = images.prepare(light_on_dark.getvalue(), "mnist5k", (1, 28, 28))
    b = images.prepare(png_seven(), "mnist5k", (1, 28, 28))
    assert not a.inverted and b.inverted
    np.testing.assert_allclose(a.model_input, b.model_input, atol=1e-6)


def test_the_digit_position_on_the_page_does_not_matter():
    inputs = []
    for offset in [(10, 10), (150, 40)]:
        buffer = io.BytesIO()
        drawn_seven(offset=offset).save(buffer, "PNG")
        inputs.append(images.prepare(buffer.getvalue(), "mnist5k", (1, 28, 28)).model_input)
    np.testing.assert_allclose(inputs[0], inputs[1], atol=1e-6)


def test_digits_preprocessing_is_8x8_like_sklearn_digits():
    prepared = images.prepare(png_seven(), "digits", (1, 8, 8))
    x = prepared.model_input[0]
    assert x.shape == (8, 8) and 0 <= x.min() and x.max() <= 1
    assert x[0].max() > 0.3  # a 7's bar fills the top row, as in the 32×32 bitmaps the dataset was made from
    assert x.sum() > 3


def test_other_datasets_are_resized_to_their_input_shape():
    prepared = images.prepare(png_seven(), "cifar10", (3, 32, 32))
    assert prepared.model_input.shape == (3, 32, 32)
    assert 0 <= prepared.model_input.min() and prepared.model_input.max() <= 1


def test_large_jpeg_is_decoded_small_and_bounded():
    big = drawn_seven(size=(4000, 3000), offset=(500, 400)).resize((4000, 3000))
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=70)
    rgb = images.decode(buffer.getvalue())
    assert max(rgb.shape[:2]) <= images.MAX_WORKING_SIDE and rgb.shape[2] == 3


def test_pixel_count_over_the_bound_is_refused_with_its_size():
    header_only = io.BytesIO()
    Image.new("L", (6000, 5000)).save(header_only, "PNG")  # 30 MP: more than we decode, less than Pillow's own bound
    with pytest.raises(images.ImageRejected, match="6,000×5,000"):
        images.decode(header_only.getvalue())


def test_alpha_is_flattened_against_a_contrasting_background():
    rgba = np.zeros((4, 4, 4))
    rgba[1, 1] = [0, 0, 0, 255]  # one dark opaque pixel on transparency → white paper
    assert images._flatten_alpha(rgba)[0, 0].tolist() == [255, 255, 255]
    rgba[1, 1] = [255, 255, 255, 255]  # one light opaque pixel → black paper
    assert images._flatten_alpha(rgba)[0, 0].tolist() == [0, 0, 0]


def test_png_thumbnails_are_enlarged_crisply():
    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 16
    image = Image.open(io.BytesIO(images.to_png(pixels, 3)))
    assert image.size == (12, 12)
    assert np.asarray(image)[0:3, 0:3].tolist() == [[0] * 3] * 3
