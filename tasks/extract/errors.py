"""Why a file could not be read: one exception type per kind of failure, each naming the file and a fix."""

from __future__ import annotations


class ExtractError(Exception):
    """A whole file could not be read; the message names the file and what to do about it."""


class EmptyFileError(ExtractError):
    """The file has no content (0 bytes, or only a header)."""


class BinaryFileError(ExtractError):
    """The file holds binary data where text (CSV, chat, subtitles, JSON) was expected."""


class UnsupportedFileError(ExtractError):
    """The file's type is not one afinar reads."""


class EncodingError(ExtractError):
    """The file's bytes do not decode as text in any encoding afinar tried."""


class CorruptFileError(ExtractError):
    """The file is truncated or damaged and its structure cannot be parsed."""


class EncryptedPdfError(ExtractError):
    """The PDF is password-protected."""


class UnsafeArchiveError(ExtractError):
    """A zip archive would write outside its folder, or exceeds the size or file-count limits."""


class ColumnMappingError(ExtractError):
    """A table lacks the column the `data.extract.crm` mapping names for the message text."""
