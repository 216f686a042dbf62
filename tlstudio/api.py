"""The public API of Transfer Learning Studio: everything a plugin may use.

A plugin (a technique, a task, a data reader, a model source, an exporter or a run observer)
imports from here and nowhere else in ``tlstudio``; the built-in plugins in ``plugins/`` do
the same.  Names load on first use, so importing this module is quick and imports no torch.

    from tlstudio.api import Technique, HeadSettings, L2SP, Mixup, hookimpl

docs/plugins.md walks through a technique and a task.
"""
from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    # the plugin contract
    "tlstudio.core.hookspecs": ["hookimpl", "hookspec"],
    "tlstudio.core.techniques.base": ["Technique", "TechniqueConfig", "Callback", "Recipe", "HeadSettings",
                                      "LayerSettings", "RegularisationSettings", "PLAIN_TECHNIQUE"],
    "tlstudio.core.tasks.base": ["Task"],
    "tlstudio.core.tasks.traits": ["TaskTraits", "ABILITIES", "BUILTIN_TASKS"],
    "tlstudio.core.events": ["Event", "RunStarted", "Progress", "BatchEnded", "EpochEnded", "StageChanged", "Log",
                             "RunDone", "RunWasStopped", "RunFailed", "RunResult", "LrStep", "LrFound", "UnknownEvent",
                             "event_from_dict"],
    # callbacks recipes share, and their building blocks
    "tlstudio.core.techniques.callbacks": ["L2SP", "Mixup", "WeightAveraging", "StageSchedule", "Stage",
                                           "even_stages", "layers_per_stage", "parse_numbers"],
    "tlstudio.core.techniques.adaptation": ["DomainAdversarial", "DomainDiscriminator", "GradientReversal",
                                            "domain_adversarial_loss", "grl_lambda"],
    "tlstudio.core.techniques.target": ["TargetDomain", "prepare_target", "target_metrics"],
    "tlstudio.core.techniques.continual": ["ElasticWeightConsolidation", "EWCPenalty", "diagonal_fisher"],
    "tlstudio.core.techniques.features": ["FeatureCache", "cached_features"],
    "tlstudio.core.techniques.blocks": ["set_trainable", "freeze_all_but_top", "discriminative_param_groups",
                                        "trainable_groups", "keep_in_eval", "keep_frozen_bn_in_eval", "count_params"],
    "tlstudio.core.techniques.regularizers": ["without_weight_decay"],
    # the built-in tasks (to extend) and what their techniques build with
    "tlstudio.core.tasks.classification": ["ImageClassificationTask", "ImageData", "ImageInferenceData", "stored_split",
                                     "evaluate_classifier",
                                     "write_classifier_evaluation", "classification_report_md"],
    "tlstudio.core.tasks.detection": ["DetectionTask", "auto_anchor_sizes", "coco_faster_rcnn", "imagenet_faster_rcnn",
                                "find_coco_detector", "how_to_add_coco", "freeze_backbone", "detection_param_groups"],
    "tlstudio.core.tasks.captioning": ["CaptioningTask", "build_caption_model"],
    "tlstudio.core.tasks.text": ["TextClassificationTask", "TextData", "build_text_classifier"],
    "tlstudio.core.analysis.metrics": ["classification_metrics", "scalar_metrics", "roc_curve"],
    # data readers
    "tlstudio.core.data": ["DatasetReader", "ImageTable", "Scan", "Item", "Skipped", "ValidationReport",
                           "read_data", "decode_image", "decode_inputs", "resize_image", "ImageDataset",
                           "build_image_cache", "make_transforms"],
    "tlstudio.core.data.table": ["iter_files", "natural_key", "is_hidden"],
    # models and where their weights are found
    "tlstudio.core.models": ["Architecture", "WeightSource", "ModelLibrary", "ClassifierModel", "LayerGroup"],
    # exports
    "tlstudio.core.delivery.exporter": ["Exporter", "ExportError", "flatten_outputs"],
    "tlstudio.core.delivery.export": ["export_run"],
    # projects, runs and training
    "tlstudio.core.config": ["Project", "load_project", "project_from_dict"],
    "tlstudio.core.engine": ["train", "resume", "RunControl", "RunContext", "InferenceContext", "TrainState",
                             "open_context", "open_run_model", "select_device", "seed_everything"],
    "tlstudio.core.runs": ["Run", "list_runs", "open_run"],
    "tlstudio.core.plugins": ["PluginManager", "get_plugin_manager"],
    "tlstudio.core.io": ["atomic_write_json", "atomic_write_text", "atomic_write_bytes"],
    "tlstudio.core.errors": ["StudioError", "ProjectError", "DataError", "ModelError", "PluginError", "RunStopped"],
}

_NAMES = {name: mod for mod, names in _MODULES.items() for name in names}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    mod = _NAMES.get(name)
    if mod is None:
        raise AttributeError(f"tlstudio.api has no name {name!r} (the public names are listed in tlstudio.api.__all__)")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
