"""Command-line options both the worker and the controller's reporter take, defined once."""

from __future__ import annotations

import click


def _optional_seconds(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """'' (as compose passes an unset variable) means the default."""
    if value in (None, ""):
        return None
    try:
        seconds = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a whole number of seconds") from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1 second")
    return seconds


visibility_option = click.option(
    "--visibility-timeout", "visibility", default=None, callback=_optional_seconds,
    metavar="SECONDS",
    help="Seconds before the broker itself hands an unacknowledged test to another host: the "
         "safety net for when no reporter runs (the reporter's host watch moves a lost host's "
         "tests within seconds). Default: --max-test-timeout + 240 (room for image fetch and "
         "compose up/down); no need to tune it. Give every worker and the reporter of one "
         "broker the same value.")


def broker_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--broker takes a URL or the path of a file holding one (as `cluster up` writes it):
    a password in a file stays off the command line, where `ps` would show it to every user."""
    if not value or "://" in value:
        return value
    path = click.format_filename(value)
    try:
        url = open(path, encoding="utf-8").read().strip()  # noqa: SIM115 - one short read
    except OSError as exc:
        raise click.BadParameter(f"{value}: neither a broker URL (redis://...) nor a readable "
                                 f"file holding one ({exc.strerror})") from None
    if "://" not in url:
        raise click.BadParameter(f"{value}: the file holds no broker URL (redis://...)")
    return url


def redacted(url: str) -> str:
    """A broker URL with its password hidden, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
