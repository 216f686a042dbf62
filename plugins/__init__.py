"""Built-in technique plugins of Transfer Learning Studio (importable as tlstudio_plugins)."""
