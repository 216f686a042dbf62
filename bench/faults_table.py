"""The closing table of the fault-injection suite: cases tried and handled, per kind.

Runs ``pytest tests/faults`` (every case, the slow ones too) and counts its test cases by kind;
a case is "handled" when its test passed, i.e. the user saw exactly the outcome the test
names (message naming the item and the problem, exit code, no traceback, good items still
used, files intact, resumed weights identical).

    .venv/bin/python bench/faults_table.py            # a Markdown table
    .venv/bin/python bench/faults_table.py -k npz     # a part of the suite (pytest's -k)
    .venv/bin/python bench/faults_table.py --from junit.xml   # from a run already made
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# test function -> kind (the rows of the table)
KINDS = {
    "test_a_bad_image_is_skipped_by_name_and_the_rest_is_used": "images (PNG, JPEG, GIF, BMP, TIFF, WebP, bombs)",
    "test_damaged_exif_and_a_bomb_warning_are_not_printed_and_the_image_is_used": "images (PNG, JPEG, GIF, BMP, TIFF, WebP, bombs)",
    "test_broken_link_is_named": "images (PNG, JPEG, GIF, BMP, TIFF, WebP, bombs)",
    "test_class_folder_with_a_line_break_is_left_out_by_name": "folders and class names",
    "test_one_stray_dcm_does_not_make_a_folder_dicom": "DICOM",
    "test_validate_data_on_decompression_bombs_stays_under_1_gb": "images (PNG, JPEG, GIF, BMP, TIFF, WebP, bombs)",
    "test_bad_items_are_skipped_by_index_and_the_rest_is_used": "NPZ",
    "test_an_unusable_npz_is_refused_in_plain_words": "NPZ",
    "test_csv_bad_row_is_skipped_by_line": "CSV (image tables)",
    "test_csv_split_column_with_an_unknown_split_and_an_unseen_label": "CSV (image tables)",
    "test_unreadable_csv_is_refused_in_plain_words": "CSV (image tables)",
    "test_csv_options_that_are_wrong_are_named": "CSV (image tables)",
    "test_jsonl_bad_line_is_skipped_by_line": "text (JSON lines, CSV, sentence files)",
    "test_unreadable_text_file_is_refused_naming_it": "text (JSON lines, CSV, sentence files)",
    "test_sentence_file_line_without_a_label_is_skipped": "text (JSON lines, CSV, sentence files)",
    "test_coco_bad_box_or_image_is_skipped": "COCO / VOC / box and caption files",
    "test_voc_broken_xml_bad_box_and_missing_image_are_skipped": "COCO / VOC / box and caption files",
    "test_box_csv_bad_number_and_unbalanced_quote": "COCO / VOC / box and caption files",
    "test_caption_files_with_empty_captions_and_missing_images": "COCO / VOC / box and caption files",
    "test_coco_that_is_not_json_is_refused": "COCO / VOC / box and caption files",
    "test_bad_project_file_names_the_file_and_the_field": "project files",
    "test_missing_project_and_a_folder_without_one": "project files",
    "test_bad_set_is_blamed_on_the_set_not_the_file": "--set values and flags",
    "test_quick_flags_with_a_bad_value_are_blamed_on_the_command_line": "--set values and flags",
    "test_switching_technique_drops_the_other_techniques_settings_and_says_so": "--set values and flags",
    "test_runs_dir_that_is_a_file_or_under_one": "run folders and checkpoints",
    "test_resume_of_something_that_is_not_a_run": "run folders and checkpoints",
    "test_validate_data_of_nothing": "project files",
    "test_import_weights_refuses_in_plain_words": "weight files",
    "test_debug_shows_the_traceback_and_only_then": "--set values and flags",
    "test_each_broken_plugin_is_listed_as_failed_with_what_is_wrong": "plugins (real distributions)",
    "test_the_builtins_keep_their_names_and_the_listing_is_plain": "plugins (real distributions)",
    "test_a_slow_plugin_is_named_with_its_load_time": "plugins (real distributions)",
    "test_training_data_and_doctor_work_with_all_of_them_installed": "plugins (real distributions)",
    "test_observer_and_reader_failures_are_recorded_in_process": "plugins (real distributions)",
    "test_an_unusable_technique_is_refused_naming_plugin_and_method": "plugins (real distributions)",
    "test_safe_mode_switches_them_off_and_keeps_the_builtins": "plugins (real distributions)",
    "test_the_window_says_why_train_is_disabled": "plugins (real distributions)",
    "test_damaged_last_checkpoint_falls_back_to_the_previous_one": "run folders and checkpoints",
    "test_both_checkpoints_damaged_says_what_to_do": "run folders and checkpoints",
    "test_damaged_run_files_are_named": "run folders and checkpoints",
    "test_garbled_status_and_metrics_still_list_and_resume": "run folders and checkpoints",
    "test_resume_of_a_finished_run_trains_nothing_unless_asked": "run folders and checkpoints",
    "test_predict_and_export_with_a_damaged_best_checkpoint": "run folders and checkpoints",
    "test_predict_without_data_json_and_export_under_a_file": "run folders and checkpoints",
    "test_a_tampered_package_is_refused_naming_the_file": "model packages",
    "test_the_untouched_package_predicts": "model packages",
    "test_killed_at_any_point_resumes_to_identical_weights": "kills (SIGKILL) and resume",
}


def main() -> int:
    args = sys.argv[1:]
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    t = time.time()
    if args[:1] == ["--from"]:  # the JUnit XML of a run already made (make test PYTEST_ARGS=--junitxml=...)
        xml = Path(args[1])
    else:
        xml = Path(tempfile.mkdtemp(prefix="tl-faults-")) / "faults.xml"
        subprocess.run([sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={xml}", *args], cwd=REPO, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    tried: dict[str, int] = defaultdict(int)
    handled: dict[str, int] = defaultdict(int)
    for case in ET.parse(xml).getroot().iter("testcase"):
        if "faults" not in (case.get("classname") or ""):
            continue
        kind = KINDS.get(case.get("name", "").split("[")[0], "other")
        if case.find("skipped") is not None:
            continue
        tried[kind] += 1
        handled[kind] += case.find("failure") is None and case.find("error") is None
    print(f"\n| kind | cases tried | handled |\n|---|---:|---:|")
    for kind in sorted(tried, key=lambda k: list(dict.fromkeys(KINDS.values())).index(k) if k in KINDS.values() else 99):
        print(f"| {kind} | {tried[kind]} | {handled[kind]} |")
    print(f"| **all** | **{sum(tried.values())}** | **{sum(handled.values())}** |")
    print(f"\n{time.time() - t:.0f} s wall, load average at the start {' '.join(load)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
