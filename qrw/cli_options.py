"""Options every catalog command shares, declared once: ``--url`` (with ``$QRW_OPENSEARCH_URL``) and ``--profile``.

Why one place: a user who runs OpenSearch elsewhere sets ``QRW_OPENSEARCH_URL`` once, and a user
with their own catalog passes the same ``--profile FILE`` to every command; both must mean the same
thing in ``qrw index``, ``eval``, ``calibrate``, ``proxy`` and ``sandbox``.
"""

from __future__ import annotations

from pathlib import Path

import click

from qrw.search.connect import URL_ENV


def url_option(func=None, *, help_text: str = "OpenSearch base URL"):
    """``--url`` whose default is ``$QRW_OPENSEARCH_URL`` (resolved later; None means 'not given')."""
    option = click.option("--url", envvar=URL_ENV, default=None, show_envvar=True,
                          help=f"{help_text} [default: ${URL_ENV}, else http://127.0.0.1:9200]")
    return option(func) if func is not None else option


PROFILE_HELP = "index profile YAML (fields, id, baseline query) [default: the shipped Icecat profile]"


PROFILE_DECLS = ("--profile", "profile_file")


def profile_param(help_text: str = PROFILE_HELP) -> click.Option:
    """The ``--profile FILE`` option as a parameter object (for commands assembled from parameters)."""
    return click.Option(list(PROFILE_DECLS), type=click.Path(path_type=Path), default=None, help=help_text)


def profile_option(func):
    """``--profile FILE``: the index profile (default: the shipped Icecat profile)."""
    return click.option(*PROFILE_DECLS, type=click.Path(path_type=Path), default=None, help=PROFILE_HELP)(func)
