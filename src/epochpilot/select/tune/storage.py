"""Opening a study database for ``epochpilot.select.tune.run``: connect timeouts, heartbeats, clear one-line errors."""

from __future__ import annotations

import importlib.util
import inspect
import random
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

__all__ = ["open_storage", "retry_once", "safe_url"]


def safe_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that cannot be parsed is shown as given
        return url


def _postgres_driver(url: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; fall back to psycopg2 when only it is installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def open_storage(storage: Any, heartbeat_s: int | None = 10) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for ``storage`` (a URL), with connect timeouts and crash recovery.

    Trials send a heartbeat every ``heartbeat_s`` seconds; a trial silent for 3 heartbeats (its worker
    died) is marked FAIL and retried once with the same parameters. An unreachable database, a bad URL or a
    missing driver raise a one-line ValueError within ~5 s.
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    url = str(storage)
    connect: dict[str, Any] = {}
    if url.startswith("sqlite"):
        connect = {"timeout": 60}  # wait for the other workers' write locks instead of failing
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).parent.is_dir():
            raise ValueError(
                f"storage {url}: folder {Path(path).parent} does not exist: create it or use another path"
            )
    elif url.startswith(("postgresql", "mysql")):
        connect = {"connect_timeout": 5}
    shown = safe_url(url)
    attempt = 0
    while True:
        attempt += 1
        try:
            return _rdb(_postgres_driver(url), connect, heartbeat_s)
        except ImportError as exc:
            raise ValueError(
                f"storage {shown}: its database driver is missing ({exc}); for PostgreSQL: "
                "pip install psycopg2-binary (or 'psycopg[binary]')"
            ) from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy/optuna raise many types for a bad database
            text = str(exc)
            racing = type(exc).__name__ == "IntegrityError" or any(
                mark in text for mark in ("already exists", "duplicate key", "database is locked")
            )
            if attempt < 5 and racing:
                # another worker is creating the same tables on a fresh database right now
                time.sleep(0.5 + random.random())
                continue
            first = " ".join(text.split("\n")[0].split())[:300]
            raise ValueError(
                f"storage {shown} cannot be opened ({type(exc).__name__}: {first}): check the URL, "
                "that the server is running and reachable, and the credentials"
            ) from None


def retry_once() -> Any:
    """Optuna's callback that queues a failed trial again once with the same parameters (its name since
    Optuna 4.9, ``RetryFailedTrialCallback`` before)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    retry = retry or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():  # "experimental" in Optuna (since 2.8)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return retry(max_retry=1)


def _rdb(url: str, connect: dict[str, Any], heartbeat_s: int | None) -> optuna.storages.RDBStorage:
    name = "heartbeat_stale_trial_callback"  # "failed_trial_callback" before Optuna 4.9
    if name not in inspect.signature(optuna.storages.RDBStorage).parameters:
        name = "failed_trial_callback"
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna (since 2.x)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": connect} if connect else None,
            heartbeat_interval=heartbeat_s,
            grace_period=3 * heartbeat_s if heartbeat_s else None,
            **{name: retry_once() if heartbeat_s else None},
        )
