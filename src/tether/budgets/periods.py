"""Budget periods: calendar-aligned minutes, hours, days and months in a time zone (UTC by
default), so "per day" means the calendar day in ``tz``, and every replica agrees on which
period an instant belongs to (the period's start is part of the counter's key)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tether.config.budgets import Period
from tether.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Window:
    """One period: ``start`` and ``end`` as epoch seconds, ``label`` the start in ISO form
    (in the period's zone) as counters' keys name it."""

    start: float
    end: float
    label: str


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The time zone ``name`` (a ConfigError that says what to write when unknown)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"budget tz {name!r} is not a time zone; use an IANA name such as UTC or Europe/Paris"
        ) from exc


def window(at: float, per: Period, tz: str = "UTC") -> Window:
    """The period of kind ``per`` in ``tz`` that holds the instant ``at`` (epoch seconds).
    Boundaries are wall-clock times in ``tz`` (zoneinfo resolves their UTC offset, so a day
    across a DST change lasts 23 or 25 hours)."""
    here = datetime.fromtimestamp(at, zone(tz))
    if per == "minute":
        start = here.replace(second=0, microsecond=0)
        end = start + timedelta(minutes=1)
    elif per == "hour":
        start = here.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    elif per == "day":
        start = here.replace(hour=0, minute=0, second=0, microsecond=0)
        end = _next_day(start)
    else:
        start = here.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month)
    label = start.strftime("%Y-%m-%dT%H:%M") if per in ("minute", "hour") else start.date()
    return Window(start.timestamp(), end.timestamp(), str(label))


def _next_day(start: datetime) -> datetime:
    """Midnight of the next calendar day (23 or 25 hours away across a DST change)."""
    following = (start + timedelta(days=1)).date()
    return datetime(following.year, following.month, following.day, tzinfo=start.tzinfo)
