"""The decoded-pixel cap: an image's size is read from its header before anything decodes it.

A PNG of 20,000 x 20,000 black pixels is about 0.4 MB on disk and 400 MB decoded (1.2 GB as
RGB): the body limit cannot see it, only the header can. ``check_pixels`` opens the bytes with
Pillow lazily (``Image.open`` reads the header; nothing is decoded until ``load()``), reads
``im.size`` and refuses an image over the cap with ``ImageTooLarge``, whose message names the
image, its size and what to do. Every place that decodes an image calls it first: the server's
``serving_images`` (REST and gRPC), the console's predict box, the pipeline's readers,
``mlmodel eval/predict`` (through the readers) and ``serving predict``.

The default, 4,000,000 pixels (2,000 x 2,000, about 4 MB decoded as grey, 16 MB as RGBA),
is far beyond any digit photo a phone takes after its own downscaling (the model sees 28 x 28)
and keeps one image's decoded size within the server's documented memory budget. Pillow's own
guard (``Image.MAX_IMAGE_PIXELS``: a warning above it, ``DecompressionBombError`` above twice
it) is lowered to the same cap by ``configure_pillow`` so a path that forgets the check still
stops at twice the cap instead of Pillow's 179 million pixels.
"""

from __future__ import annotations

import io
import re
import struct

DEFAULT_MAX_IMAGE_PIXELS = 4_000_000


class ImageTooLarge(ValueError):
    """An image whose header claims more pixels than the cap; the message names it."""


def load_pillow() -> None:
    """Import Pillow with every format plugin it would otherwise import on its first ``open``
    (about 0.15 s, some of them C modules). A server or console calls it before its other
    threads import anything: two threads importing at once can deadlock on Python's module
    locks (Pillow and TensorFlow both reach xml.parsers.expat), and any first ``open``, even of
    bytes that are no image, makes Pillow import all its plugins."""
    from PIL import Image

    Image.init()


def configure_pillow(max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Pillow's process-wide bomb guard at our cap (0: Pillow's default is left alone)."""
    if max_pixels > 0:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max_pixels


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # what the server and the readers accept


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header without decoding it; None when Pillow does not
    recognise the bytes (the caller's decoder then names the format problem). A PNG's IHDR is
    read directly (about 1 us, against 20-200 us for Pillow's open)."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:  # lazy: the header only
            width, height = image.size
    except Image.DecompressionBombError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    return int(width), int(height)


def check_pixels(data: bytes, source: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Raise ``ImageTooLarge`` when ``data``'s header claims more than ``max_pixels`` pixels
    (0 = no cap). ``source`` names the image in the message (a file, ``example 3``...)."""
    if max_pixels <= 0:
        return
    from PIL import Image

    try:
        size = header_size(data)
    except Image.DecompressionBombError as exc:  # Pillow's own guard (2x its limit) at open()
        found = re.search(r"\((\d+) pixels\)", str(exc))
        _refuse(source, f"{int(found.group(1)):,}" if found else "too many", max_pixels)
    if size is None:
        return
    width, height = size
    if width * height > max_pixels:
        _refuse(source, f"{width} x {height} = {width * height:,}", max_pixels)


def _refuse(source: str, pixels: str, max_pixels: int) -> None:
    raise ImageTooLarge(f"{source}: the image is {pixels} pixels, more than the {max_pixels:,} "
                        "allowed; downscale it first (the model sees 28 x 28)")
