# -*- test-case-name: tests.config.test_schedules -*-
"""
Whether a schedule is in force at a given moment.

Every policy names a schedule; the access decision asks this module, as a
pure function of the schedule and the time, so that schedules are tested
without clocks.  Schedules are in the gateway's local time, as on a
FortiGate (whose schedules follow its system time zone).
"""

from __future__ import annotations

import datetime

from ztnagw.config.model import OnetimeSchedule, RecurringSchedule
from ztnagw.config.schema import DAYS

__all__ = ["isActive"]


def _local(when: datetime.datetime) -> datetime.datetime:
    # An aware time is converted to the local time schedules are written
    # in; a naive one is taken to be local already.
    if when.tzinfo is not None:
        return when.astimezone().replace(tzinfo=None)
    return when


def _dayName(date: datetime.date) -> str:
    # datetime counts Monday as 0; FortiOS lists Sunday first.
    return DAYS[(date.weekday() + 1) % 7]


def isActive(
    schedule: RecurringSchedule | OnetimeSchedule, when: datetime.datetime
) -> bool:
    """
    Whether C{schedule} is in force at C{when}.

    A recurring schedule is in force on its days from C{start} (included)
    to C{end} (excluded); C{start == end} means the whole day; C{end}
    before C{start} means the window runs past midnight into the next day
    (a Monday 22:00-06:00 window covers Tuesday 05:59 and not Monday
    05:59).  A one-time schedule is in force from C{start} (included) to
    C{end} (excluded).

    @param when: the moment; an aware datetime is converted to local
        time, a naive one is taken as local time.
    """
    when = _local(when)
    if isinstance(schedule, OnetimeSchedule):
        if schedule.start is None or schedule.end is None:
            return False
        return schedule.start <= when < schedule.end
    minute = when.time()
    days = schedule.day
    today = _dayName(when.date())
    if schedule.start == schedule.end:
        return today in days
    if schedule.start < schedule.end:
        return today in days and schedule.start <= minute < schedule.end
    # The window wraps past midnight: the evening part belongs to today's
    # window, the morning part to yesterday's.
    if minute >= schedule.start:
        return today in days
    if minute < schedule.end:
        yesterday = _dayName(when.date() - datetime.timedelta(days=1))
        return yesterday in days
    return False
