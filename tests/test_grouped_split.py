"""Patient-level splits: a CSV with 3-5 images per patient and DICOM files of several
patients never put one patient in two splits; splits are stored relative to their data (a
moved project keeps its split) and are never replaced silently when the data changed."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE_PROJECT, mnist_arrays, quick_project


def patient_csv(root: Path, patients: int = 40, seed: int = 0) -> Path:
    """Real MNIST digits as PNG files, 3-5 per patient; a patient's images share its label
    (the digit 3 or 8) and a site column."""
    X, y = mnist_arrays()
    rng = np.random.default_rng(seed)
    pools = {c: list(np.flatnonzero(y == c)) for c in (3, 8)}
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        label = (3, 8)[p % 2]
        for k in range(int(rng.integers(3, 6))):
            i = pools[label].pop()
            name = f"p{p:02d}_{k}.png"
            Image.fromarray(X[i]).save(root / name)
            rows.append((name, str(label), f"P{p:03d}", ("north", "south")[p % 3 == 0]))
    path = root / "images.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "diagnosis", "patient_id", "site"])
        w.writerows(rows)
    return path


def by_patient(table, split) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for it, s in zip(table.items, split):
        out.setdefault(it.meta["group"], set()).add(s)
    return out


def test_a_csv_with_several_images_per_patient_keeps_each_patient_in_one_split(tmp_path):
    from tlstudio.core.data import make_split, read_data, split_counts
    from tlstudio.core.data.split import group_summary, save_split

    table = read_data(patient_csv(tmp_path / "data"))
    assert {it.meta["fields"]["site"] for it in table.items} == {"north", "south"}
    for seed in range(3):
        split = make_split(table, "stratified", 0.15, 0.15, seed)
        where = by_patient(table, split)
        assert len(where) == 40 and all(len(s) == 1 for s in where.values())  # no patient in two splits
        counts = split_counts(table, split)
        n = len(table)
        assert 0.07 * n <= sum(counts["test"].values()) <= 0.25 * n and all(counts[s]["3"] and counts[s]["8"]
                                                                             for s in ("train", "val", "test"))
    gs = group_summary(table, split)
    assert gs["groups"] == 40 and gs["per_group"]["min"] >= 3 and gs["per_group"]["max"] <= 5 and gs["leaking"] == []
    save_split(tmp_path / "split.json", table, split)
    stored = json.loads((tmp_path / "split.json").read_text())
    assert stored["groups"]["P000"] == split[0] and len(stored["groups"]) == 40
    assert all(not Path(r).is_absolute() for r in stored["refs"])  # relative to the data source


def write_patient_dicom(path: Path, pixels: np.ndarray, patient: str, sex: str) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientSex, ds.Manufacturer = "OT", patient, sex, "ACME"
    ds.set_pixel_data(np.asarray(pixels, np.uint16) * 200, "MONOCHROME2", 16, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_files_are_grouped_by_patient_id(tmp_path):
    from tlstudio.core.data import make_split, read_data

    X, y = mnist_arrays()
    k = 0
    for p in range(12):
        cls = ("normal", "abnormal")[p % 2]
        for s in range(3):  # three slices per patient
            write_patient_dicom(tmp_path / "dcm" / cls / f"img{k:03d}", X[k], f"PAT-{p:02d}", "FM"[p % 2])
            k += 1
    table = read_data(tmp_path / "dcm")
    assert table.reader_id == "dicom" and len(table) == 36
    assert {it.meta["group"] for it in table.items} == {f"PAT-{p:02d}" for p in range(12)}
    assert table.items[0].meta["fields"]["PatientSex"] in ("F", "M")
    split = make_split(table, "stratified", 0.2, 0.2, 0)
    assert all(len(s) == 1 for s in by_patient(table, split).values())
    assert {"train", "val", "test"} <= set(split)


def test_one_patient_id_for_all_files_splits_image_by_image(tmp_path):
    """Anonymised DICOM often carries one PatientID for every file: no grouping then."""
    from tlstudio.core.data import make_split, read_data
    from tlstudio.core.data.split import group_summary

    X, _ = mnist_arrays()
    for k in range(20):
        write_patient_dicom(tmp_path / "dcm" / ("a", "b")[k % 2] / f"i{k}.dcm", X[k], "ANON", "O")
    table = read_data(tmp_path / "dcm")
    split = make_split(table, "stratified", 0.2, 0.2, 0)
    assert {"train", "val", "test"} <= set(split)
    gs = group_summary(table, split)
    assert gs["groups"] == 1 and not gs["split_by_group"] and gs["leaking"] == []


def test_a_stored_split_follows_its_data_to_another_folder_and_is_never_replaced_silently(tmp_path, capsys):
    from tlstudio.cli import main
    from tlstudio.core.data import make_split, read_data
    from tlstudio.core.data.split import check_split, save_split

    src = patient_csv(tmp_path / "data")
    table = read_data(src)
    split = make_split(table, "stratified", 0.15, 0.15, 0)
    save_split(tmp_path / "data" / "split.json", table, split)
    moved = shutil.copytree(tmp_path / "data", tmp_path / "elsewhere" / "data")  # another computer
    chk = check_split(moved / "split.json", read_data(moved / "images.csv"))
    assert chk.matches and chk.assignments == split
    # the data changed: said, not silently replaced
    with open(moved / "images.csv", "a", newline="") as f:
        shutil.copy(moved / "p00_0.png", moved / "new.png")
        csv.writer(f).writerow(["new.png", "3", "P999", "north"])
    before = (moved / "split.json").read_text()
    chk = check_split(moved / "split.json", read_data(moved / "images.csv"))
    assert not chk.matches and chk.missing == ["new.png"] and "was made for other data" in chk.message()
    assert main(["validate-data", str(moved / "images.csv"), "--split", str(moved / "split.json"), "--no-leakage"]) == 0
    out = capsys.readouterr().out
    assert "was made for other data" in out and "Patients/groups: 41" in out
    assert (moved / "split.json").read_text() == before


def test_the_sample_projects_split_matches_its_data_anywhere():
    """`make run` no longer rewrites the tracked resources/sample/split.json."""
    from tlstudio.core.config import load_project
    from tlstudio.core.data import read_data
    from tlstudio.core.data.split import check_split

    p = load_project(SAMPLE_PROJECT)
    chk = check_split(p.resolve(p.data.split.file), read_data(p.resolve(p.data.source)))
    assert chk.matches and len(chk.assignments) == 600


@pytest.mark.slow
def test_training_on_changed_data_stops_with_a_choice_and_new_split_makes_one(tmp_path, capsys):
    from tlstudio.cli import main
    from tlstudio.core.config import load_project

    src = patient_csv(tmp_path / "data", patients=24)
    p = quick_project(src, "frozen-features", epochs=1)
    p.model.image_size = 32
    p.data.split.file = "split.json"
    p.decision.leak_check = False
    proj = tmp_path / "project.toml"
    p.save(proj)
    runs = tmp_path / "runs"
    assert main(["train", str(proj), "--runs-dir", str(runs), "--json"]) == 0
    stored = json.loads((tmp_path / "split.json").read_text())
    assert len(stored["groups"]) == 24
    capsys.readouterr()
    shutil.copy(tmp_path / "data" / "p00_0.png", tmp_path / "data" / "extra.png")
    with open(src, "a", newline="") as f:
        csv.writer(f).writerow(["extra.png", "3", "P777", "north"])
    assert main(["train", str(proj), "--runs-dir", str(runs), "--json"]) == 1
    err = capsys.readouterr().err
    assert "was made for other data" in err and "--new-split" in err
    assert json.loads((tmp_path / "split.json").read_text()) == stored  # untouched
    assert main(["train", str(proj), "--runs-dir", str(runs), "--new-split", "--json"]) == 0
    assert (tmp_path / "split.json.old-1").exists()
    assert "extra.png" in json.loads((tmp_path / "split.json").read_text())["refs"]
    assert load_project(proj).data.split.file == "split.json"
