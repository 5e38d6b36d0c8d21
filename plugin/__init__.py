"""Serving: the rewriter chain, gate policy, query merge, the opensearch-py drop-in and the REST proxy.

Never imports torch, transformers or trl. Heavier names are loaded on first use, so importing
``qrw.plugin.prompt`` (as the trainer does) stays cheap.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "RewritingOpenSearch": "qrw.plugin.client",
    "AsyncRewritingOpenSearch": "qrw.plugin.async_client",
    "RewriteEngine": "qrw.plugin.engine",
    "load_model": "qrw.plugin.engine",
    "PluginConfig": "qrw.plugin.config",
    "load_config": "qrw.plugin.config",
    "load_rules": "qrw.plugin.rules",
    "TableRewriteModel": "qrw.plugin.table",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qrw.plugin' has no attribute {name!r}")
