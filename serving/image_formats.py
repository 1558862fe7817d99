"""Image bytes the ``serving_images`` signature cannot decode, made into ones it can.

The signature decodes in TensorFlow (``tf.io.decode_image``: PNG, JPEG, GIF, BMP). WebP, which
browsers, phones and Pillow produce, is not among them, so the server transcodes a WebP image to
PNG (lossless, same pixels) before the call; every other format passes through untouched.
Pillow is already a dependency (the pipeline's readers decode with it).

Before either, the image's header is read and an image claiming more than ``max_pixels``
pixels (``serving start --max-image-pixels``, ``datasources.images``) is refused: a 0.4 MB PNG
of 20,000 x 20,000 pixels decoded to 400 MB inside the model's ``tf.io.decode_image``.
"""

from __future__ import annotations

import io

from datasources.images import DEFAULT_MAX_IMAGE_PIXELS, check_pixels, configure_pillow

TF_DECODABLE = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def is_webp(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


class _Limits:
    max_pixels = DEFAULT_MAX_IMAGE_PIXELS  # the process's cap; serve() sets it from its config


def set_max_pixels(max_pixels: int) -> None:
    """The decoded-pixel cap of this process's server (0 = none), Pillow's guard with it."""
    _Limits.max_pixels = max_pixels
    configure_pillow(max_pixels)


def max_pixels() -> int:
    return _Limits.max_pixels


def decodable(data: bytes, source: str = "the image") -> bytes | None:
    """``data`` as bytes ``tf.io.decode_image`` reads (WebP -> PNG), or None when it is not an
    image this server knows. Raises ValueError for a WebP file that does not decode, and
    ``datasources.images.ImageTooLarge`` (a ValueError) for one whose header claims more pixels
    than the cap, before anything decodes it."""
    tf_native = data.startswith(TF_DECODABLE)
    if not tf_native and not is_webp(data):
        return None
    check_pixels(data, source, _Limits.max_pixels)
    if tf_native:
        return data
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)  # an animated WebP: its first frame, like GIF
            frame = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"a WebP image that does not decode ({exc})") from exc
    out = io.BytesIO()
    frame.save(out, "PNG", compress_level=1)
    return out.getvalue()
