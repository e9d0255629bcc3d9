"""`augstudy publish`: package a synthetic pool as a Kaggle dataset with a datasheet."""

from augstudy.publish.cli import publish_command

__all__ = ["publish_command"]
