"""Pure image operations: parse an operation list, transform one image, compute its features.

Nothing here touches Prefect or the artifact store, so a process pool can run it and tests can
call it directly. Every image is decoded with a pixel limit (decompression bombs are refused),
EXIF orientation is applied, colour modes are normalised (CMYK, palette, alpha, 16-bit) and the
output carries no metadata (no EXIF, XMP, ICC or comments).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from headwater.errors import InputError

DEFAULT_MAX_PIXELS = 50_000_000
FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "png": "PNG"}
EXTENSIONS = {"JPEG": "jpg", "WEBP": "webp", "PNG": "png"}
ALPHA_FORMATS = {"WEBP", "PNG"}
ORIENTATION_TAG = 0x0112
SWAPS_AXES = {5, 6, 7, 8}

#: Approximate sRGB of the colour names used by fashion catalogues (Kaggle styles.csv baseColour).
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "Black": (20, 20, 20),
    "White": (245, 245, 245),
    "Off White": (235, 230, 215),
    "Cream": (240, 228, 190),
    "Beige": (215, 195, 160),
    "Skin": (225, 180, 150),
    "Nude": (220, 175, 145),
    "Peach": (250, 185, 150),
    "Grey": (128, 128, 128),
    "Grey Melange": (165, 165, 165),
    "Charcoal": (60, 62, 66),
    "Silver": (192, 192, 192),
    "Steel": (110, 120, 130),
    "Metallic": (150, 150, 155),
    "Blue": (40, 90, 200),
    "Navy Blue": (25, 30, 70),
    "Turquoise Blue": (40, 190, 200),
    "Teal": (0, 128, 128),
    "Sea Green": (46, 139, 87),
    "Green": (40, 140, 60),
    "Olive": (110, 110, 40),
    "Lime Green": (150, 210, 50),
    "Fluorescent Green": (100, 255, 80),
    "Red": (200, 30, 40),
    "Maroon": (110, 20, 35),
    "Burgundy": (120, 25, 45),
    "Rust": (170, 75, 35),
    "Orange": (240, 130, 30),
    "Yellow": (240, 210, 40),
    "Mustard": (205, 160, 40),
    "Gold": (200, 165, 70),
    "Khaki": (190, 175, 125),
    "Tan": (200, 155, 100),
    "Brown": (110, 70, 40),
    "Coffee Brown": (80, 55, 40),
    "Mushroom Brown": (150, 130, 110),
    "Taupe": (140, 125, 110),
    "Copper": (185, 110, 60),
    "Bronze": (170, 120, 60),
    "Pink": (240, 140, 175),
    "Rose": (230, 110, 140),
    "Magenta": (200, 30, 140),
    "Purple": (110, 45, 140),
    "Lavender": (185, 160, 220),
    "Mauve": (180, 130, 160),
}


class ImageError(Exception):
    """One image could not be processed; `stage` is read, decode, process or encode."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage}: {reason}")


@dataclass(frozen=True)
class Step:
    """One geometric or colour step."""

    name: str
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Operations:
    """A parsed operation list."""

    steps: tuple[Step, ...] = ()
    format: str = "JPEG"
    quality: int = 90
    background: tuple[int, int, int] = (255, 255, 255)
    source_format: bool = False  # keep the source format when no `format:` was given

    @property
    def extension(self) -> str:
        """File extension of the output format."""
        return EXTENSIONS[self.format]

    def describe(self) -> str:
        """Human-readable one-liner, e.g. ``resize 256x256, format webp q80``."""
        parts = [f"{s.name} {s.width}x{s.height}" if s.width else s.name for s in self.steps]
        parts.append(f"format {self.format.lower()} q{self.quality}")
        return ", ".join(parts)


def _box(spec: str, op: str) -> tuple[int, int]:
    try:
        if "x" in spec.lower():
            w, h = spec.lower().split("x", 1)
            width, height = int(w), int(h)
        else:
            width = height = int(spec)
    except ValueError:
        raise InputError(f"operation {op!r}: size must be WxH or N, got {spec!r}") from None
    if not (0 < width <= 65_535 and 0 < height <= 65_535):
        raise InputError(f"operation {op!r}: size must be between 1 and 65535")
    return width, height


def _colour(spec: str, op: str) -> tuple[int, int, int]:
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(spec)
    except ValueError:
        raise InputError(f"operation {op!r}: unknown colour {spec!r}") from None
    return rgb[0], rgb[1], rgb[2]


def parse_operations(specs: Iterable[str]) -> Operations:
    """Parse ``["resize:256x256", "pad", "format:webp:80", "grayscale"]`` into Operations.

    Accepted: ``resize:WxH`` (fit the box, up or down), ``thumbnail:WxH`` (fit the box, only
    shrink), ``pad[:N][:colour]`` (pad to a square, optionally N x N), ``crop[:N]`` /
    ``crop-square`` (centre crop to a square, optionally resized to N x N), ``grayscale``,
    ``format:jpeg|webp|png[:Q]``,
    ``quality:Q``, ``background:colour`` (behind transparency when the format has no alpha),
    ``exif-transpose`` and ``strip-metadata`` (always applied; accepted for explicitness).

    Raises:
        InputError: naming the operation that is not understood.
    """
    steps: list[Step] = []
    fmt: str | None = None
    quality = 90
    background = (255, 255, 255)
    for raw in specs:
        op = raw.strip()
        name, _, rest = op.partition(":")
        name = name.lower().replace("_", "-")
        args = [a for a in rest.split(":")] if rest else []
        if name in ("resize", "thumbnail"):
            if len(args) != 1:
                raise InputError(f"operation {op!r}: use {name}:WxH")
            w, h = _box(args[0], op)
            steps.append(Step(name, w, h))
        elif name in ("pad", "pad-square"):
            size = 0
            for arg in args:
                if arg.isdigit() or ("x" in arg.lower() and arg.lower().replace("x", "").isdigit()):
                    size = _box(arg, op)[0]
                else:
                    background = _colour(arg, op)
            steps.append(Step("pad", size, size))
        elif name in ("crop", "crop-square", "square"):
            size = _box(args[0], op)[0] if args else 0
            steps.append(Step("crop", size, size))
        elif name in ("grayscale", "greyscale", "gray", "grey"):
            steps.append(Step("grayscale"))
        elif name == "format":
            if not args or args[0].lower() not in FORMATS:
                raise InputError(f"operation {op!r}: format must be one of jpeg, webp, png")
            fmt = FORMATS[args[0].lower()]
            if len(args) > 1:
                quality = _quality(args[1], op)
        elif name == "quality":
            if len(args) != 1:
                raise InputError(f"operation {op!r}: use quality:1-100")
            quality = _quality(args[0], op)
        elif name == "background":
            if len(args) != 1:
                raise InputError(f"operation {op!r}: use background:COLOUR")
            background = _colour(args[0], op)
        elif name in ("exif", "exif-transpose", "strip", "strip-metadata"):
            continue
        else:
            raise InputError(
                f"operation {op!r} is not known; use resize:WxH, thumbnail:WxH, pad[:N], "
                "crop[:N], grayscale, format:jpeg|webp|png[:Q], quality:Q, background:COLOUR"
            )
    return Operations(tuple(steps), fmt or "JPEG", quality, background, source_format=fmt is None)


def _quality(text: str, op: str) -> int:
    try:
        q = int(text)
    except ValueError:
        raise InputError(f"operation {op!r}: quality must be an integer 1-100") from None
    if not 1 <= q <= 100:
        raise InputError(f"operation {op!r}: quality must be between 1 and 100")
    return q


# ---- decoding ---------------------------------------------------------------------------------
def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) image bytes, refusing empty data, non-images and decompression bombs."""
    if not data:
        raise ImageError("read", "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decode", f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError("decode", "not an image (unidentified format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError("decode", f"corrupt image header ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            "decode",
            f"decompression bomb refused: {width}x{height} = {width * height} pixels "
            f"> limit {max_pixels}",
        )
    return img


def _target_for_draft(ops: Operations, size: tuple[int, int], swap: bool) -> tuple[int, int] | None:
    """The smallest decode size the first step needs (JPEG can decode at 1/2, 1/4, 1/8)."""
    if not ops.steps or ops.steps[0].name not in ("resize", "thumbnail"):
        return None
    step = ops.steps[0]
    box_w, box_h = (step.height, step.width) if swap else (step.width, step.height)
    w, h = size
    scale = min(box_w / w, box_h / h)
    if scale >= 0.5:
        return None
    # keep a reducing gap of 2 (like Image.thumbnail) so quality is not lost
    return max(1, int(w * scale * 2)), max(1, int(h * scale * 2))


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float images scaled to 8-bit L (Pillow's convert would clip)."""
    arr = np.asarray(img)
    if img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo or 1.0) * 255.0
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    arr = arr.astype(np.int64)
    if arr.max(initial=0) > 255:
        arr = arr // 257
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def normalise_mode(img: Image.Image) -> Image.Image:
    """RGB, RGBA, L or LA: CMYK, YCbCr, palette, 1-bit and 16-bit images converted correctly."""
    mode = img.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return img
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        return _to_8bit(img)
    if mode in ("RGBa", "La"):
        return img.convert("RGBA" if mode == "RGBa" else "LA")
    if mode == "CMYK":
        return img.convert("RGB")
    if mode in ("RGBX", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    return img.convert("RGBA" if "A" in mode else "RGB")


def decode(data: bytes, ops: Operations, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode, apply EXIF orientation, normalise the colour mode (JPEG drafted when shrinking)."""
    img = open_image(data, max_pixels)
    try:
        orientation = (
            img.getexif().get(ORIENTATION_TAG, 1)
            if img.format in ("JPEG", "WEBP", "PNG", "TIFF")
            else 1
        )
    except Exception:
        orientation = 1
    try:
        if img.format == "JPEG":
            target = _target_for_draft(ops, img.size, orientation in SWAPS_AXES)
            if target is not None:
                img.draft(img.mode if img.mode in ("RGB", "L") else None, target)
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img) or img
        img = normalise_mode(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decode", f"decompression bomb refused ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason:
            raise ImageError("decode", f"truncated image ({reason})") from None
        raise ImageError("decode", f"corrupt image ({reason})") from None
    return img


# ---- transforms -------------------------------------------------------------------------------
def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    scale = min(box[0] / w, box[1] / h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _fill(img: Image.Image, background: tuple[int, int, int]) -> tuple[int, ...] | int:
    if img.mode == "L":
        return round(0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2])
    if img.mode == "LA":
        return (round(sum(background) / 3), 0)
    if img.mode == "RGBA":
        return (*background, 0)
    return background


def apply_steps(img: Image.Image, ops: Operations) -> Image.Image:
    """Apply the geometric and colour steps in order."""
    resample = Image.Resampling.LANCZOS
    for step in ops.steps:
        if step.name == "resize":
            target = _fit(img.size, (step.width, step.height))
            if target != img.size:
                img = img.resize(target, resample, reducing_gap=None)
        elif step.name == "thumbnail":
            target = _fit(img.size, (step.width, step.height))
            if target[0] < img.size[0] or target[1] < img.size[1]:
                img = img.resize(target, resample)
        elif step.name == "pad":
            side = max(img.size)
            canvas = Image.new(img.mode, (side, side), _fill(img, ops.background))  # type: ignore[arg-type]
            canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
            img = canvas
            if step.width and step.width != side:
                img = img.resize((step.width, step.width), resample)
        elif step.name == "crop":
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side))
            if step.width and step.width != side:
                img = img.resize((step.width, step.width), resample)
        elif step.name == "grayscale":
            img = img.convert("LA" if img.mode in ("RGBA", "LA") else "L")
    return img


def encode(img: Image.Image, ops: Operations, fmt: str | None = None) -> bytes:
    """Encode without metadata; transparency is flattened onto the background for JPEG."""
    fmt = fmt or ops.format
    if img.mode in ("RGBA", "LA") and fmt not in ALPHA_FORMATS:
        base = Image.new(
            "RGB" if img.mode == "RGBA" else "L",
            img.size,
            _fill(img.convert(img.mode[:-1]), ops.background),
        )  # type: ignore[arg-type]
        base.paste(img, mask=img.getchannel("A"))
        img = base
    if img.mode == "LA" and fmt == "WEBP":
        img = img.convert("RGBA")
    out = io.BytesIO()
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        params = {"quality": ops.quality, "optimize": False}
    elif fmt == "WEBP":
        params = {"quality": ops.quality, "method": 4}
    elif fmt == "PNG":
        params = {"compress_level": 6}
    img.save(out, fmt, **params)  # no exif=/icc_profile=: metadata is stripped
    return out.getvalue()


# ---- features ---------------------------------------------------------------------------------
def perceptual_hash(img: Image.Image) -> str:
    """64-bit DCT perceptual hash (imagehash.phash) as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(img.convert("L") if img.mode not in ("L", "RGB") else img))


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def dominant_rgb(img: Image.Image) -> tuple[int, int, int]:
    """The main colour of the product: background (the border's colour) and transparency ignored."""
    small = img.copy()
    small.thumbnail((64, 64))
    if small.mode in ("RGBA", "LA"):
        arr = np.asarray(small.convert("RGBA"))
        pixels = arr[..., :3][arr[..., 3] > 127]
        border = None
    else:
        arr = np.asarray(small.convert("RGB"))
        pixels = arr.reshape(-1, 3)
        edge = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        border = np.median(edge, axis=0)
    if border is not None:
        far = np.abs(pixels.astype(np.int16) - border.astype(np.int16)).max(axis=1) > 24
        if far.sum() >= max(8, 0.03 * len(pixels)):
            pixels = pixels[far]
    if len(pixels) == 0:
        return (255, 255, 255)
    strip = Image.fromarray(pixels.reshape(1, -1, 3).astype(np.uint8), "RGB")
    quant = strip.quantize(colors=4, method=Image.Quantize.MEDIANCUT)
    counts = sorted(quant.getcolors() or [], reverse=True)
    palette = quant.getpalette() or []
    index = int(counts[0][1])  # type: ignore[call-overload]
    r, g, b = palette[index * 3 : index * 3 + 3]
    return int(r), int(g), int(b)


def nearest_colour(rgb: tuple[int, int, int], vocabulary: Sequence[str] | None = None) -> str:
    """The vocabulary colour closest to `rgb` in CIELAB (names without a known RGB are skipped)."""
    names = [n for n in (vocabulary or COLOUR_RGB) if n in COLOUR_RGB] or list(COLOUR_RGB)
    refs = _srgb_to_lab(np.array([COLOUR_RGB[n] for n in names]))
    lab = _srgb_to_lab(np.array([rgb]))[0]
    return names[int(np.argmin(((refs - lab) ** 2).sum(axis=1)))]


# ---- one image, end to end --------------------------------------------------------------------
@dataclass
class Processed:
    """What one image became."""

    data: bytes
    width: int
    height: int
    format: str
    sha256: str
    features: dict[str, Any] = field(default_factory=dict)


def process_bytes(
    data: bytes,
    ops: Operations,
    *,
    features: bool = False,
    vocabulary: Sequence[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Processed:
    """Decode, transform, encode (and optionally compute features of) one image.

    Raises:
        ImageError: with the stage (read, decode, process, encode) and a reason.
    """
    img = decode(data, ops, max_pixels)
    feats: dict[str, Any] = {}
    try:
        if features:
            feats["phash"] = perceptual_hash(img)
            rgb = dominant_rgb(img)
            feats["dominant_rgb"] = "#{:02x}{:02x}{:02x}".format(*rgb)
            feats["predicted_colour"] = nearest_colour(rgb, vocabulary)
        out = apply_steps(img, ops)
    except (OSError, ValueError) as exc:
        raise ImageError("process", str(exc) or type(exc).__name__) from None
    try:
        encoded = encode(out, ops)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageError("encode", str(exc) or type(exc).__name__) from None
    return Processed(
        encoded, out.width, out.height, ops.format, hashlib.sha256(encoded).hexdigest(), feats
    )
