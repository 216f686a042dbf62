"""Turning image files (Pillow formats and DICOM) into H x W x 3 uint8 RGB arrays.

Every failure raises :class:`ImageDecodeError`: its message names the file, its ``reason``
says in plain words what is wrong ("truncated or damaged image file", ...).
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.multival import MultiValue

from ..errors import DataError
from .budget import GATE, decode_budget, too_large

# The size in the header is checked against the memory budget before any pixel is decoded
# (see budget.py); Pillow's own limit stays as a backstop at the budget in one-byte pixels.
Image.MAX_IMAGE_PIXELS = decode_budget()
# Pillow's and pydicom's notes on odd metadata (a damaged EXIF block, a tag past the end of
# the file) concern one file whose pixels still decode: they are not printed at the user.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\..*)?$")
warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?$")
#: decoded images larger than this a side are reduced while decoding (training uses <= 1024 px)
MAX_SIDE = 4096
# bytes per pixel Pillow holds in memory, by mode (the others: 4)
_PIL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_CONVERT_BYTES = 12  # the conversion to an RGB array, per pixel of the (reduced) image

IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .tif .tiff .gif .webp .ppm .pgm .pbm .pnm .jp2 .j2k .jpf .jpx .tga".split()
)
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom", ".dic"})
#: the only formats Pillow may open: raster images (not PostScript, which runs Ghostscript, nor exotic plugins)
PIL_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "TIFF", "GIF", "WEBP", "PPM", "JPEG2000", "TGA")


class ImageDecodeError(DataError):
    """An image that cannot be used: ``str()`` names the file, ``reason`` says why."""

    def __init__(self, ref: str, reason: str):
        super().__init__(f"{ref}: {reason}")
        self.ref, self.reason = ref, reason


# --- sniffing --------------------------------------------------------------------------------
def is_dicom(path: str | Path) -> bool:
    """DICOM by extension or by the 'DICM' magic at byte 128 (reads 132 bytes)."""
    if Path(path).suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


_IMAGE_MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"))


def image_kind(head: bytes) -> str | None:
    """The image format whose signature ``head`` starts with (PNG, JPEG ...), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), None)


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # maybe cut inside a character, or latin-1 text
        text = head.decode("latin-1")
    return sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text)


def _scale_to_uint8(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Linear map of [lo, hi] (default: the array's own min..max) onto 0..255; constant -> 0."""
    a = a.astype(np.float32 if a.dtype.itemsize <= 2 or a.dtype == np.float32 else np.float64)  # a working copy
    np.nan_to_num(a, copy=False)
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    a -= lo  # in place: a 4k x 4k scan needs one working copy, not five
    a *= 255.0 / (hi - lo)
    np.rint(a, out=a)
    np.clip(a, 0, 255, out=a)
    return a.astype(np.uint8)


def _gray_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2)


# --- Pillow formats --------------------------------------------------------------------------
def _pil_normalise(im: Image.Image) -> Image.Image:
    """A new 8-bit 'L' (grey) or 'RGB' image with the pixels the studio uses (see decode_image)."""
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;16"):  # 16/32-bit grey: own min..max
        return Image.fromarray(_scale_to_uint8(np.asarray(im)))
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "La", "RGBa"):  # composite on black
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return im.convert("L") if im.mode in ("1", "L") else im.convert("RGB")


def pil_to_array(im: Image.Image) -> np.ndarray:
    """An 'L' or 'RGB' image as H x W x 3 uint8."""
    a = np.asarray(im)
    return _gray_to_rgb(a) if a.ndim == 2 else a


def _head(src, is_path: bool, n: int = 2048) -> bytes:
    if not is_path:
        return bytes(src[:n])
    try:
        with open(src, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def decode_cost(width: int, height: int, mode: str) -> int:
    """Bytes of memory that decoding an image of this size and Pillow mode takes at its peak."""
    px = int(width) * int(height)
    return px * _PIL_BYTES.get(mode, 4) + min(px, MAX_SIDE * MAX_SIDE) * _CONVERT_BYTES


def _decode_opened(im: Image.Image, ref: str) -> tuple[Image.Image, str]:
    """Check the header's size against the budget, then decode (large images reduced to
    MAX_SIDE while decoding), holding the decode's bytes in the shared gate."""
    if im.format == "JPEG" and max(im.size) > MAX_SIDE:
        im.draft(im.mode, (MAX_SIDE, MAX_SIDE))  # DCT scaling: decoded at a fraction of its size
    w, h = im.size
    need, budget = decode_cost(w, h, im.mode), decode_budget()
    if need > budget:
        raise ImageDecodeError(ref, too_large(f"{w:,} x {h:,} pixels ({w * h / 1e6:,.0f} megapixels, {im.mode})",
                                              need, budget, "Reduce the image before using it here."))
    with GATE.hold(need, budget):
        im.load()
        mode = im.mode
        if max(im.size) > MAX_SIDE:
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        try:
            ImageOps.exif_transpose(im, in_place=True)
        except Exception:  # a damaged EXIF block must not cost the image
            pass
        return _pil_normalise(im), mode


def read_image(src: str | Path | bytes, ref: str | None = None) -> tuple[np.ndarray, str]:
    """Decode with Pillow: (H x W x 3 uint8 RGB array, the file's own pixel mode).  An image
    whose header claims more pixels than the memory budget allows is refused before decoding."""
    im, mode = read_pil(src, ref)
    return pil_to_array(im), mode


def read_pil(src: str | Path | bytes, ref: str | None = None) -> tuple[Image.Image, str]:
    """Decode with Pillow: (an 'L' or 'RGB' image, the file's own pixel mode); the image cache
    resizes it without a round trip through an array (see tlstudio.core.data.store)."""
    is_path = not isinstance(src, (bytes, bytearray, memoryview))
    ref = ref or (os.fspath(src) if is_path else "<image bytes>")
    try:
        if is_path and os.path.isdir(src):
            raise ImageDecodeError(ref, "is a folder, not an image file")
        if (os.path.getsize(src) if is_path else len(src)) == 0:
            raise ImageDecodeError(ref, "empty file (0 bytes)")
        with Image.open(src if is_path else io.BytesIO(src), formats=PIL_FORMATS) as im:
            return _decode_opened(im, ref)
    except FileNotFoundError:
        raise ImageDecodeError(ref, "file not found") from None
    except PermissionError:
        raise ImageDecodeError(ref, "cannot read file: permission denied") from None
    except UnidentifiedImageError:
        kind = image_kind(_head(src, is_path))
        if kind:
            raise ImageDecodeError(ref, f"truncated or damaged image file ({kind})") from None
        if _looks_like_text(_head(src, is_path)):
            raise ImageDecodeError(ref, "not an image file (it looks like text)") from None
        raise ImageDecodeError(ref, "cannot decode image: not a recognised image format") from None
    except Image.DecompressionBombError as e:  # Pillow's own check, at open: far beyond the budget
        m = re.search(r"\((\d+) pixels\)", str(e))
        px = int(m.group(1)) if m else 2 * decode_budget()
        raise ImageDecodeError(ref, too_large(f"an image of {px / 1e6:,.0f} megapixels", decode_cost(px, 1, "L"),
                                              decode_budget(), "Reduce the image before using it here.")) from None
    except MemoryError:
        raise ImageDecodeError(ref, "not enough memory to decode this image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if "truncated" in str(e).lower() or isinstance(e, EOFError):
            raise ImageDecodeError(ref, "truncated or damaged image file") from None
        raise ImageDecodeError(ref, f"cannot decode image: {e}") from None


def decode_image(path_or_bytes: str | Path | bytes, ref: str | None = None) -> np.ndarray:
    """An image file (or its bytes) as an H x W x 3 uint8 RGB array.

    EXIF rotation applied; grey, palette, CMYK, YCbCr, LAB converted to RGB; transparency
    composited on black; 16/32-bit images scaled by their own min..max.  Raises
    :class:`ImageDecodeError` (a :class:`DataError`) naming the file.
    """
    return read_image(path_or_bytes, ref)[0]


def resize_image(arr: np.ndarray, size: int) -> np.ndarray:
    """An H x W x 3 uint8 image as ``size`` x ``size``, antialiased (Pillow bilinear; a reducing
    gap keeps big scans fast).  Training (the image cache) and prediction both use it."""
    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    return np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))


# --- DICOM -----------------------------------------------------------------------------------
def _first(value) -> float | None:
    """A DICOM number, or the first of several (WindowCenter can hold many)."""
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _dicom_frame(path: Path, ds, index: int | None) -> np.ndarray:
    """One frame's pixels (all of a single-frame file), read from the file without loading
    every frame of a multi-frame one into memory."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(os.fspath(path), index=index)
    except Exception:  # noqa: BLE001 - a file pydicom reads only with force=True (no preamble)
        return pixel_array(ds, index=index)


def read_dicom(path: str | Path, window_center: float | None = None, window_width: float | None = None,
               ref: str | None = None) -> tuple[np.ndarray, str]:
    """Decode a DICOM file: (H x W x 3 uint8 array, a description like 'DICOM MONOCHROME2 16-bit')."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    ref = ref or os.fspath(path)
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError(ref, "empty file (0 bytes)")
        head = _head(path, True)
        magic = head[128:132] == b"DICM"
        if not magic:
            kind = image_kind(head)
            if kind:
                raise ImageDecodeError(ref, f"named {path.suffix or 'as DICOM'}, but it is a {kind} image, not DICOM "
                                            f"(rename it to .{kind.lower()} to use it)")
            if _looks_like_text(head):
                raise ImageDecodeError(ref, "not a DICOM file (it looks like text)")
        # large elements (the pixel data) stay on disk until needed: one frame is read below
        ds = pydicom.dcmread(path, force=path.suffix.lower() in DICOM_EXTENSIONS, defer_size=2**20)
    except FileNotFoundError:
        raise ImageDecodeError(ref, "file not found") from None
    except ImageDecodeError:
        raise
    except InvalidDicomError:
        raise ImageDecodeError(ref, "not a DICOM file") from None
    except Exception as e:  # pydicom raises many kinds on damaged files
        raise ImageDecodeError(ref, f"damaged DICOM file: {e}") from None
    if not magic and not any(k in ds for k in ("PixelData", "SOPClassUID", "Modality", "Rows")):
        raise ImageDecodeError(ref, "not a DICOM file (no DICOM header or elements)")
    if "PixelData" not in ds:
        raise ImageDecodeError(ref, "DICOM file without an image (no pixel data)")
    need, budget = _dicom_cost(ds), decode_budget()
    if need > budget:
        raise ImageDecodeError(ref, too_large(f"{ds.get('Columns', '?')} x {ds.get('Rows', '?')} pixels x "
                                              f"{ds.get('NumberOfFrames', 1) or 1} frame(s)", need, budget,
                                              "Reduce or split the image before using it here."))
    with GATE.hold(need, budget):
        return _dicom_to_rgb(path, ds, ref, window_center, window_width)


def _dicom_to_rgb(path: Path, ds, ref: str, window_center: float | None, window_width: float | None) -> tuple[np.ndarray, str]:
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        arr = _dicom_frame(path, ds, frames_n // 2 if frames_n > 1 else None)  # multi-frame: the middle frame
    except MemoryError:
        raise ImageDecodeError(ref, "not enough memory to decode this DICOM image") from None
    except Exception as e:
        if syntax is not None and syntax.is_compressed:
            raise ImageDecodeError(
                ref, f"compressed DICOM ({syntax.name}) cannot be decoded here: no decoder for it is installed "
                "(pylibjpeg or GDCM add one)") from None
        raise ImageDecodeError(ref, f"cannot decode DICOM pixels: {e}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1))
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    desc = f"DICOM {photometric} {bits}-bit"
    try:
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(arr, ds)
            return (rgb if rgb.dtype == np.uint8 else _scale_to_uint8(rgb, 0, float(np.iinfo(rgb.dtype).max))), desc
        if samples == 3 or arr.ndim == 3:  # RGB (pydicom converts YBR to RGB)
            return (arr if arr.dtype == np.uint8 else _scale_to_uint8(arr, 0, float(2 ** bits - 1))), desc
        values = apply_modality_lut(arr, ds).astype(np.float32, copy=False)  # exact for 16-bit values
        center, width = window_center, window_width
        if center is None or width is None:
            center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            gray = _scale_to_uint8(values, center - width / 2, center + width / 2)
        else:
            gray = _scale_to_uint8(values)
    except ImageDecodeError:
        raise
    except Exception as e:
        raise ImageDecodeError(ref, f"cannot convert DICOM pixels ({desc}): {e}") from None
    if photometric == "MONOCHROME1":  # low values are bright
        gray = 255 - gray
    return _gray_to_rgb(gray), desc


def _dicom_cost(ds) -> int:
    """Bytes that decoding a DICOM image takes (all frames, then one frame as floats for the LUT)."""
    def num(key: str, default: int) -> int:
        try:
            return max(1, int(ds.get(key, default) or default))
        except (TypeError, ValueError):
            return default

    frame = num("Rows", 1) * num("Columns", 1) * num("SamplesPerPixel", 1)
    return frame * num("NumberOfFrames", 1) * max(1, num("BitsAllocated", 8) // 8) + frame * 20


def decode_dicom(path: str | Path, window_center: float | None = None, window_width: float | None = None) -> np.ndarray:
    """A DICOM image as H x W x 3 uint8: modality LUT (rescale), then the given window, else
    the file's own window (first if several), else min..max; MONOCHROME1 inverted;
    multi-frame -> middle frame.  Raises :class:`ImageDecodeError` naming the file."""
    return read_dicom(path, window_center, window_width)[0]


def read_file(path: str | Path, dicom: bool | None = None, window: tuple | list | None = None,
              ref: str | None = None) -> tuple[np.ndarray, str]:
    """Any supported file: DICOM (``dicom`` True, or sniffed when None) or a Pillow format."""
    if dicom is None:
        dicom = is_dicom(path)
    if dicom:
        center, width = window or (None, None)
        return read_dicom(path, center, width, ref=ref)
    return read_image(path, ref=ref)


def decode_inputs(paths) -> tuple[list[dict], list[tuple[int, np.ndarray]]]:
    """Decode images (or DICOM files) for prediction: ``results`` holds {"ref"} per path, with
    {"error"} for one that cannot be decoded (reported, the rest go on), and ``good`` the
    (index into results, image) of the others."""
    results: list[dict] = []
    good: list[tuple[int, np.ndarray]] = []
    for p in paths:
        try:
            good.append((len(results), decode_dicom(p) if is_dicom(p) else decode_image(p)))
            results.append({"ref": str(p)})
        except Exception as e:  # noqa: BLE001 - a bad image is reported, the rest go on
            results.append({"ref": str(p), "error": str(e)})
    return results, good

