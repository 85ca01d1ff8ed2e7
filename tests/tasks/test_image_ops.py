"""Unit tests of the pure image operations: geometry, formats, colour modes, bad input, features."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headwater.errors import InputError
from tasks.image_ops import (
    ImageError,
    nearest_colour,
    parse_operations,
    process_bytes,
)

SAMPLE = Path("/work/shared/data/images/fashion/images/10025.jpg")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def reopen(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(
    ("ops", "size", "fmt"),
    [
        (["resize:256x256", "format:webp"], (192, 256), "WEBP"),
        (["thumbnail:256x256", "format:png"], (60, 80), "PNG"),
        (["thumbnail:30x30"], (22, 30), "JPEG"),
        (["pad", "format:jpeg:70"], (80, 80), "JPEG"),
        (["pad:128:black", "format:png"], (128, 128), "PNG"),
        (["crop-square"], (60, 60), "JPEG"),
        (["crop:32", "format:webp:50"], (32, 32), "WEBP"),
    ],
)
def test_geometry_and_formats(ops: list[str], size: tuple[int, int], fmt: str) -> None:
    out = process_bytes(SAMPLE.read_bytes(), parse_operations(ops))
    img = reopen(out.data)
    assert img.size == size == (out.width, out.height)
    assert img.format == fmt
    assert not img.info.get("exif") and not img.info.get("icc_profile")


def test_grayscale() -> None:
    out = process_bytes(SAMPLE.read_bytes(), parse_operations(["grayscale", "format:png"]))
    assert reopen(out.data).mode == "L"


def test_exif_orientation_applied_and_stripped() -> None:
    img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    exif[0x010F] = "CameraMaker"
    data = encode(img, "JPEG", exif=exif.tobytes())
    out = reopen(process_bytes(data, parse_operations(["format:jpeg"])).data)
    assert out.size == (20, 40)
    assert 0x0112 not in out.getexif() and 0x010F not in out.getexif()


@pytest.mark.parametrize(
    ("mode", "fmt", "ops", "out_mode"),
    [
        ("CMYK", "JPEG", ["format:jpeg"], "RGB"),
        ("P", "PNG", ["format:png"], "RGB"),
        ("RGBA", "PNG", ["format:png"], "RGBA"),
        ("RGBA", "PNG", ["format:jpeg"], "RGB"),
        ("LA", "PNG", ["format:png"], "LA"),
        ("1", "PNG", ["format:png"], "L"),
    ],
)
def test_colour_modes(mode: str, fmt: str, ops: list[str], out_mode: str) -> None:
    img = Image.new(mode, (30, 20))
    out = reopen(process_bytes(encode(img, fmt), parse_operations(ops)).data)
    assert out.mode == out_mode


def test_transparent_pixels_flattened_on_background_for_jpeg() -> None:
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    out = reopen(process_bytes(encode(img, "PNG"), parse_operations(["format:jpeg:95"])).data)
    assert min(out.getpixel((5, 5))) > 240  # white background, not the hidden red


def test_palette_with_transparency_keeps_alpha() -> None:
    img = Image.new("P", (10, 10), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] * 128)
    data = encode(img, "PNG", transparency=1)
    out = reopen(process_bytes(data, parse_operations(["format:png"])).data)
    assert out.mode == "RGBA" and out.getpixel((0, 0))[3] == 0


def test_16bit_scaled_not_clipped() -> None:
    arr = np.full((10, 10), 32768, dtype=np.uint16)
    out = reopen(
        process_bytes(encode(Image.fromarray(arr), "PNG"), parse_operations(["format:png"])).data
    )
    assert out.mode == "L" and 120 <= out.getpixel((0, 0)) <= 135


@pytest.mark.parametrize(
    ("data", "stage", "reason"),
    [
        (b"", "read", "zero-byte"),
        (b"this is not an image at all", "decode", "not an image"),
        (SAMPLE.read_bytes()[:600], "decode", "truncated"),
    ],
)
def test_bad_images(data: bytes, stage: str, reason: str) -> None:
    with pytest.raises(ImageError) as err:
        process_bytes(data, parse_operations(["resize:64x64"]))
    assert err.value.stage == stage and reason in err.value.reason


def test_decompression_bomb_refused_before_decoding() -> None:
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(ImageError, match="decompression bomb"):
        process_bytes(data, parse_operations(["resize:64x64"]), max_pixels=1_000_000)


def test_large_jpeg_is_drafted_but_output_exact() -> None:
    big = encode(Image.new("RGB", (1800, 2400), "navy"), "JPEG")
    out = process_bytes(big, parse_operations(["resize:256x256", "format:webp"]))
    assert (out.width, out.height) == (192, 256)


@pytest.mark.parametrize(
    "bad", ["resize", "resize:abcx", "format:gif", "quality:0", "blur:3", "pad:nocolour"]
)
def test_bad_operations(bad: str) -> None:
    with pytest.raises(InputError, match="operation"):
        parse_operations([bad])


def test_features() -> None:
    red = encode(Image.new("RGB", (60, 80), (200, 30, 40)), "PNG")
    shirt = Image.new("RGB", (60, 80), "white")
    shirt.paste((25, 30, 70), (15, 15, 45, 65))  # navy product on a white background
    a = process_bytes(
        encode(shirt, "PNG"),
        parse_operations([]),
        features=True,
        vocabulary=["Navy Blue", "White", "Red"],
    )
    b = process_bytes(red, parse_operations([]), features=True)
    assert a.features["predicted_colour"] == "Navy Blue"
    assert b.features["predicted_colour"] == "Red"
    assert len(a.features["phash"]) == 16
    assert nearest_colour((250, 250, 250), ["White", "Black"]) == "White"
