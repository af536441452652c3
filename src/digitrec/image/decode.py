"""Decode the images people have: any common file or array -> a float32 grey image in [0, 1].

Try: `python -c "from digitrec.image.decode import load_image; print(load_image('digit.png').shape)"`

`load_image` applies EXIF orientation, composites transparency, scales 16-bit images, and
refuses oversized or damaged files before and while decoding, each with a message that says
what to do (`InputTooLargeError` for the size limits, a plain `DigitrecError` otherwise).
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import stat
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DigitrecError, InputTooLargeError

MAX_BYTES = 64 * 2**20  # larger files are refused before decoding
MAX_PIXELS = 40_000_000  # decompression-bomb cap, checked from the header before decoding
MAX_ASPECT = 40  # a 20-digit number cropped tightly is ~16:1; a 50000x50 strip is refused
FORMATS = "PNG, JPEG, BMP, TIFF, WebP or GIF"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")  # the files of those formats
OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")  # "<_io.BytesIO object at 0x7f...>"


def load_image(
    source: bytes | str | os.PathLike[str] | Image.Image,
    *,
    name: str | None = None,
    reduce_to: int | None = None,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Decode an image file (path or bytes), or take a PIL image, to a float32 grey array (H, W)
    in [0, 1]. A file of several frames (an animated GIF, a multi-page TIFF) is read from its
    first; `notes`, when given, gets a line saying so.

    Applies EXIF orientation, composites transparency onto the background (see
    `composite_alpha`) and scales 16-bit images correctly. With `reduce_to`, a JPEG is decoded
    at 1/2, 1/4 or 1/8 scale (much faster for phone photos) so that it keeps at least
    `reduce_to` pixels; coordinates then refer to the reduced image. Every failure is a
    DigitrecError naming `name` (default: the path, or "image" for bytes): InputTooLargeError
    for a file over `max_bytes` or an image over `max_pixels` (at most MAX_PIXELS), the pixels
    read from the header before decoding.
    """
    if not 0 < max_pixels <= MAX_PIXELS:
        raise DigitrecError(f"max_pixels must be 1 to {MAX_PIXELS:,} (the decoder's cap); got {max_pixels:,}")
    if isinstance(source, Image.Image):  # already decoded: upright it, check it and make it grey
        label = name or "image"
        _check_dimensions(source.size, label, max_pixels)
        try:
            return _pil_to_gray(_upright(source))
        except _NotFinite:
            raise DigitrecError(_not_finite(label)) from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "image"
        data = bytes(source)
    else:
        label = name or os.fspath(source)
        data = _read_file(source, label, max_bytes)
    if not data:
        raise DigitrecError(f"{label}: the file is empty; give a {FORMATS} image")
    if len(data) > max_bytes:  # a stream is read to the limit and one byte more: its size is unknown
        raise InputTooLargeError(
            f"{label}: too large, over the {max_bytes / 2**20:.1f} MiB limit; resize or compress the image first"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_dimensions(img.size, label, max_pixels)
            frames = int(getattr(img, "n_frames", 1))
            if notes is not None and frames > 1:
                notes.append(f"only the first of its {frames} frames was read")
            if reduce_to and img.format == "JPEG":
                w, h = img.size
                k = math.sqrt(reduce_to / (w * h))
                if k < 1:
                    img.draft("RGB" if img.mode == "RGB" else img.mode, (int(w * k), int(h * k)))
            if _fast_png(img):
                # libspng decodes in about 40% of Pillow's time (0.25 against 0.6 ms for a
                # 280x280 canvas drawing): the largest single cost of recognising one.
                return _pil_to_gray(Image.fromarray(_spng().load(data, format=img.mode)))
            img.load()
            return _pil_to_gray(_upright(img))
    except DigitrecError:
        raise
    except _NotFinite:
        raise DigitrecError(_not_finite(label)) from None
    except Image.DecompressionBombError:
        raise InputTooLargeError(
            f"{label}: the image has too many pixels (limit {max_pixels:,}); resize it first"
        ) from None
    except UnidentifiedImageError:
        # Pillow's own text names the stream object ("<_io.BytesIO object at 0x...>"): useless.
        raise DigitrecError(f"{label}: cannot read: not a {FORMATS} image (cannot identify the format)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on bad input
        # OSError (truncated), ValueError, SyntaxError, EOFError, struct.error, IndexError, ...
        # all mean the same thing to the user: a damaged file.
        raise DigitrecError(
            f"{label}: cannot read this image, the file is damaged ({_reason(exc)}); give a valid {FORMATS} file"
        ) from None


@functools.cache
def _spng() -> Any:
    """pyspng (libspng) when installed (it has wheels for the common platforms), else None."""
    try:
        import pyspng
    except ImportError:
        return None
    return pyspng


def _fast_png(img: Image.Image) -> bool:
    """Can libspng decode this PNG to exactly the pixels Pillow would? 8-bit grey, RGB or RGBA
    without a transparent colour (tRNS) or EXIF orientation; the rest goes through Pillow."""
    return (
        img.format == "PNG"
        and img.mode in ("L", "RGB", "RGBA")
        and "transparency" not in img.info
        and "exif" not in img.info
        and _spng() is not None
    )


def header_pixels(data: bytes) -> int | None:
    """The pixel count an image file's header states, without decoding it; None when the bytes
    are not an image Pillow knows (decoding will say why).

    >>> import io
    >>> buf = io.BytesIO()
    >>> Image.new("L", (300, 200)).save(buf, format="PNG")
    >>> header_pixels(buf.getvalue()), header_pixels(b"not an image")
    (60000, None)
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Exception:  # noqa: BLE001 - any undecodable input: the decoder reports it properly
        return None
    return int(w) * int(h)


def _not_finite(label: str) -> str:
    return f"{label}: some pixels are not numbers (NaN or infinite); give an image of finite values"


def _reason(exc: Exception) -> str:
    """A decoder's error as a short phrase, without the object reprs some of them include."""
    text = OBJECT_REPR.sub("", str(exc)).strip(" :")
    return text or type(exc).__name__


def _read_file(path: str | os.PathLike[str], label: str, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes of a regular file: a device (/dev/zero), a FIFO or a socket
    has no size to check and may never end, so it is refused before it is opened (opening a
    FIFO blocks until someone writes to it)."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):
            raise DigitrecError(f"{label}: not a regular file (a device, a pipe or a socket); give an image file")
        if st.st_size > max_bytes:
            raise InputTooLargeError(
                f"{label}: {st.st_size / 2**20:.1f} MiB is too large (limit {max_bytes / 2**20:.1f} MiB); "
                "resize or compress the image first"
            )
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)  # a file that grew since is caught by the caller's size check
    except FileNotFoundError:
        raise DigitrecError(f"{label}: no such file; check the path") from None
    except IsADirectoryError:
        raise DigitrecError(f"{label}: is a folder, not an image file") from None
    except OSError as exc:
        raise DigitrecError(f"{label}: cannot read the file ({exc.strerror or exc})") from None


def _check_dimensions(size: tuple[int, int], label: str, max_pixels: int) -> None:
    """Refuse empty, oversized and absurdly thin images from the header, before decoding."""
    w, h = size
    if w <= 0 or h <= 0:
        raise DigitrecError(f"{label}: the image is {w}x{h} pixels, it has no content")
    if w * h > max_pixels:
        raise InputTooLargeError(f"{label}: {w}x{h} is too many pixels (limit {max_pixels:,}); resize the image first")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise DigitrecError(
            f"{label}: a {w}x{h} image is too thin (aspect limit {MAX_ASPECT}:1); crop it to the digits"
        )


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phones store photos sideways and say so in EXIF)."""
    try:
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when already upright
    except Exception:  # noqa: BLE001 - a broken EXIF block should not make the image unreadable
        pass
    return img


class _NotFinite(ValueError):
    """A float image holds NaN or infinite pixels."""


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> float32 grey [0, 1], alpha composited. Raises _NotFinite for a float
    image with NaN or infinite pixels (scaled to [0, 1], they would become ink)."""
    mode = img.mode
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32) / 65535.0
    if mode in ("I", "F"):
        pixels = np.asarray(img)
        if mode == "F" and not np.isfinite(pixels).all():
            raise _NotFinite
        return to_gray(pixels)
    has_alpha = "A" in mode or mode.endswith("a") or "transparency" in img.info
    if has_alpha:
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        return composite_alpha(_unit(rgba.convert("L")), _unit(rgba.getchannel("A")))
    return _unit(img if mode == "L" else img.convert("L"))


def _unit(img: Image.Image) -> np.ndarray:
    """An 8-bit single-band image -> float32 in [0, 1], converted and scaled in one pass."""
    return np.multiply(np.asarray(img), np.float32(1 / 255), dtype=np.float32)


def composite_alpha(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fill transparent pixels with a background that keeps the drawing visible.

    When few pixels are opaque they are the strokes (a canvas export): transparency becomes
    white behind dark strokes and black behind light ones. When most are opaque, they are
    mostly paper (a photo with transparent corners): transparency becomes the paper's level.
    """
    if alpha.min() >= 1.0:
        return grey
    opaque = alpha > 0.5
    if np.count_nonzero(opaque) * 2 < opaque.size:
        weight = float(alpha.sum())
        ink = float(np.dot(grey.ravel(), alpha.ravel())) / weight if weight > 0 else 0.0
        fill = 1.0 if ink < 0.5 else 0.0
    else:
        fill = float(np.median(grey[opaque]))
    out = grey - np.float32(fill)  # grey * alpha + fill * (1 - alpha), with fewer temporaries
    out *= alpha
    out += np.float32(fill)
    return out.astype(np.float32, copy=False)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] -> uint8 0..255, rounded and clipped (for PNG files and uint8 sets)."""
    return np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any numeric array (H, W), (H, W, 1|3|4), bool/uint8/uint16/int/float -> float32 [0, 1].

    Integers are scaled by their type's range (uint8 /255, uint16 /65535); other integer and
    float arrays by 255 or 65535 when their maximum says they use that range.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise DigitrecError(f"image array has shape {a.shape}; give (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA")
    if a.size == 0 or a.shape[0] == 0 or a.shape[1] == 0:
        raise DigitrecError(f"image array has shape {a.shape}, it has no pixels")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) * np.float32(1 / 255)
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif a.dtype == bool:
        f = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.number):
        f = a.astype(np.float32, copy=False)
        lo, top = float(f.min()), float(f.max())
        if a.ndim == 2 and lo >= 0.0 and top <= 1.0:  # already float grey in [0, 1]: no copy
            return np.ascontiguousarray(f)
        f = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        top = float(f.max())
        if top > 255.0:
            f = f / 65535.0
        elif top > 1.0:
            f = f / 255.0
    else:
        raise DigitrecError(f"image array has dtype {a.dtype}; give numbers")
    if f.ndim == 3:
        grey = f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114  # ITU-R 601, as Pillow
        if f.shape[2] == 4:
            grey = composite_alpha(grey, np.clip(f[..., 3], 0.0, 1.0))
        f = grey
    return np.ascontiguousarray(np.clip(f, 0.0, 1.0), dtype=np.float32)
