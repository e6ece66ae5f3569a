"""Turn whatever a source holds for an image into verl's ``{"bytes": PNG/JPEG bytes, "path": None}`` struct.

Accepted inputs: an HF ``Image`` struct (``{"bytes", "path"}``, either may be None), raw bytes, a PIL image, or a
path (absolute, or relative to one of the given roots). Every image is fully decoded once (so an undecodable file
is caught here, not inside the trainer). PNG and JPEG bytes are kept as they are; anything else (GIF, WebP, BMP,
TIFF, ...) is re-encoded as PNG (repair rule ``image_reencoded_png``).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

KEEP_FORMATS = {"PNG", "JPEG"}

#: Qwen2.5-VL's ``smart_resize`` raises for an aspect ratio above 200 (qwen_vl_utils and transformers alike).
MAX_ASPECT_RATIO = 200


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is the report's skip reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _find_file(path: str, roots: Sequence[Path]) -> Path | None:
    p = Path(path)
    if p.is_absolute():
        return p if p.is_file() else None
    for root in roots:
        for cand in (root / p, root / "images" / p):
            if cand.is_file():
                return cand
    return None


def load_image_bytes(value: Any, roots: Sequence[Path] = ()) -> tuple[bytes, str]:
    """Raw bytes of an image reference + a short description of where they came from."""
    if value is None:
        raise ImageError("missing_image", "image is null")
    if isinstance(value, PILImage.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue(), "PIL image"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), "bytes"
    if isinstance(value, dict):
        data = value.get("bytes")
        if data:
            return bytes(data), "bytes"
        path = value.get("path")
        if not path:
            raise ImageError("missing_image", "image struct has neither bytes nor path")
        value = path
    if isinstance(value, (str, os.PathLike)):
        if str(value).strip() == "":
            raise ImageError("missing_image", "image path is empty")
        found = _find_file(str(value), roots)
        if found is None:
            where = ", ".join(str(r) for r in roots) or "(no image root)"
            raise ImageError("missing_image", f"image file {str(value)!r} not found under {where}")
        return found.read_bytes(), str(found)
    raise ImageError("missing_image", f"unsupported image value of type {type(value).__name__}")


def to_image_struct(value: Any, roots: Sequence[Path] = ()) -> tuple[dict[str, Any], bool]:
    """``({"bytes", "path": None}, reencoded)`` for one image reference; raises :class:`ImageError`."""
    data, origin = load_image_bytes(value, roots)
    if not data:
        raise ImageError("missing_image", f"image from {origin} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                fmt = im.format
                im.load()  # full decode: truncated / corrupt data fails here
                width, height = im.size
                if width < 1 or height < 1:
                    raise ImageError("undecodable_image", f"image from {origin} has size {width}x{height}")
                if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
                    raise ImageError(
                        "extreme_aspect_ratio",
                        f"image from {origin} is {width}x{height}: aspect ratio above {MAX_ASPECT_RATIO}, "
                        "which the Qwen2.5-VL processor rejects",
                    )
                if fmt in KEEP_FORMATS:
                    return {"bytes": data, "path": None}, False
                frame = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P", "PA") else "RGB")
                buf = io.BytesIO()
                frame.save(buf, format="PNG")
                return {"bytes": buf.getvalue(), "path": None}, True
    except ImageError:
        raise
    # PIL raises many types for bad data (UnidentifiedImageError, OSError, SyntaxError, ValueError, ...)
    except Exception as exc:  # noqa: BLE001
        msg = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(exc))
        raise ImageError("undecodable_image", f"image from {origin} cannot be decoded: {type(exc).__name__}: {msg}")
