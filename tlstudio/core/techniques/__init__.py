"""Techniques (training recipes), the callbacks they share, and the building blocks both use
(layer groups and learning rates, regularisers, gradient reversal, Fisher information)."""
from __future__ import annotations

from .base import (Callback, HeadSettings, LayerSettings, Recipe, RegularisationSettings, Technique,
                   TechniqueConfig)

__all__ = ["Callback", "HeadSettings", "LayerSettings", "Recipe", "RegularisationSettings", "Technique",
           "TechniqueConfig"]
