"""Malformed image files among good ones: each is skipped with a reason that names it and says
what is wrong, the good images are still used, and nothing reaches the user as a traceback.

Every case: a folder of two classes x 5 real digits, one bad file dropped into class 0,
``tlstudio validate-data --json``."""
from __future__ import annotations

import io

import numpy as np
import pytest
from faultlib import (assert_plain, bomb_png, cli, cli_process, digits_folder, jpeg_bytes, png_bytes, png_header, report,
                      skipped_reason)
from PIL import Image
from test_data_helpers import as16, mnist, write_dicom


def _half(b: bytes) -> bytes:
    return b[: len(b) // 2]


def _exif_damaged_jpeg() -> bytes:
    """A JPEG whose EXIF block claims a tag past its end (Pillow warns "Corrupt EXIF data")."""
    good = jpeg_bytes(np.full((16, 16, 3), 90, np.uint8))
    bad_exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x0f\x01\x02\x00\xff\x00\x00\x00\x30\x00\x00\x00"
    seg = b"\xff\xe1" + (len(bad_exif) + 2).to_bytes(2, "big") + bad_exif
    return good[:2] + seg + good[2:]


def _gif_truncated() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buf, "GIF")
    return buf.getvalue()[:40]


def _bmp_claiming(width: int, height: int) -> bytes:
    """A BMP header claiming a huge size, with no pixels after it."""
    header = b"BM" + (54).to_bytes(4, "little") + b"\0\0\0\0" + (54).to_bytes(4, "little")
    info = (40).to_bytes(4, "little") + width.to_bytes(4, "little") + height.to_bytes(4, "little") \
        + (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + bytes(24)
    return header + info


def _tiff_claiming(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, "TIFF")
    b = bytearray(buf.getvalue())
    im = Image.open(io.BytesIO(bytes(b)))
    # rewrite the width/height tags (256, 257) in the first IFD
    ifd = int.from_bytes(b[4:8], "little")
    n = int.from_bytes(b[ifd:ifd + 2], "little")
    for k in range(n):
        e = ifd + 2 + 12 * k
        tag = int.from_bytes(b[e:e + 2], "little")
        typ = int.from_bytes(b[e + 2:e + 4], "little")
        if tag in (256, 257):
            size = 2 if typ == 3 else 4
            val = min(width if tag == 256 else height, 0xFFFF if size == 2 else 0xFFFFFFFF)
            b[e + 8:e + 8 + size] = val.to_bytes(size, "little")
    im.close()
    return bytes(b)


def _dicom_bytes(tmp, **kw) -> bytes:
    X, _ = mnist()
    return write_dicom(tmp / "src.dcm", as16(X[0]), **kw).read_bytes()


def _dicom_without_pixels(tmp) -> bytes:
    import pydicom

    p = write_dicom(tmp / "nopix.dcm", as16(mnist()[0][0]))
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    return p.read_bytes()


def _dicom_claiming(tmp, rows: int, cols: int, frames: int = 1) -> bytes:
    import pydicom

    p = write_dicom(tmp / "huge.dcm", as16(mnist()[0][0]))
    ds = pydicom.dcmread(p)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.save_as(p)
    return p.read_bytes()


# name, bytes (or a builder of the temp folder), words the reason must hold
CASES = [
    ("empty.png", b"", "empty file (0 bytes)"),
    ("notes.png", b"patient 12, left breast\nfollow-up in 6 months\n", "looks like text"),
    ("page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", "looks like text"),
    ("noise.jpg", bytes(range(256)) * 8, "not a recognised image format"),
    ("half.png", lambda t: _half(png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))),
     "truncated or damaged"),
    ("half.jpg", lambda t: _half(jpeg_bytes(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8))),
     "truncated or damaged"),
    ("soi.jpg", b"\xff\xd8\xff", "truncated or damaged image file (JPEG)"),
    ("sig-only.png", b"\x89PNG\r\n\x1a\n", "truncated or damaged image file (PNG)"),
    ("no-idat.png", png_header(16, 16), "cannot decode image"),
    ("bad-idat.png", png_header(16, 16, b"not zlib at all"), "cannot decode image"),
    ("zero-width.png", png_header(0, 16, b"x\x9c\x03\x00\x00\x00\x00\x01"), "damaged image file (PNG)"),
    ("claims-100k.png", png_header(100_000, 100_000, b"x\x9c\x03\x00\x00\x00\x00\x01"), "too large to decode safely"),
    ("claims-30k-rgb.png", png_header(30_000, 30_000, b"x\x9c\x03\x00\x00\x00\x00\x01", color_type=2),
     "too large to decode safely"),
    ("bomb-45k.png", lambda t: bomb_png(t / "b.png", 45_000, 45_000).read_bytes(), "too large to decode safely"),
    ("claims-huge.bmp", _bmp_claiming(60_000, 60_000), "too large to decode safely"),
    ("claims-huge.tif", _tiff_claiming(60_000, 60_000), "too large to decode safely"),
    ("cut.gif", _gif_truncated(), "truncated or damaged"),
    ("cut.webp", lambda t: _half(_webp()), "cannot decode image"),
    ("postscript.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "looks like text"),
    ("eps-binary.png", b"\xc5\xd0\xd3\xc6" + bytes(28) + b"%!PS", "not a recognised image format"),
    ("png-named.dcm", lambda t: png_bytes(), "named .dcm, but it is a PNG image"),
    ("jpeg-named.dcm", lambda t: jpeg_bytes(), "it is a JPEG image"),
    ("notes.dcm", b"Report: no acute findings.\nSigned: Dr X\n", "not a DICOM file"),
    ("noise.dcm", bytes(range(256)) * 2, "DICOM"),
    ("empty.dcm", b"", "empty file (0 bytes)"),
    ("nopixels.dcm", _dicom_without_pixels, "without an image (no pixel data)"),
    ("half.dcm", lambda t: _half(_dicom_bytes(t)), "DICOM"),
    ("j2k.dcm", lambda t: _dicom_bytes(t, compressed=True), "no decoder"),
    ("claims-huge.dcm", lambda t: _dicom_claiming(t, 40_000, 40_000, 4), "too large to decode safely"),
]


def _webp() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (32, 32, 3), np.uint8)).save(buf, "WEBP")
    return buf.getvalue()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return digits_folder(tmp_path_factory.mktemp("good") / "digits")


@pytest.mark.parametrize("name, content, reason", CASES, ids=[c[0] for c in CASES])
def test_a_bad_image_is_skipped_by_name_and_the_rest_is_used(tmp_path, good, name, content, reason):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(good, data)
    work = tmp_path / "work"
    work.mkdir()
    bad = data / "0" / name
    content = content(work) if callable(content) else content
    bad.write_bytes(content)
    o = cli("validate-data", data, "--json")
    assert_plain(o)
    rep = report(o)
    assert rep["counts"] == {"0": 5, "1": 5}, rep  # the valid images are all still used
    why = skipped_reason(rep, name)
    assert reason in why, why
    assert bad.read_bytes() == content  # nothing was changed


def test_damaged_exif_and_a_bomb_warning_are_not_printed_and_the_image_is_used(tmp_path, good):
    """In a process of its own: Pillow's warnings go to stderr there (pytest would catch them here)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(good, data)
    (data / "0" / "exif.jpg").write_bytes(_exif_damaged_jpeg())
    (data / "1" / "claims-30k.png").write_bytes(png_header(30_000, 30_000, b"x\x9c\x03\x00\x00\x00\x00\x01", 2))
    o = cli_process("validate-data", data, "--json")
    assert_plain(o)
    rep = report(o)
    assert rep["counts"] == {"0": 6, "1": 5}
    assert "too large to decode safely" in skipped_reason(rep, "claims-30k.png")
    assert "EXIF" not in o.err and "Warning" not in o.err, o.err


def test_class_folder_with_a_line_break_is_left_out_by_name(tmp_path, good):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(good, data)
    shutil.copytree(good / "1", data / "bad\nname")
    o = cli("validate-data", data, "--json")
    assert_plain(o)
    rep = report(o)
    assert rep["counts"] == {"0": 5, "1": 5}
    assert "line break" in skipped_reason(rep, "bad\nname")


def test_one_stray_dcm_does_not_make_a_folder_dicom(tmp_path, good):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(good, data)
    X, _ = mnist()
    write_dicom(data / "1" / "stray.dcm", as16(X[1]))
    o = cli("validate-data", data, "--json")
    assert_plain(o)
    rep = report(o)
    assert rep["reader"] == "folder" and rep["counts"] == {"0": 5, "1": 6}  # the DICOM file is read too


def test_broken_link_is_named(tmp_path, good):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(good, data)
    (data / "0" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    rep = report(cli("validate-data", data, "--json"))
    assert rep["counts"] == {"0": 5, "1": 5} and "file not found" in skipped_reason(rep, "gone.png")
