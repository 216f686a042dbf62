"""Decoding real images (MNIST digits, scikit-image photos) and real DICOM files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from test_data_helpers import as16, mnist, write_dicom

from tlstudio.core.data import check_trainable, decode_dicom, decode_image, read_data
from tlstudio.core.data.image import ImageDecodeError, read_image
from tlstudio.core.errors import DataError


@pytest.fixture
def digits():
    return mnist()


def save(arr, path, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


# --- Pillow formats ------------------------------------------------------------------------------
def test_photos_and_digits_decode_to_rgb_uint8(tmp_path, digits):
    chelsea = skdata.chelsea()
    out = decode_image(save(chelsea, tmp_path / "chelsea.png"))
    assert out.dtype == np.uint8 and np.array_equal(out, chelsea)
    coffee = decode_image(save(skdata.coffee(), tmp_path / "coffee.jpg", quality=95))
    assert coffee.shape == (400, 600, 3) and np.abs(coffee.astype(int) - skdata.coffee()).mean() < 3
    camera = decode_image(save(skdata.camera(), tmp_path / "camera.bmp"))
    assert camera.shape == (512, 512, 3) and np.array_equal(camera[..., 1], skdata.camera())
    digit = decode_image(save(digits[0][0], tmp_path / "d.png").read_bytes())  # bytes work too
    assert digit.shape == (28, 28, 3) and np.array_equal(digit[..., 2], digits[0][0])


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    rgb = skdata.chelsea()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out, mode = read_image(path)
    assert mode == "CMYK" and out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 4


def test_16_bit_png_is_scaled_by_its_own_range(tmp_path, digits):
    digit = digits[0][0].astype(np.uint16) * 100 + 5000  # 5000 .. 30500
    path = tmp_path / "d16.png"
    Image.fromarray(digit).save(path)
    out, mode = read_image(path)
    assert mode.startswith("I;16") and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert np.abs(out[..., 0].astype(int) - digits[0][0]).max() <= 1


def test_transparency_exif_and_palette(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 15:, 3] = 255  # left half fully transparent
    out = decode_image(save(rgba, tmp_path / "a.png"))
    assert (out[:, :15] == 0).all() and (out[:, 15:, 0] == 200).all()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    path = tmp_path / "rot.jpg"
    Image.fromarray(skdata.chelsea()).save(path, exif=exif)
    assert decode_image(path).shape == (451, 300, 3)
    pal = Image.fromarray(skdata.chelsea()).convert("P")
    pal.save(tmp_path / "p.gif")
    assert decode_image(tmp_path / "p.gif").shape == (300, 451, 3)


@pytest.mark.parametrize("name, content, reason", [
    ("zero.png", b"", "empty file (0 bytes)"),
    ("notes.png", b"patient 12, left breast\nfollow-up in 6 months\n", "not an image file (it looks like text)"),
    ("noise.jpg", bytes(range(256)) * 4, "cannot decode image: not a recognised image format"),
])
def test_bad_files_say_what_and_where(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        decode_image(path)
    assert e.value.reason == reason and str(e.value) == f"{path}: {reason}"


def test_truncated_jpeg_and_missing_file(tmp_path):
    full = save(skdata.coffee(), tmp_path / "full.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageDecodeError, match="cut.jpg: truncated or damaged image file"):
        decode_image(cut)
    with pytest.raises(ImageDecodeError, match="nope.png: file not found"):
        decode_image(tmp_path / "nope.png")


# --- DICOM ---------------------------------------------------------------------------------------
def test_dicom_full_range_and_inverted(tmp_path, digits):
    d = digits[0][0]
    out = decode_dicom(write_dicom(tmp_path / "m2.dcm", as16(d)))
    assert out.shape == (28, 28, 3) and out.dtype == np.uint8
    assert np.abs(out[..., 0].astype(int) - d).max() <= 1  # min..max restores the digit
    inv = decode_dicom(write_dicom(tmp_path / "m1", as16(d), "MONOCHROME1"))  # no extension: found by magic
    assert np.array_equal(inv, 255 - out)


def test_dicom_window_from_file_and_from_options(tmp_path, digits):
    d = digits[0][0]
    path = write_dicom(tmp_path / "w.dcm", as16(d), window=[[2040, 9999], [2080, 1]])  # first of several
    out = decode_dicom(path)[..., 0]
    hu = as16(d).astype(float)
    assert (out[hu <= 1000] == 0).all() and (out[hu >= 3080] == 255).all()
    expected = np.clip(np.rint((hu - 1000) * 255 / 2080), 0, 255)
    assert np.abs(out - expected).max() <= 1
    narrow = decode_dicom(path, window_center=1500, window_width=200)[..., 0]  # options win
    assert (narrow[hu >= 1600] == 255).all() and (narrow[hu <= 1400] == 0).all()


def test_dicom_rescale_applies_before_the_window(tmp_path, digits):
    d = digits[0][0]
    path = write_dicom(tmp_path / "ct.dcm", as16(d), rescale=(1, -1024), window=[0, 100])  # HU = raw - 1024
    out = decode_dicom(path)[..., 0]
    hu = as16(d).astype(float) - 1024
    assert (out[hu <= -50] == 0).all() and (out[hu >= 50] == 255).all()


def test_dicom_multiframe_takes_the_middle_frame(tmp_path, digits):
    X = digits[0]
    out = decode_dicom(write_dicom(tmp_path / "mf.dcm", np.stack([as16(X[i]) for i in range(3)])))
    assert np.abs(out[..., 0].astype(int) - X[1]).max() <= 1


def test_dicom_folder_reader_windows_and_skips_compressed(tmp_path, digits):
    X, y = digits
    for c in (0, 1):
        (tmp_path / "ds" / str(c)).mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:4]:
            write_dicom(tmp_path / "ds" / str(c) / f"IM{i}", as16(X[i]), "MONOCHROME1" if i % 2 else "MONOCHROME2")
    bad = write_dicom(tmp_path / "ds" / "1" / "j2k.dcm", as16(X[0]), compressed=True)
    table = read_data(tmp_path / "ds", options={"window_center": 3040, "window_width": 4080})
    assert table.reader_id == "dicom" and table.report.counts == {"0": 4, "1": 4}
    [skip] = table.report.skipped
    assert skip.ref == str(bad) and "JPEG 2000" in skip.reason and "no decoder" in skip.reason
    assert set(table.report.sizes["modes"]) == {"DICOM MONOCHROME1 16-bit", "DICOM MONOCHROME2 16-bit"}
    for k, item in enumerate(table.items):
        i = int(item.ref.rsplit("IM", 1)[1])
        img = table.load_image(k)[..., 0].astype(int)
        want = np.clip(np.rint((as16(X[i]).astype(float) - 1000) * 255 / 4080), 0, 255)
        assert np.abs(img - (255 - want if i % 2 else want)).max() <= 1, item.ref
    check_trainable(table)
    with pytest.raises(DataError, match="window_center and window_width must both be numbers"):
        read_data(tmp_path / "ds", options={"window_center": 40})
