"""qrw: relevance-gated LLM query rewriting for OpenSearch.

Sub-packages: ``qrw.search`` (local OpenSearch node, catalog, index), ``qrw.eval`` (judgments,
metrics, runs), ``qrw.plugin`` (torch-free serving), ``qrw.trainer`` (SFT/GRPO) and ``qrw.export``
(ONNX export).
"""

__version__ = "0.1.0"
