"""alcbench: a reproducible benchmark suite for active label cleaning."""

__version__ = "0.1.0"
