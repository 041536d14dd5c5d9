"""Durations in the user's units (client/durations.py, cli/format.py ``Seconds``)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from sealdrop.client.cli.format import Seconds, human_duration, parse_duration, parse_expiry
from sealdrop.client.durations import (
    DAY,
    HOUR,
    MAX_EXPIRY,
    MINUTE,
    expiry_refused,
    parse_seconds,
)
from sealdrop.client.errors import ClientError


@pytest.mark.parametrize(("seconds", "text"), [
    (86400 * 30, "30 days"),
    (86400, "1 day"),
    (86400 + 12 * 3600, "1 day 12 hours"),
    (90061, "1 day 1 hour 1 minute 1 second"),
    (3600, "1 hour"),
    (7200, "2 hours"),
    (60, "1 minute"),
    (90, "1 minute 30 seconds"),
    (59, "59 seconds"),
    (1, "1 second"),
    (0, "0 seconds"),
    (0.1, "0.1 seconds"),
    (0.5, "0.5 seconds"),
    (90.5, "90.5 seconds"),
    (7 * DAY, "7 days"),
    (365 * DAY, "365 days"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_human_duration_refuses_what_is_not_a_duration(bad: float) -> None:
    with pytest.raises(ValueError):
        human_duration(bad)


@given(st.integers(min_value=60, max_value=10 * 365 * DAY))
def test_human_duration_is_exact(seconds: int) -> None:
    """What we print reads back to the very same number: a bound said in words is the bound."""
    units = {"day": DAY, "days": DAY, "hour": HOUR, "hours": HOUR, "minute": MINUTE,
             "minutes": MINUTE, "second": 1, "seconds": 1}
    words = human_duration(seconds).split()
    assert sum(int(n) * units[u] for n, u in zip(words[::2], words[1::2], strict=True)) \
        == seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("7d", 7 * DAY), ("12h", 12 * HOUR), ("30m", 30 * MINUTE), ("2w", 14 * DAY),
    ("45", 45), ("45s", 45), ("0.2", 0.2), ("1.5m", 90), (" 3 days ", 3 * DAY),
    ("1 hour", HOUR), ("10min", 600), ("7D", 7 * DAY),
])
def test_parse_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7x", "-5m", "1e9", "7 d 3 h", "forever", "1,5h"])
def test_parse_seconds_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ClientError, match=r"cannot read the duration .*write e\.g\. 30s, 5m"):
        parse_seconds(text)


def test_expires_bounds_are_said_in_days() -> None:
    assert parse_expiry("30d") == 30 * DAY and parse_expiry("1m") == 60
    with pytest.raises(ClientError) as e:
        parse_expiry("30s")
    assert str(e.value) == ("--expires must be between 1 minute and 365 days "
                            "(you gave 30 seconds)")
    with pytest.raises(ClientError, match=r"between 1 minute and 365 days \(you gave 400 days\)"):
        parse_expiry("400d")
    with pytest.raises(ClientError, match="whole number of seconds"):
        parse_expiry("90.5")
    assert parse_expiry(f"{MAX_EXPIRY}") == MAX_EXPIRY


def test_parse_duration_names_the_option() -> None:
    with pytest.raises(ClientError, match=r"^--idle must be between 1 second and 1 day "
                                          r"\(you gave 2 days\)$"):
        parse_duration("2d", name="--idle", high=DAY)


def test_the_relays_expiry_refusal_in_days_and_hours() -> None:
    message, hint = expiry_refused((60, 2592000), 60 * DAY)
    assert message == "the relay keeps transfers at most 30 days; --expires asked for 60 days"
    assert hint.startswith("give --expires 30d or less")
    message, hint = expiry_refused((60, 129600), 2 * DAY)
    assert message == "the relay keeps transfers at most 1 day 12 hours; --expires asked for " \
        "2 days" and hint.startswith("give --expires 36h or less")
    # A relay whose lower bound is higher than ours.
    message, _ = expiry_refused((3600, 2592000), 120)
    assert message == ("--expires must be between 1 hour and 30 days on this relay "
                       "(you gave 2 minutes)")
    # A relay that does not state its bounds: still a sentence.
    message, hint = expiry_refused(None, 40 * DAY)
    assert message == "the relay does not keep transfers for 40 days"
    assert "--expires" in hint


def _cmd() -> click.Command:
    @click.command()
    @click.option("--interval", type=Seconds(0.1, DAY), default="30s")
    def cmd(interval: float) -> None:
        click.echo(repr(interval))

    return cmd


@pytest.mark.parametrize(("arg", "value"), [("30", 30.0), ("0.2", 0.2), ("5m", 300.0),
                                             ("1h", 3600.0), ("1d", 86400.0)])
def test_seconds_option_takes_numbers_and_units(arg: str, value: float) -> None:
    r = CliRunner().invoke(_cmd(), ["--interval", arg])
    assert r.exit_code == 0 and r.output.strip() == repr(value)


def test_seconds_option_default_and_errors_in_words() -> None:
    assert CliRunner().invoke(_cmd(), []).output.strip() == "30.0"
    r = CliRunner().invoke(_cmd(), ["--interval", "0"])
    assert r.exit_code == 2
    assert ("Invalid value for '--interval': must be between 0.1 seconds and 1 day "
            "(you gave 0 seconds)") in r.output
    r = CliRunner().invoke(_cmd(), ["--interval", "2d"])
    assert "must be between 0.1 seconds and 1 day (you gave 2 days)" in r.output
    r = CliRunner().invoke(_cmd(), ["--interval", "soon"])
    assert r.exit_code == 2 and "cannot read the duration 'soon'" in r.output


def test_watch_help_says_seconds() -> None:
    from sealdrop.client.cli.receive import watch_cmd

    text = CliRunner().invoke(watch_cmd, ["--help"]).output
    assert "--interval SECONDS" in text and "--max-backoff SECONDS" in text
    assert "0.1 seconds to 1 day" in text
    r = CliRunner().invoke(watch_cmd, ["--into", ".", "--interval", "0.01"])
    assert r.exit_code == 2 and "must be between 0.1 seconds and 1 day" in r.output
