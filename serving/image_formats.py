"""Image bytes the ``serving_images`` signature cannot decode, made into ones it can.

The signature decodes in TensorFlow (``tf.io.decode_image``: PNG, JPEG, GIF, BMP). WebP, which
browsers, phones and Pillow produce, is not among them, so the server transcodes a WebP image to
PNG (lossless, same pixels) before the call; every other format passes through untouched.
Pillow is already a dependency (the pipeline's readers decode with it).
"""

from __future__ import annotations

import io

TF_DECODABLE = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def is_webp(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def decodable(data: bytes) -> bytes | None:
    """``data`` as bytes ``tf.io.decode_image`` reads (WebP -> PNG), or None when it is not an
    image this server knows. Raises ValueError for a WebP file that does not decode."""
    if data.startswith(TF_DECODABLE):
        return data
    if not is_webp(data):
        return None
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
