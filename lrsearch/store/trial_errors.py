"""Why a search's trials failed: their distinct errors, each with how many trials it hit."""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from lrsearch.models import FAILED, Trial

# record_crash ends a failed trial's error with the attempt that failed; the same error on
# another attempt is the same error.
_ATTEMPT = re.compile(r"\s*\(attempt \d+ of \d+\)$")
MOST_SHOWN = 10


def error_summary(session: Session, search_id: int) -> tuple[list[tuple[str, int]], int]:
    """The first lines of the failed trials' errors, most frequent first (up to MOST_SHOWN),
    with the number of trials each; and how many distinct ones were left out."""
    errors = session.scalars(
        select(Trial.error).where(Trial.search_id == search_id, Trial.status == FAILED)
    )
    counts = Counter(first_line(e) for e in errors)
    ranked = counts.most_common()
    return ranked[:MOST_SHOWN], max(0, len(ranked) - MOST_SHOWN)


def first_line(error: str | None) -> str:
    """An error's first line, without its attempt count."""
    lines = (error or "").strip().splitlines()
    return (_ATTEMPT.sub("", lines[0]) if lines else "") or "no error recorded"
