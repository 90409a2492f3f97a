"""watcher: watches Sequentum and automation runs and tells you when they end."""

__version__ = "0.1.0"
