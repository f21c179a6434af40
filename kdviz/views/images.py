"""Uploaded images, safely: decode from bytes in memory with bounded size, then preprocess like the dataset was made.

Nothing here touches the disk or executes anything: the upload is parsed by Pillow from a BytesIO, its size is read
from the header before any pixel is decoded, and every failure becomes an ImageRejected with one sentence for the
user. numpy + Pillow only (no torch).
"""
from __future__ import annotations

import dataclasses
import io
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the same cap as server.maxUploadSize in .streamlit/config.toml
MAX_PIXELS = 25_000_000  # decoded at full size this is 100 MB of RGBA; larger headers are refused unread
MAX_WORKING_SIDE = 1024  # decoded images are shrunk to this before any float math, bounding memory per upload
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "gif")
INK_THRESHOLD = 0.25  # after contrast stretching to [0, 1], pixels above this count as ink for the bounding box
MIN_CONTRAST = 0.1  # below this difference between background and ink the image is blank


class ImageRejected(ValueError):
    """An upload that cannot be used; str(error) is one sentence for the user, shown next to the uploader."""


# ---- decoding ----------------------------------------------------------------------------------------------------

def decode(data: bytes) -> np.ndarray:
    """Bytes of an image file → (H, W, 3) uint8 RGB, first frame, transparency flattened, at most 1024 px a side."""
    if not data:
        raise ImageRejected("The file is empty: choose an image file (PNG, JPEG, WebP, BMP or GIF).")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRejected(f"The file is {len(data) / 1e6:.1f} MB; images up to "
                            f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB are accepted.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow's bomb warning becomes an error
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)  # lazy: reads the header only
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(_too_large_message()) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise ImageRejected("This file is not an image we can read: upload a PNG, JPEG, WebP, BMP or GIF.") \
                from None
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageRejected("The image has no pixels: upload a picture of a digit.")
        if width * height > MAX_PIXELS:
            raise ImageRejected(_too_large_message(width, height))
        try:
            if image.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that still leaves enough pixels
                image.draft("RGB", (MAX_WORKING_SIDE, MAX_WORKING_SIDE))
            image.seek(0)  # animated GIF / WebP / PNG: the first frame
            image.load()  # a truncated file raises here (Pillow never returns half an image unless told to)
            if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")  # a palette's transparency must survive the shrinking
            image.thumbnail((MAX_WORKING_SIDE, MAX_WORKING_SIDE))  # only ever shrinks; float math comes after
            return _to_rgb(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(_too_large_message()) from None
        except MemoryError:
            raise ImageRejected("The image is too large to decode on this server: upload a smaller one.") from None
        except Exception:  # truncated streams, corrupt chunks, bad palettes: Pillow raises many types
            raise ImageRejected("The image file is damaged or incomplete: save it again and upload the new file.") \
                from None


def _too_large_message(width: int | None = None, height: int | None = None) -> str:
    size = f" ({width:,}×{height:,} pixels)" if width else ""
    return f"The image is too large{size}: upload one of at most {MAX_PIXELS // 1_000_000} megapixels."


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8. 16-bit and float greys are rescaled; transparency is flattened."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        return _flatten_alpha(np.asarray(image.convert("RGBA"), dtype=np.float64))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Composite over a background that contrasts with the visible strokes (white for dark ink, black for light)."""
    alpha = rgba[:, :, 3:] / 255.0
    visible = alpha[:, :, 0] > 0.5
    ink_is_light = visible.any() and rgba[:, :, :3][visible].mean() > 127.5
    background = 0.0 if ink_is_light else 255.0
    rgb = rgba[:, :, :3] * alpha + background * (1 - alpha)
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


# ---- preprocessing like the dataset was made ---------------------------------------------------------------------

def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (H, W) float in [0, 1] (ITU-R 601 luma, as Pillow's "L")."""
    return (rgb[:, :, :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def ink_on_black(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """Light ink on a black background, stretched to [0, 1]; also whether the image had to be inverted.

    The background is the median of the border pixels: a light border means dark ink on paper, so we invert.
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    inverted = bool(np.median(border) > 0.5)
    ink = 1.0 - grey if inverted else grey
    background, top = float(np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]]))), float(ink.max())
    if top - background < MIN_CONTRAST:
        raise ImageRejected("No digit found: the image is a single flat colour; draw a dark digit on a light "
                            "background (or a light one on dark).")
    return np.clip((ink - background) / (top - background), 0.0, 1.0), inverted


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels above INK_THRESHOLD."""
    rows, cols = np.flatnonzero((ink > INK_THRESHOLD).any(1)), np.flatnonzero((ink > INK_THRESHOLD).any(0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def fit(ink: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longer side is `side` pixels, keeping the aspect ratio, with antialiasing."""
    height, width = ink.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(ink.astype(np.float32))  # mode "F"
    return np.clip(np.asarray(image.resize(size, Image.Resampling.LANCZOS), dtype=np.float64), 0.0, 1.0)


def centre_of_mass(ink: np.ndarray) -> tuple[float, float]:
    total = ink.sum()
    rows, cols = np.indices(ink.shape)
    return float((rows * ink).sum() / total), float((cols * ink).sum() / total)


def paste_centred_by_mass(patch: np.ndarray, canvas: int) -> np.ndarray:
    """Place patch in a canvas×canvas field so that its centre of mass lands on the field's centre (as MNIST)."""
    out = np.zeros((canvas, canvas))
    row_mass, col_mass = centre_of_mass(patch)
    centre = (canvas - 1) / 2
    top = int(np.clip(round(centre - row_mass), 0, canvas - patch.shape[0]))
    left = int(np.clip(round(centre - col_mass), 0, canvas - patch.shape[1]))
    out[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    return out


def mnist_style(grey: np.ndarray, canvas: int = 28, box: int = 20) -> tuple[np.ndarray, bool]:
    """MNIST's recipe (LeCun et al.): ink cropped, fitted into 20×20 keeping aspect, centred by mass in 28×28.

    Returns the (28, 28) image in [0, 1] and whether it was inverted.
    """
    ink, inverted = ink_on_black(grey)
    return paste_centred_by_mass(fit(crop_to_ink(ink), box), canvas), inverted


def digits_style(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """scikit-learn digits' recipe (UCI optdigits): ink fitted into a 32×32 bitmap, then 4×4 blocks averaged → 8×8.

    Returned in [0, 1] (the dataset's 0..16 scale divided by 16), with whether it was inverted.
    """
    ink, inverted = ink_on_black(grey)
    patch = fit(crop_to_ink(ink), 32)
    bitmap = np.zeros((32, 32))
    top, left = (32 - patch.shape[0]) // 2, (32 - patch.shape[1]) // 2
    bitmap[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
    return bitmap.reshape(8, 4, 8, 4).mean(axis=(1, 3)), inverted


def resize_style(rgb: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
    """Other datasets (CIFAR-like photos): centre-crop to the aspect ratio, resize; (C, H, W) in [0, 1]."""
    image = Image.fromarray(rgb)
    scale = min(image.width / width, image.height / height)
    left, top = round((image.width - width * scale) / 2), round((image.height - height * scale) / 2)
    image = image.crop((left, top, left + round(width * scale), top + round(height * scale)))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    if channels == 1:
        return to_grey(np.asarray(image))[None]
    return np.asarray(image, dtype=np.float64).transpose(2, 0, 1) / 255.0


# dataset → recipe: (H, W) grey in [0, 1] → (H', W') input in [0, 1] and whether it was inverted
RECIPES: dict[str, Callable[[np.ndarray], tuple[np.ndarray, bool]]] = {
    "mnist5k": mnist_style,
    "mnist": mnist_style,
    "digits": digits_style,
}


@dataclass(frozen=True)
class Prepared:
    """An upload ready for a model: what the user sent and what the model sees."""

    original: np.ndarray  # (H, W, 3) uint8, at most MAX_WORKING_SIDE a side
    model_input: np.ndarray  # (C, H, W) float32 in [0, 1], the dataset's input before mean/std normalising
    inverted: bool  # a light background was turned dark, as the dataset's images are


def prepare(data: bytes, dataset: str, input_shape: tuple[int, int, int]) -> Prepared:
    """Decode an upload and turn it into the dataset's input; ImageRejected with one sentence if it cannot be."""
    rgb = decode(data)
    if dataset in RECIPES:
        image, inverted = RECIPES[dataset](to_grey(rgb))
        model_input = image[None]
    else:
        model_input, inverted = resize_style(rgb, *input_shape), False
    return Prepared(rgb, model_input.astype(np.float32), inverted)


# ---- display -----------------------------------------------------------------------------------------------------

def to_png(pixels: np.ndarray, scale: int = 1) -> bytes:
    """(H, W) / (H, W, 1) / (H, W, 3) uint8 → PNG bytes, enlarged `scale` times with crisp (nearest) pixels."""
    pixels = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


def shrunk(prepared: Prepared, side: int = 320) -> Prepared:
    """A copy whose original is at most `side` pixels a side: what a session keeps in memory between reruns."""
    image = Image.fromarray(prepared.original)
    image.thumbnail((side, side))
    return dataclasses.replace(prepared, original=np.asarray(image))


def preview_png(rgb: np.ndarray, side: int = 320) -> bytes:
    """A small PNG of an upload for display (never the full-size image)."""
    image = Image.fromarray(rgb)
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def input_to_pixels(model_input: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] → (H, W, C) uint8, to show what the model sees."""
    return (np.clip(model_input, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
