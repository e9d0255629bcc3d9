"""The errors `augstudy publish` raises; each message says what is wrong and how to fix it."""

from __future__ import annotations


class PublishError(ValueError):
    """Bad input to `augstudy publish` (pool, provenance files, options)."""


class MetadataError(PublishError):
    """dataset-metadata.json would be refused by Kaggle; `problems` lists (field, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {field}: {reason}" for field, reason in problems)
        super().__init__(f"dataset-metadata.json is not valid for Kaggle:\n{lines}")


class KaggleCredentialsError(PublishError):
    """No Kaggle credentials were found in any of the usual places."""


class KaggleUploadError(PublishError):
    """Kaggle could not be reached or refused the dataset; nothing was published."""
