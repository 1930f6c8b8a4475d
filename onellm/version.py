"""The library version (one place; the package, model cards and remote code read it)."""

__version__ = "0.1.0"
