"""Reading one image file into 8-bit RGB, whatever its format, mode or orientation.

Files are recognised by content, not extension (Yale's files have none), and Pillow's decompression-bomb guard
stays on: an oversized file is a recorded failure, not an out-of-memory crash.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats a face-image dataset realistically holds; anything else Pillow might open (e.g. PDF, EPS) is refused.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "PPM", "GIF", "BMP", "WEBP"})


# Part of every embedding's cache key: bump it whenever load_rgb's conversion changes, so that stored vectors
# computed from differently converted pixels are never reused.
LOADER_VERSION = 1


def loader_identity() -> dict[str, object]:
    """What turns files into pixels: this module's conversion and the Pillow that decodes."""
    return {"loader": LOADER_VERSION, "pillow": Image.__version__}


class ImageLoadError(Exception):
    """An image file that cannot be used; the message says why and what to do."""


def _to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode (grey, palette, alpha, 16-bit, CMYK, float) to 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        # 16-bit and float images: Pillow's own convert("L") clips instead of scaling, so rescale by the range.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    elif image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        # Composite onto white: transparent pixels otherwise keep whatever colour the encoder left there.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_rgb(path: str | Path) -> np.ndarray:
    """Load an image file as a ``(H, W, 3)`` uint8 RGB array with its EXIF orientation applied.

    Raises `ImageLoadError` naming the file for missing, empty, non-image, truncated or oversized files.

    >>> load_rgb("face.png").shape  # doctest: +SKIP
    (256, 256, 3)
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ImageLoadError(f"{path}: cannot be read ({error.strerror}); check that the file exists") from error
    if size == 0:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes); replace it or remove it from the dataset")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format not in SUPPORTED_FORMATS:
                    raise ImageLoadError(
                        f"{path}: {image.format} is not a supported image format "
                        f"({', '.join(sorted(SUPPORTED_FORMATS))}); convert it or remove it"
                    )
                image.load()
                rgb = _to_rgb8(ImageOps.exif_transpose(image))
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(
            f"{path}: too large to decode safely ({error}); downscale the image, it is far larger than a face needs"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(f"{path}: not an image file; remove it from the dataset folder") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{path}: damaged or truncated image ({error}); re-export or remove it") from error
    return np.asarray(rgb, dtype=np.uint8)
