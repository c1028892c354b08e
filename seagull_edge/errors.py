"""Exceptions that separate the user's mistakes (exit code 2) from failures inside (exit code 1)."""

from __future__ import annotations


class SeagullInputError(ValueError):
    """Bad input or usage: the message is one line a user can act on. The CLI exits with 2."""


class ImageError(SeagullInputError):
    """An image file is missing, unreadable, corrupt or of an unsupported kind."""


class PromptError(SeagullInputError):
    """A box, point, mask or RLE does not describe a region of the image."""


class ModelFileError(SeagullInputError):
    """A model folder or file is missing, incomplete, tampered with or inconsistent."""
