"""One rule for the command line's errors, shared by every ``lateo`` command module."""

from __future__ import annotations

import functools

import click


def clean_errors(func):
    """Turn errors the user can fix (bad data, bad options: ``ValueError``, ``OSError``) into a
    one-line ``ClickException``, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper
