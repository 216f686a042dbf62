"""The studio core: everything but the window.  Never imports Qt.

==================  ==============================================================================
room                what lives there
==================  ==============================================================================
``config``          the project (``project.toml``): the contract between the window and the CLI
                    (``overrides``: ``--set`` on the command line)
``events``          typed, versioned run events and the run result
``plugins``         discovery and isolation of plugins (``hookspecs``: the hooks; ``failures``:
                    what a failure says)
``runs``            the run store (one folder per run); ``settings``, ``io``, ``errors``
``engine/``         the training loop, its context, checkpoints, threads, torchrun (one node or several)
``tasks/``          the Task contract and the built-in tasks: classification, detection,
                    captioning, text
``techniques/``     the Technique contract, the callbacks recipes share, their building blocks
``data/``           readers, validation, splits, the decode store and image cache, augmentation
``models/``         the offline model library
``analysis/``       what results and data mean: metrics, calibration, decisions, leakage, shift,
                    comparisons, the recipe search, the doctor
``delivery/``       what leaves the studio: prediction, exporters and packages, model cards, reports
==================  ==============================================================================

Plugins import from :mod:`tlstudio.api`, the public surface, not from here.
"""
