"""Progress bars on stderr, shown only when stderr is a terminal (or with --progress), never with -q:
logs and `--json` runs stay free of bar updates.
"""
from __future__ import annotations

import sys


def progress_bar(iterable=None, *, desc: str, total: int | None = None, quiet: bool = False,
                 progress: bool = False, **options):
    """A tqdm bar over `iterable` (or a manual one with `total`), disabled unless it should show."""
    from tqdm import tqdm
    shown = not quiet and (progress or sys.stderr.isatty())
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, disable=not shown, delay=2, leave=False,
                **options)
