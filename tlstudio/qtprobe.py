"""Does Qt start here?  Run in a child process by ``tlstudio doctor`` (Qt aborts the whole
process when its platform plugin cannot load, so the check must not run in the doctor's own
process; and tlstudio.core never imports Qt).

Prints JSON lines: first what it found before starting Qt (the plugin folder, the libraries
the xcb plugin lacks), then {"started": platform} once a QGuiApplication is up.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tlstudio.qtcheck import missing_libraries


def _say(**kv) -> None:
    print(json.dumps(kv), flush=True)


def main() -> int:
    import PySide6
    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    platforms = plugins / "platforms"
    have = sorted(p.name for p in platforms.glob("*qxcb*")) + sorted(p.name for p in platforms.glob("*offscreen*"))
    xcb = next(iter(sorted(platforms.glob("libqxcb.so*"))), None)
    _say(pyside=PySide6.__version__, plugins=str(plugins), platform_plugins=sorted(p.name for p in platforms.iterdir())
         if platforms.is_dir() else [], found=have, xcb_missing=missing_libraries(xcb, plugins.parent / "lib") if xcb else [])
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication(sys.argv[:1])
    _say(started=app.platformName(), requested=os.environ.get("QT_QPA_PLATFORM", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
