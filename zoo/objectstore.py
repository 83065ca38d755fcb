"""Object stores through fsspec (gs://, s3://, az://, ...): opening one, and
what its client's errors mean to a user.

Every zoo path that talks to a store (staging, remote `zoo check`, mirrors in a
bucket, object-store sources) opens it here, so a missing backend always names
its pip extra and missing credentials always name the variable to set.
fsspec and the backends are imported only when a store is opened.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from zoo.errors import NetworkError, StoreAccessError, UsageError, ZooError

# pip extras (pyproject.toml) by fsspec protocol, and what grants access there.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
CREDENTIALS = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE",
    "gcs": "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file "
    "(or run `gcloud auth application-default login`)",
    "azure": "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
}
# Exception class names (in any base) meaning "no or bad credentials", across
# botocore, google-auth, gcsfs and azure-core; matched by name so none is imported.
_ACCESS_ERRORS = {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError", "RefreshError",
                  "ClientAuthenticationError", "PermissionError"}  # fmt: skip
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_BACKEND_LOGGERS = ("fsspec", "gcsfs", "s3fs", "adlfs")


def open_filesystem(url: str) -> tuple[Any, str]:
    """fsspec's file system and path for ``url``; a one-line UsageError naming
    the pip extra when its backend (gcsfs, s3fs, adlfs) is not installed."""
    protocol = urlsplit(url).scheme
    extra = EXTRAS.get(protocol)
    install = f"pip install 'tfod-zoo[{extra}]'" if extra else "install the fsspec backend for it"
    _quiet_backends()
    with store_errors(url, protocol):
        try:
            from fsspec.core import url_to_fs

            # A new client each time: credentials and endpoints come from the
            # environment, which may have changed since fsspec cached one.
            return url_to_fs(url, skip_instance_cache=True)
        except ImportError as exc:
            raise UsageError(f"{url}: {protocol}:// needs a package that is not installed "
                             f"({one_line(exc)}): {install}") from None  # fmt: skip
        except ValueError as exc:
            raise UsageError(f"{url}: {protocol}:// is not a store fsspec knows ({one_line(exc)})") from None


@contextmanager
def store_errors(url: str, protocol: str) -> Iterator[None]:
    """Turn what a store's client raises into one-line ZooErrors: no or bad
    credentials (StoreAccessError, with the variable to set), no such bucket
    (UsageError), the store unreachable or failing (NetworkError). In a
    directory (``protocol`` empty) only access errors are mapped here."""
    try:
        yield
    except ZooError:
        raise
    except Exception as exc:  # each client raises its own classes; none may end in a traceback
        mapped = store_error(exc, url, protocol)
        if mapped is None:
            raise
        raise mapped from None


def store_error(exc: Exception, url: str, protocol: str) -> ZooError | None:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _ACCESS_ERRORS or getattr(exc, "code", None) in (401, 403):
        hint = CREDENTIALS.get(EXTRAS.get(protocol, ""), "check the store's credentials" if protocol
                               else "check the directory's permissions")  # fmt: skip
        return StoreAccessError(f"{url}: access denied or no credentials ({one_line(exc)}): {hint}", url=url)
    if not protocol:
        return None
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{url}: no such bucket ({one_line(exc)})")
    return NetworkError(f"{url}: the store failed: {type(exc).__name__}: {one_line(exc)}", url=url)


def one_line(exc: BaseException) -> str:
    """A store's error text (outside input) as one printable line of bounded length."""
    text = " ".join(_UNPRINTABLE.sub(" ", str(exc)).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _quiet_backends() -> None:
    # gcsfs logs each request it gives up on with a traceback; through Python's
    # last-resort handler that would reach the terminal beside zoo's one line.
    for name in _BACKEND_LOGGERS:
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
