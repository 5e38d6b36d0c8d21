"""The serving side's error tree and its one HTTP status map.

Why: the proxy must answer like OpenSearch (``{"error": {"type", "reason"}, "status"}``) for the
failures *it* causes (upstream down, body too large), and it must never turn a rewriter problem into
an error response. Model failures therefore are a separate branch (``ModelError``) that the fallback
ladder catches; only ``ProxyError`` subclasses ever reach a client, mapped once in ``to_response``.
Rule-file and configuration mistakes are ``qrw.errors`` errors (the CLI prints them in one line).
"""

from __future__ import annotations

from qrw.errors import InputDataError, QrwError


class PluginError(QrwError):
    """Base of every serving-side failure."""


class RuleSyntaxError(InputDataError):
    """A rules file line that does not parse; the message names the file and line."""


# -- the model: caught by the fallback ladder, never shown to a search client ----------------


class ModelError(PluginError):
    """The rewrite model failed (exception inside the model)."""


class ModelTimeout(ModelError):
    """The model did not answer within the request's deadline."""


class ModelBusy(ModelError):
    """Too many model calls are pending; the request falls back without waiting."""


# -- the proxy: these are the only errors a client can see ------------------------------------


class ProxyError(PluginError):
    """An expected failure answered to the client as an OpenSearch-style JSON error."""

    status = 500
    error_type = "qrw_proxy_exception"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)


class BadRequest(ProxyError):
    status = 400
    error_type = "parse_exception"


class BodyTooDeep(BadRequest):
    """A query body nested deeper than ``proxy.max_json_depth``: refused before it can crash the node."""

    error_type = "qrw_depth_limit_exception"


class BodyUnreadable(BadRequest):
    """A request body that could not be decoded (e.g. broken gzip)."""


class Forbidden(ProxyError):
    """A debug surface asked for by a client that is not allowed to use it."""

    status = 403
    error_type = "security_exception"


class BodyTooLarge(ProxyError):
    status = 413
    error_type = "content_too_long_exception"


class UpstreamUnavailable(ProxyError):
    """OpenSearch could not be reached (connection refused, reset, DNS)."""

    status = 502
    error_type = "upstream_unavailable_exception"


class UpstreamTimeout(ProxyError):
    """OpenSearch accepted the connection but did not answer in time."""

    status = 504
    error_type = "upstream_timeout_exception"


class ProxyOverloaded(ProxyError):
    status = 503
    error_type = "qrw_overloaded_exception"


class NotFound(ProxyError):
    status = 404
    error_type = "resource_not_found_exception"


def error_body(status: int, error_type: str, reason: str) -> dict:
    """OpenSearch's error shape, so clients that parse OpenSearch errors parse ours."""
    cause = {"type": error_type, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def to_response(exc: BaseException) -> tuple[int, dict]:
    """The one map from an exception to (HTTP status, JSON body). Unknown exceptions are a 500."""
    if isinstance(exc, ProxyError):
        return exc.status, error_body(exc.status, exc.error_type, exc.message)
    return 500, error_body(500, "qrw_internal_exception", f"internal proxy error: {type(exc).__name__}")
