"""``AsyncRewritingOpenSearch``: the asyncio twin of ``RewritingOpenSearch`` for ``AsyncOpenSearch``.

Same constructor, same surface: it *is* an ``opensearchpy.AsyncOpenSearch``; only ``search`` and
``msearch`` rewrite, everything else is inherited. Why a twin rather than a wrapper: applications on
asyncio (FastAPI, aiohttp) call ``await client.search(...)`` and must be able to swap the class in
one line. The body handling is the sync client's (``client.prepare_search`` and friends); when a
body may wait for the model (no fresh cache entry), that work runs in a thread, so the event loop
never blocks on the model: it waits at most the server's ``chain.deadline_ms``.

    from qrw.plugin.async_client import AsyncRewritingOpenSearch
    client = AsyncRewritingOpenSearch(hosts=["http://127.0.0.1:9200"], model=load_model("models/rewriter-int8"))
    await client.search(index="products", body={"query": {"match": {"title": "laptop"}}})
    await client.close()

Needs opensearch-py's async extra (aiohttp).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import OpenSearchException

from qrw.plugin.client import (
    as_written,
    finish,
    make_engine,
    materialise,
    msearch_retries,
    needs_model,
    prepare_msearch,
    prepare_search,
    respell_asks,
    search_parse,
    search_retry,
    take_msearch,
    take_search,
)
from qrw.plugin.config import PluginConfig
from qrw.plugin.engine import BRANDS_TIMEOUT_S, RespellAsk, RewriteEngine
from qrw.plugin.model import RewriteModel
from qrw.plugin.rules import RuleSet

log = logging.getLogger("qrw.plugin")


class AsyncRewritingOpenSearch(AsyncOpenSearch):
    """An ``AsyncOpenSearch`` client that rewrites ``search`` and ``msearch`` through a ``RewriteEngine``."""

    def __init__(
        self,
        hosts: Any = None,
        *,
        engine: RewriteEngine | None = None,
        config: PluginConfig | None = None,
        model: RewriteModel | None = None,
        rules: RuleSet | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(hosts, **kwargs)
        self.qrw = make_engine(engine, config, model, rules)

    async def _prepare(self, step: Any, body: Any, index: Any, headers: Any) -> Any:
        if needs_model(self.qrw, body, index):
            return await asyncio.to_thread(step, self.qrw, body, index, headers)
        return step(self.qrw, body, index, headers)

    async def _read_brands(self, index: Any, headers: Any) -> None:
        """Before the first search, read the brand guard's brands from the index (as the sync client does)."""
        body = self.qrw.brands_ask()
        if body is None:
            return
        try:
            answer = await super().search(body=body, index=index, headers=headers, request_timeout=BRANDS_TIMEOUT_S)
        except (OpenSearchException, asyncio.TimeoutError) as exc:
            log.warning("brand guard: could not read brands from %s: %s", self.qrw.config.guards.brands_field, exc)
            return
        log.info("brand guard: %d brands (%s)", self.qrw.add_brands_from(answer), self.qrw.config.guards.brands_field)

    async def _respell(self, asks: list[RespellAsk], headers: Any) -> None:
        """Ask the index for each pending respelling, all at once; the engine keeps the answers. A failure costs
        only the respelling."""
        timeout = self.qrw.config.respell.timeout_ms / 1000.0

        async def send(ask: RespellAsk) -> Any:
            return await super(AsyncRewritingOpenSearch, self).search(body=ask.body, index=ask.index, headers=headers,
                                                                      request_timeout=timeout)

        async def one(ask: RespellAsk) -> None:
            try:
                answer = await send(ask)
            except OpenSearchException as exc:  # a 400 (e.g. no such field) turns respelling off for that index a while
                self.qrw.respell_answer(ask, getattr(exc, "info", None), refused=getattr(exc, "status_code", None) == 400)
                return
            except asyncio.TimeoutError:
                return
            held = None
            check = self.qrw.respell_check(ask, answer)  # a multi-shard answer's corrections, confirmed index-wide
            if check is not None:
                try:
                    held = await send(check)
                except (OpenSearchException, asyncio.TimeoutError):
                    held = None  # unconfirmed: no respelling this time
            self.qrw.respell_answer(ask, answer, held=held)

        if asks:
            await asyncio.gather(*(one(ask) for ask in asks))

    async def search(self, body: Any = None, index: Any = None, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        plain, headers = as_written(headers)
        if plain:
            return await super().search(body=body, index=index, params=params, headers=headers, **kwargs)
        await self._read_brands(index, headers)
        parsed = search_parse(body)
        await self._respell(respell_asks(self.qrw, parsed, index), headers)
        prepared = await self._prepare(functools.partial(prepare_search, parsed=parsed), body, index, headers)
        response = await super().search(body=prepared.body, index=index, params=params, headers=headers, **kwargs)
        retry = search_retry(self.qrw, prepared, response, index, params, kwargs)
        if retry is not None:
            try:
                second = await super().search(body=retry, index=index, params=params, headers=headers, **kwargs)
            except OpenSearchException:
                second = None  # the empty answer stands
            response = take_search(self.qrw, prepared, response, second)
        return finish(prepared, response)

    async def msearch(self, body: Any = None, index: Any = None, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        plain, headers = as_written(headers)
        if plain:
            return await super().msearch(body=body, index=index, params=params, headers=headers, **kwargs)
        await self._read_brands(index, headers)
        body = materialise(body)
        await self._respell(respell_asks(self.qrw, body, index, multi=True), headers)
        prepared = await self._prepare(prepare_msearch, body, index, headers)
        response = await super().msearch(body=prepared.body, index=index, params=params, headers=headers, **kwargs)
        retries, retry_body = msearch_retries(self.qrw, prepared, response, index, params, kwargs)
        if retries:
            try:
                second = await super().msearch(body=retry_body, index=index, params=params, headers=headers, **kwargs)
            except OpenSearchException:
                second = None
            response = take_msearch(self.qrw, prepared, response, retries, second)
        return finish(prepared, response)

    async def close(self) -> None:
        self.qrw.close()
        await super().close()
