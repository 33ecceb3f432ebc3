""" "Did you mean …?" for names a user types: zoo models, board presets, solvers, commands.

A typo should cost one glance at the error line, not a search through a list of forty
names; the list still follows when nothing is close.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice to `word`, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
