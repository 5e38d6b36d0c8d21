"""``qrw sandbox``: the main job in one command.

Starts the real OpenSearch node, indexes the Icecat catalog, prints the baseline evaluation, and
(when a rewriter model is available) starts the rewriting proxy and the comparison page, then waits
until Ctrl-C and stops everything it started.
"""

from qrw.sandbox.command import sandbox

__all__ = ["sandbox"]
