"""Multi-label image classification — an example task plugin for Transfer Learning Studio.

Several findings per image (as on chest films: effusion and cardiomegaly and a pacemaker at
once): a CSV lists each image with its labels, a sigmoid head learns one yes/no per label
with binary cross-entropy, and the results are per label — AUC, and sensitivity and
specificity at a threshold of each label's own, chosen on the validation split.

Everything here uses the studio's public API (:mod:`tlstudio.api`) only: the task, its
technique and its data reader are plugins like the built-in ones.
"""
from __future__ import annotations

from tlstudio.api import hookimpl


@hookimpl
def tlstudio_tasks():
    from .task import MultiLabelTask

    return [MultiLabelTask()]


@hookimpl
def tlstudio_techniques():
    from .technique import MultiLabelFineTuning

    return [MultiLabelFineTuning()]


@hookimpl
def tlstudio_dataset_readers():
    from .reader import MultiLabelCsvReader

    return [MultiLabelCsvReader()]
