"""The studio core: everything but the window.  Never imports Qt.

==================  ==============================================================================
room                what lives there
==================  ==============================================================================
``config``          the project (``project.toml``): the contract between the window and the CLI
``events``          typed, versioned run events and the run result
``plugins``         discovery and isolation of plugins (``hookspecs``: the hooks)
``runs``            the run store (one folder per run)
``engine/``         the training loop, its context, checkpoints, torchrun
``tasks/``          the Task contract (the built-in tasks' code: classification, detection,
                    captioning, text)
``techniques/``     the Technique contract, the callbacks recipes share, their building blocks
``data/``           readers, validation, splits, the image cache, augmentation
``models/``         the offline model library
``analysis/``       what results and data mean (metrics, calibration, shift, comparisons ...)
==================  ==============================================================================

Plugins import from :mod:`tlstudio.api`, the public surface, not from here.
"""
