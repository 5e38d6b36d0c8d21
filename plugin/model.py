"""The interface between the rewriter chain and a rewrite model.

Why a protocol: the chain must not care whether rewrites come from the ONNX runtime, a PyTorch
checkpoint (evaluation of training stages) or a test double; it needs exactly two calls, both
batched so a runtime can use one forward pass for many inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class RewriteModel(Protocol):
    """A multi-task model: writes rewrites of queries and tags (query, rewrite) pairs."""

    name: str
    """Identifies the model in logs and explain output (for example the manifest's model hash)."""

    def generate(self, queries: Sequence[str], num_rewrites: int) -> list[list[str]]:
        """For each query, up to ``num_rewrites`` parsed rewrites (see ``prompt.parse_rewrite``)."""
        ...

    def tag(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        """For each (query, rewrite), the probability of every tag name in ``prompt.TAGS`` (sums to 1)."""
        ...
