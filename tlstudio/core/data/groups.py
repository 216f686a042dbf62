"""Patients and other metadata of items: the group (patient) column of tables, and what DICOM
headers say about an image."""
from __future__ import annotations

from pathlib import Path

#: a column of patients (or other groups whose items must stay in one split), found by name
GROUP_COLUMNS = ("patient", "patientid", "subject", "subjectid", "group", "groupid")
GROUP_HELP = "column/field of patients (or other groups kept in one split; default: patient, patient_id, subject or group)"


def group_meta(group, fields: dict) -> dict:
    """The meta of a table row's item: its group (patient) and its other columns (for reports
    by subgroup)."""
    out = {}
    if group not in (None, ""):
        out["group"] = str(group).strip()
    fields = {str(k): "" if v is None else str(v) for k, v in fields.items()}
    if fields:
        out["fields"] = fields
    return out


#: DICOM header fields kept for grouped splits (PatientID) and reports by subgroup
DICOM_FIELDS = ("PatientID", "PatientSex", "PatientAge", "Manufacturer", "ManufacturerModelName", "InstitutionName",
                "BodyPartExamined", "Modality", "ViewPosition", "Laterality")


def dicom_fields(path: str | Path) -> dict[str, str]:
    """The header fields of ``DICOM_FIELDS`` a DICOM file carries (pixels are not read); {}
    for a file pydicom cannot read (the decode then says why)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, specific_tags=list(DICOM_FIELDS))
    except Exception:  # noqa: BLE001 - a damaged file is skipped, with its reason, by the decode
        return {}
    out = {}
    for name in DICOM_FIELDS:
        v = getattr(ds, name, None)
        if v not in (None, ""):
            out[name] = str(v).strip()
    return {k: v for k, v in out.items() if v}
