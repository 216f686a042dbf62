"""``python -m tlstudio.gui [project.toml] [--safe-mode]``"""
import sys

from .app import main

sys.exit(main())
