"""Decompression bombs cannot exhaust memory: `validate-data` on a folder holding a valid
20000 x 20000 PNG and a valid 45000 x 45000 PNG peaks under 1 GB (resident memory of its
process, measured by bench/decode_memory.py), decodes the first reduced and refuses the second
from its header, by name; two 20000 x 20000 PNGs are decoded one after the other, not at once."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from faultlib import BENCH


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KB is Linux's")
def test_validate_data_on_decompression_bombs_stays_under_1_gb():
    r = subprocess.run([sys.executable, str(BENCH / "decode_memory.py"), "--json"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["peak_rss_mb"] < 1024, m
    assert m["counts"] == {"0": 6, "1": 5}  # the 20000^2 image is used (reduced while decoded) ...
    [skipped] = m["skipped"]  # ... the 45000^2 one refused before decoding
    assert skipped["ref"].endswith("bomb-45000.png") and "too large to decode safely" in skipped["reason"]
    assert m["sizes"]["max_width"] == 4096
    assert m["pair_rss_mb"] < 1024 and m["pair_counts"] == {"0": 6, "1": 6}  # two at once would not fit: one by one
