"""Dataset formats: one module per format, registered by name (see :mod:`winnow.formats.base`)."""

from winnow.formats.base import Format, available, detect_format, get_format, register

__all__ = ["Format", "available", "detect_format", "get_format", "register"]
