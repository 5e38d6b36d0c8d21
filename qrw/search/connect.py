"""One place that opens an opensearch-py client and maps its errors to ours.

Why: every command (index, eval, train, sandbox) talks to OpenSearch, and a user who mistypes a URL
or an index must get one clear line, not a urllib3 traceback. Errors are mapped once, here, at the
edge (as opensearch-py itself does between its transport and connection layers).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from qrw.errors import IndexMissingError, SearchBackendError, UnreachableError

DEFAULT_URL = "http://127.0.0.1:9200"
DEFAULT_INDEX = "products"
URL_ENV = "QRW_OPENSEARCH_URL"
"""Every command's ``--url`` (and the proxy's upstream) defaults to this variable, else ``DEFAULT_URL``."""


def default_url() -> str:
    """``$QRW_OPENSEARCH_URL`` when set, else ``http://127.0.0.1:9200``."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def open_client(url: str | None = None, *, timeout: float = 30.0, check: bool = True) -> OpenSearch:
    """A client for ``url`` (default: ``default_url()``); with ``check``, fail now (clearly) if nothing answers."""
    url = url or default_url()
    if not url.startswith(("http://", "https://")):
        raise UnreachableError(f"OpenSearch URL must start with http:// or https://, got {url!r}")
    client = OpenSearch(hosts=[url], timeout=timeout, max_retries=0, retry_on_timeout=False)
    if check:
        with translate_errors(url):
            client.info()
    return client


@contextlib.contextmanager
def translate_errors(url: str, index: str | None = None) -> Iterator[None]:
    """Re-raise opensearch-py errors as ``SearchBackendError`` subclasses with a readable message."""
    try:
        yield
    except os_exc.NotFoundError as exc:
        if getattr(exc, "error", "") == "index_not_found_exception" or index is not None:
            raise IndexMissingError(
                f"index {index!r} does not exist on {url}",
                hint="run `qrw index` first, or pass --index with an existing index or alias",
            ) from exc
        raise SearchBackendError(f"OpenSearch at {url} answered 404: {exc.info}") from exc
    except os_exc.ConnectionTimeout as exc:
        raise UnreachableError(f"OpenSearch at {url} did not answer in time") from exc
    except os_exc.ConnectionError as exc:
        raise UnreachableError(
            f"cannot reach OpenSearch at {url}",
            hint="start a local node with `qrw opensearch start`, or pass --url",
        ) from exc
    except os_exc.TransportError as exc:
        raise SearchBackendError(f"OpenSearch at {url} answered {exc.status_code}: {exc.error}") from exc
