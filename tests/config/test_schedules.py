"""
Tests for L{ztnagw.config.schedules.isActive}.
"""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.model import Config, OnetimeSchedule, RecurringSchedule
from ztnagw.config.schedules import isActive

# 2025-06-02 is a Monday.
MONDAY = datetime.date(2025, 6, 2)


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    """
    A naive local time on C{day}.
    """
    return datetime.datetime.combine(day, datetime.time(hour, minute))


def recurring(start: tuple[int, int], end: tuple[int, int], *days: str) -> RecurringSchedule:
    """
    A recurring schedule from C{start} to C{end} (hour, minute) on C{days}.
    """
    return RecurringSchedule(
        name="r", start=datetime.time(*start), end=datetime.time(*end), day=tuple(days)
    )


class RecurringTests(SynchronousTestCase):
    """
    Recurring schedules: days, a window, all day, past midnight.
    """

    def test_always(self) -> None:
        """
        The built-in C{always} is in force at any moment.
        """
        always = Config().recurringSchedules["always"]
        for hours in range(0, 24 * 7, 5):
            self.assertTrue(isActive(always, at(MONDAY, 0) + datetime.timedelta(hours=hours)))

    def test_window(self) -> None:
        """
        From start (included) to end (excluded), on the listed days.
        """
        work = recurring((8, 0), (17, 30), "monday")
        self.assertFalse(isActive(work, at(MONDAY, 7, 59)))
        self.assertTrue(isActive(work, at(MONDAY, 8, 0)))
        self.assertTrue(isActive(work, at(MONDAY, 17, 29)))
        self.assertFalse(isActive(work, at(MONDAY, 17, 30)))
        self.assertFalse(isActive(work, at(MONDAY + datetime.timedelta(days=1), 9)))

    def test_allDay(self) -> None:
        """
        start == end is the whole day.
        """
        sunday = recurring((0, 0), (0, 0), "sunday")
        self.assertTrue(isActive(sunday, at(MONDAY - datetime.timedelta(days=1), 23, 59)))
        self.assertFalse(isActive(sunday, at(MONDAY, 0, 0)))

    def test_pastMidnight(self) -> None:
        """
        end before start: the window runs into the next day, and belongs to
        the day it starts on.
        """
        night = recurring((22, 0), (6, 0), "monday")
        self.assertTrue(isActive(night, at(MONDAY, 23)))
        self.assertTrue(isActive(night, at(MONDAY + datetime.timedelta(days=1), 5, 59)))
        self.assertFalse(isActive(night, at(MONDAY + datetime.timedelta(days=1), 6, 0)))
        self.assertFalse(isActive(night, at(MONDAY, 5)))
        self.assertFalse(isActive(night, at(MONDAY, 12)))

    def test_noDays(self) -> None:
        """
        No day (FortiOS's default): never in force.
        """
        self.assertFalse(isActive(recurring((0, 0), (0, 0)), at(MONDAY, 12)))

    def test_awareTime(self) -> None:
        """
        An aware time is taken in local time.
        """
        moment = at(MONDAY, 12).astimezone()
        schedule = recurring((0, 0), (0, 0), "monday")
        self.assertEqual(isActive(schedule, moment), isActive(schedule, moment.replace(tzinfo=None)))
        self.assertEqual(
            isActive(schedule, moment.astimezone(datetime.timezone.utc)),
            isActive(schedule, moment.replace(tzinfo=None)),
        )

    @given(
        st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)),
        st.times(),
        st.times(),
    )
    def test_complementaryWindows(self, moment: datetime.datetime, start: datetime.time, end: datetime.time) -> None:
        """
        On every day, a window and the window from its end to its start
        cover each moment exactly once (unless one is all day).
        """
        start = start.replace(second=0, microsecond=0)
        end = end.replace(second=0, microsecond=0)
        every = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
        days = RecurringSchedule(name="a", start=start, end=end, day=every)
        rest = RecurringSchedule(name="b", start=end, end=start, day=every)
        if start == end:
            self.assertTrue(isActive(days, moment))
        else:
            self.assertNotEqual(isActive(days, moment), isActive(rest, moment))


class OnetimeTests(SynchronousTestCase):
    """
    One-time schedules: from start (included) to end (excluded).
    """

    def test_period(self) -> None:
        """
        In force from start to end.
        """
        once = OnetimeSchedule(name="o", start=at(MONDAY, 8), end=at(MONDAY, 9))
        self.assertFalse(isActive(once, at(MONDAY, 7, 59)))
        self.assertTrue(isActive(once, at(MONDAY, 8)))
        self.assertTrue(isActive(once, at(MONDAY, 8, 59)))
        self.assertFalse(isActive(once, at(MONDAY, 9)))
