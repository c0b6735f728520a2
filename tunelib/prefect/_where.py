"""Where an experiment's Prefect records are, and how to look at them: the one line
``fit()`` prints at the end, and the names it is made of (the UI address of an API, the
database an embedded server stores into).

A server the user runs (``PREFECT_API_URL``) serves its UI: the line is a link. tunelib's
embedded server has no UI and stops after the experiment, so the line names the database
and the command that serves it. Nothing here talks to a server, and Prefect is imported
only to read a ``PREFECT_UI_URL`` set in a Prefect profile, when Prefect is loaded already.

Example::

    print(where_to_look(api_url, flow_run_id, embedded=True, prefect_home=prefect_home()))
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Optional

__all__ = ["database_description", "prefect_home", "ui_url", "where_to_look"]

PREFECT_CLOUD_API = "https://api.prefect.cloud/api"
PREFECT_CLOUD_UI = "https://app.prefect.cloud"
# where `prefect server start` serves its UI by default
DEFAULT_UI = "http://127.0.0.1:4200"
DATABASE_URL_KEYS = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")


def prefect_home() -> str:
    """``PREFECT_HOME``, or Prefect's default ``~/.prefect``, as an absolute path."""
    return os.path.abspath(os.path.expanduser(os.environ.get("PREFECT_HOME") or "~/.prefect"))


def database_description(home: Optional[str] = None) -> str:
    """The database a Prefect server started here stores into: ``<home>/prefect.db``
    unless a connection URL is configured (not printed: it may hold a password).

    >>> database_description("/data/prefect")
    '/data/prefect/prefect.db'
    """
    for key in DATABASE_URL_KEYS:
        if os.environ.get(key):
            return f"the database {key} names"
    return os.path.join(home or prefect_home(), "prefect.db")


def ui_url(api_url: str) -> str:
    """The UI address of the Prefect API at ``api_url``, as Prefect derives it
    (``PREFECT_UI_URL``, in the environment or a loaded Prefect profile, wins).

    >>> ui_url("http://127.0.0.1:4200/api")
    'http://127.0.0.1:4200'
    >>> ui_url("https://api.prefect.cloud/api/accounts/a1/workspaces/w2")
    'https://app.prefect.cloud/account/a1/workspace/w2'
    """
    explicit = os.environ.get("PREFECT_UI_URL") or _profile_ui_url()
    if explicit:
        return explicit.rstrip("/")
    url = api_url.rstrip("/").replace(PREFECT_CLOUD_API, PREFECT_CLOUD_UI)
    if url.endswith("/api"):
        url = url[: -len("/api")]
    return (url.replace("/api/", "/").replace("/accounts/", "/account/")
            .replace("/workspaces/", "/workspace/"))


def _profile_ui_url() -> Optional[str]:
    """``PREFECT_UI_URL`` set in the active Prefect profile, when Prefect's settings are
    loaded already (reading them costs a second otherwise)."""
    if "prefect.settings" not in sys.modules:
        return None
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return settings.ui_url if "ui_url" in settings.model_fields_set else None


def where_to_look(api_url: str, flow_run_id: str, embedded: bool, prefect_home: str) -> str:
    """The line that tells where the experiment's flow run ``flow_run_id`` is recorded.

    ``embedded``: recorded by tunelib's embedded server (no UI, gone after the experiment)
    into the database under ``prefect_home``; otherwise by the server at ``api_url``,
    which serves its UI.

    >>> where_to_look("http://127.0.0.1:4200/api", "0f1e", False, "/p")
    'Recorded in Prefect: http://127.0.0.1:4200/runs/flow-run/0f1e'
    >>> where_to_look("http://127.0.0.1:50123/api", "0f1e",
    ...               True, "/p")  # doctest: +NORMALIZE_WHITESPACE
    'Recorded in Prefect (flow run 0f1e, database /p/prefect.db); to look: `PREFECT_HOME=/p
    prefect server start` then open http://127.0.0.1:4200/runs/flow-run/0f1e'

    (one line; ``PREFECT_HOME=...`` is in the command only when PREFECT_HOME is set in the
    environment, as it is here: the command must open the same database).
    """
    if not embedded:
        return f"Recorded in Prefect: {ui_url(api_url)}/runs/flow-run/{flow_run_id}"
    return (f"Recorded in Prefect (flow run {flow_run_id}, database "
            f"{database_description(prefect_home)}); to look: `{_server_command(prefect_home)}`"
            f" then open {DEFAULT_UI}/runs/flow-run/{flow_run_id}")


def _server_command(prefect_home: str) -> str:
    """``prefect server start``, on ``prefect_home``'s database when PREFECT_HOME is set."""
    if os.environ.get("PREFECT_HOME"):
        return f"PREFECT_HOME={shlex.quote(prefect_home)} prefect server start"
    return "prefect server start"


def where_to_look_later(name: str, api_url: Optional[str], prefect_home: str) -> str:
    """The line for an experiment whose flow run is not created yet when fit() returns (the
    background recorder was still waiting for its server): the run's name and where it
    will be.

    >>> where_to_look_later("exp", "http://10.0.0.5:4200/api", "/p")
    "Recording in Prefect in the background as flow run 'exp': http://10.0.0.5:4200/runs"
    """
    if api_url:
        return f"Recording in Prefect in the background as flow run {name!r}: {ui_url(api_url)}/runs"
    return (f"Recording in Prefect in the background as flow run {name!r} (database "
            f"{database_description(prefect_home)}); to look: `{_server_command(prefect_home)}`"
            f" then open {DEFAULT_UI}/runs")
