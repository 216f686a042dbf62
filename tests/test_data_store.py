"""Each file decoded once: validation fills the image cache in the same pass, a later read
decodes nothing, a grown folder decodes only its new files, and a killed build continues."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from test_data_helpers import digit_folder

from tlstudio.core.data import build_image_cache, decode_image, read_data, resize_image
from tlstudio.core.data.readers import FolderReader
from tlstudio.core.data.store import CacheRequest, DecodeStore


class CountingReader(FolderReader):
    """The folder reader, counting how often each file is decoded."""

    def __init__(self):
        self.decoded: Counter = Counter()

    def decode(self, item):
        self.decoded[item.ref] += 1
        return super().decode(item)


@pytest.fixture
def folder(tmp_path):
    root = digit_folder(tmp_path / "digits", classes=(0, 1, 2), per_class=12)
    (root / "1" / "empty.png").write_bytes(b"")
    Image.open(next((root / "0").iterdir())).save(root / "2" / "copy-of-a-zero.png")  # a duplicate, other label
    return root


def read(folder, reader, cache=None, **kw):
    return read_data(folder, "folder", readers=[reader], cache=cache, **kw)


def test_validation_fills_the_cache_in_the_same_decode_and_a_second_read_decodes_nothing(folder, tmp_path):
    r = CountingReader()
    table = read(folder, r, CacheRequest(tmp_path / "cache", 24))
    assert set(r.decoded.values()) == {1} and len(r.decoded) == 38  # every file once, the broken one too
    images, valid = build_image_cache(table, 24, tmp_path / "cache")
    assert valid.all() and images.shape == (37, 24, 24, 3) and sum(r.decoded.values()) == 38  # nothing again

    # the same report as plain validation: counts, skipped files and why, duplicates, sizes
    plain = read(folder, FolderReader())
    for field in ("counts", "skipped", "duplicates", "sizes", "warnings"):
        assert getattr(table.report, field) == getattr(plain.report, field), field
    assert any("empty file" in s.reason for s in table.report.skipped)
    assert len(table.report.duplicates) == 1
    reference, _ = build_image_cache(plain, 24, tmp_path / "other-cache")
    assert np.array_equal(images, reference)

    r2 = CountingReader()  # a later run (a new process would read the same files on disk)
    again = read(folder, r2, CacheRequest(tmp_path / "cache", 24))
    images2, valid2 = build_image_cache(again, 24, tmp_path / "cache")
    assert not r2.decoded and valid2.all() and np.array_equal(images2, images)
    assert again.report.duplicates == table.report.duplicates and again.report.skipped == table.report.skipped


def test_a_grown_folder_decodes_only_its_new_files_and_another_size_decodes_once_more(folder, tmp_path):
    cache = CacheRequest(tmp_path / "cache", 24)
    read(folder, CountingReader(), cache)
    new = folder / "1" / "new.png"
    Image.open(next((folder / "2").iterdir())).rotate(90).save(new)
    r = CountingReader()
    table = read(folder, r, cache)
    assert list(r.decoded) == [str(new)] and len(table) == 38
    images, valid = build_image_cache(table, 24, tmp_path / "cache")
    k = [it.ref for it in table.items].index(str(new))
    assert valid.all() and np.array_equal(images[k], resize_image(decode_image(new), 24))
    r3 = CountingReader()
    table = read(folder, r3, CacheRequest(tmp_path / "cache", 16))  # another image size: pixels only
    assert set(r3.decoded.values()) == {1} and len(r3.decoded) == 38
    assert build_image_cache(table, 16, tmp_path / "cache")[1].all()


def test_labels_from_a_csv_change_without_decoding_again(folder, tmp_path):
    files = sorted(p for p in folder.rglob("*.png") if p.stat().st_size)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    from tlstudio.core.data.readers import CsvReader

    class CountingCsv(CsvReader):
        decoded = 0

        def decode(self, item):
            CountingCsv.decoded += 1
            return super().decode(item)

    read_data(csv, "csv", readers=[CountingCsv()], cache=CacheRequest(tmp_path / "cache", 24))
    assert CountingCsv.decoded == len(files)
    csv.write_text("path,label\n" + "".join(f"{p},{'odd' if i % 2 else 'even'}\n" for i, p in enumerate(files)))
    table = read_data(csv, "csv", readers=[CountingCsv()], cache=CacheRequest(tmp_path / "cache", 24))
    assert CountingCsv.decoded == len(files) and table.class_names == ["even", "odd"]


def test_a_damaged_journal_tail_is_ignored(folder, tmp_path):
    cache = CacheRequest(tmp_path / "cache", 24)
    table = read(folder, CountingReader(), cache)
    with open(table.store.records_file, "ab") as f:
        f.write(b'[[999,"abc",[1,2')  # what a kill in the middle of a write leaves
    with open(table.store.rows_file(24), "ab") as f:
        f.write(b"\x01\x02")
    r = CountingReader()
    again = read(folder, r, cache)
    assert not r.decoded and build_image_cache(again, 24, tmp_path / "cache")[1].all()
    Image.open(next((folder / "0").iterdir())).rotate(45).save(folder / "0" / "later.png")
    r = CountingReader()
    read(folder, r, cache)  # appends after the damaged tail, which is cut first
    store = DecodeStore.open(tmp_path / "cache", r, folder)
    store.refresh(24)
    assert len(r.decoded) == 1 and len(store.records) == 39


def test_an_unwritable_cache_folder_still_validates(folder, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    table = read(folder, CountingReader(), CacheRequest(blocker, 24))
    assert len(table) == 37 and table.store is None
    assert any("cannot write the image cache" in w for w in table.report.warnings)


SLOW_BUILD = """
import sys, time
from tlstudio.core.data import read_data
from tlstudio.core.data.readers import FolderReader
from tlstudio.core.data.store import CacheRequest

class Slow(FolderReader):
    def decode(self, item):
        time.sleep(0.02)
        return super().decode(item)

def progress(done, total):
    print(done, total, flush=True)

read_data(sys.argv[1], "folder", readers=[Slow()], cache=CacheRequest(sys.argv[2], 24), progress=progress)
print("finished", flush=True)
"""


@pytest.mark.slow
def test_a_killed_cache_build_continues_instead_of_starting_over(tmp_path):
    root = digit_folder(tmp_path / "digits", classes=(0, 1, 2, 3), per_class=100)
    script = tmp_path / "build.py"
    script.write_text(SLOW_BUILD)
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    done = 0
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("finished"):
            break
        done = int(line.split()[0])
        if done >= 100:
            os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
            break
    proc.wait(timeout=60)
    assert 100 <= done < 400, "the build ended before it could be killed"
    r = CountingReader()
    table = read(root, r, CacheRequest(tmp_path / "cache", 24))
    assert len(table) == 400 and 0 < len(r.decoded) <= 400 - 100 + 16  # continued: the finished part is kept
    assert max(r.decoded.values()) == 1
    images, valid = build_image_cache(table, 24, tmp_path / "cache")
    reference, _ = build_image_cache(read(root, FolderReader()), 24, tmp_path / "reference")
    assert valid.all() and np.array_equal(images, reference)
