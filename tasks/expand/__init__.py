"""Synthetic expansion: teacher-written variations of train rows, judged, novelty-checked, within a budget."""

from tasks.expand.stage import ExpandInputError, expand_examples

__all__ = ["ExpandInputError", "expand_examples"]
