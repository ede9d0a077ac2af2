"""Times as lockmirror reads them: aware UTC, from files and from the command line."""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import PolicyError


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_when(text: str) -> datetime:
    """An ISO date or date-time from the command line (``--now``), as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PolicyError(f"'{text}' is not an ISO date or date-time",
                          hint="e.g. 2024-10-10 or 2024-10-10T12:00:00Z") from None
    return as_utc(moment)
