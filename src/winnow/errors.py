"""Errors a person can act on.

Every error names what was wrong and where (file, record, line, byte offset) so the CLI and the
API can show it without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class WinnowError(Exception):
    """Base class for every error winnow reports to a user."""


class NotFoundError(WinnowError):
    """A workspace, project, image or other object does not exist."""


class ConflictError(WinnowError):
    """The object already exists, or a concurrent change won."""


class InvalidInputError(WinnowError):
    """A parameter or a record does not satisfy the contract."""


class FormatError(WinnowError):
    """A dataset file cannot be read as the format it claims to be.

    ``where`` is a human locator inside the file: ``line 12``, ``byte 3401``,
    ``annotations[17]``.
    """

    def __init__(self, file: str | Path, message: str, where: str | None = None):
        self.file = str(file)
        self.where = where
        self.message = message
        loc = f"{self.file}" + (f" ({where})" if where else "")
        super().__init__(f"{loc}: {message}")


class UnsafeInputError(WinnowError):
    """Input refused for safety: zip slip, bombs, XML entities, unsupported image formats."""


class UnsupportedMediaError(InvalidInputError):
    """The bytes are not a kind of file the endpoint takes (an HTML page sent as an image)."""


class TooLargeError(InvalidInputError):
    """A request body, upload or archive is over its size limit."""


class PermissionDeniedError(WinnowError):
    """The caller's role does not allow this action."""


class RateLimitedError(WinnowError):
    """Too many requests of one kind from one key; ``retry_after`` seconds until the next is taken."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after
