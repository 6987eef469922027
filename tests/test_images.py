"""Image loading: every format and mode a face dataset holds becomes 8-bit RGB; bad files give clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceval.sources.images import ImageLoadError, load_rgb


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 6 % 256, y * 8 % 256, (x + y) * 3 % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "suffix"),
    [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tiff"), ("WEBP", ".webp"), ("PPM", ".ppm")],
)
def test_lossless_formats_round_trip_exactly(tmp_path, fmt, suffix):
    pixels = gradient()
    path = tmp_path / f"face{suffix}"
    Image.fromarray(pixels).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    loaded = load_rgb(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (30, 40, 3)
    np.testing.assert_array_equal(loaded, pixels)


def test_format_is_read_from_content_not_extension(tmp_path):
    # Yale's files are GIFs with no extension at all.
    path = tmp_path / "subject01"
    Image.fromarray(gradient()[..., 0]).save(path, format="GIF")
    assert load_rgb(path).shape == (30, 40, 3)
    misnamed = tmp_path / "photo.jpg"
    Image.fromarray(gradient()).save(misnamed, format="PNG")
    np.testing.assert_array_equal(load_rgb(misnamed), gradient())


def test_jpeg_loads_close_to_source(tmp_path):
    path = tmp_path / "face.jpg"
    Image.fromarray(gradient()).save(path, quality=95)
    assert np.abs(load_rgb(path).astype(int) - gradient().astype(int)).mean() < 4


def test_grey_image_becomes_three_equal_channels(tmp_path):
    grey = gradient()[..., 1]
    path = tmp_path / "grey.pgm"
    Image.fromarray(grey, mode="L").save(path)
    loaded = load_rgb(path)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], grey)


def test_sixteen_bit_image_is_rescaled_to_full_8_bit_range(tmp_path):
    values = (np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)  # 0 .. 59950
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    loaded = load_rgb(path)[..., 0]
    assert loaded.min() == 0 and loaded.max() == 255
    expected = np.round(values / values.max() * 255).astype(np.uint8)
    np.testing.assert_array_equal(loaded, expected)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red, but fully transparent on the left half
    rgba[:, 5:, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    loaded = load_rgb(path)
    np.testing.assert_array_equal(loaded[:, :5], 255)
    np.testing.assert_array_equal(loaded[:, 5:], np.broadcast_to([200, 0, 0], (10, 5, 3)))


def test_palette_and_cmyk_images(tmp_path):
    palette = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "palette.png"), np.asarray(palette.convert("RGB")))
    cmyk = Image.fromarray(gradient()).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=100)
    assert load_rgb(tmp_path / "cmyk.jpg").shape == (30, 40, 3)


def test_exif_orientation_is_applied(tmp_path):
    pixels = gradient(40, 30)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    loaded = load_rgb(path)
    assert loaded.shape == (40, 30, 3)
    expected = np.rot90(pixels, k=-1)
    assert np.abs(loaded.astype(int) - expected.astype(int)).mean() < 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"name,identity\nsome text that is not an image\n", "not an image"),
    ],
)
def test_bad_files_raise_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=message) as caught:
        load_rgb(path)
    assert str(path) in str(caught.value)


def test_truncated_image_is_an_error(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(gradient(200, 200)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ImageLoadError, match="truncated") as caught:
        load_rgb(path)
    assert "cut.jpg" in str(caught.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ImageLoadError, match="exists"):
        load_rgb(tmp_path / "nowhere.png")


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(gradient(100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="too large"):
        load_rgb(path)
