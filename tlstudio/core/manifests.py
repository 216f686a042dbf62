"""What the installed plugins offer, read from their manifests without importing the plugins
(and torch with them): the entry points of the group ``tlstudio.manifests`` (docs/plugins.md).
The window lists techniques and describes tasks from here while the plugins load; `tlstudio
plugins` lists from here (:class:`tlstudio.core.plugins.PluginManager` with ``manifests``)."""
from __future__ import annotations

import functools
import importlib.metadata as md
import logging

from .hookspecs import MANIFEST_GROUP

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def manifest_items(hook: str) -> tuple[dict, ...]:
    """The items (dicts with an "id") that the installed manifests list for ``hook`` (e.g.
    "tlstudio_techniques"): the built-ins' first; an item whose id an earlier one took is left
    out (the plugin manager refuses it when the plugins load), and so is a manifest that
    cannot be read (its plugin says what it offers once loaded)."""
    out: dict[str, dict] = {}
    eps = sorted(md.entry_points(group=MANIFEST_GROUP), key=lambda ep: (ep.dist.name if ep.dist else "") != "tlstudio")
    for ep in eps:
        try:
            for item in dict(ep.load()).get(hook, []):
                out.setdefault(str(item["id"]), dict(item))
        except Exception as e:  # noqa: BLE001 - a broken manifest must not stop the others
            log.warning("the manifest %s could not be read: %s", ep.value, e)
    return tuple(out.values())
