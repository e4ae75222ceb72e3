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
    help="Seconds before an unacknowledged test (its host died) is handed to another host. "
         "Default: --max-test-timeout + 240 (room for image fetch and compose up/down). Give "
         "every worker and the reporter of one broker the same value.")
