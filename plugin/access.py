"""Who may use the proxy's debug surfaces (explain, ``/_qrw/stats``, ``/_qrw/metrics``).

Why: the explain report shows the model, the rules that fired and timings, and the stats show the
cache and model state; a search client on the internet must not get either. Both are off unless the
configuration names client networks (``proxy.debug_networks``, CIDR) or a shared secret
(``proxy.debug_token``, sent in the ``X-QRW-Debug-Token`` header and compared in constant time).
Behind a load balancer the client address is the balancer's: use the token there.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

TOKEN_HEADER = b"x-qrw-debug-token"
HOST_MEMO = 4096


class DebugAccess:
    def __init__(self, networks: Iterable[str] = (), token: str | None = None) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self.token = token.encode() if token else None
        self._hosts: dict[str, bool] = {}
        """Client address -> inside ``networks``: parsing the address each time was ~4 % of the proxy's CPU on a cache hit."""

    @property
    def enabled(self) -> bool:
        return bool(self.networks or self.token)

    def allows(self, client_host: str | None, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        if self.token is not None:
            for name, value in headers:
                if name == TOKEN_HEADER and hmac.compare_digest(value, self.token):
                    return True
        if self.networks and client_host:
            allowed = self._hosts.get(client_host)
            if allowed is None:
                if len(self._hosts) >= HOST_MEMO:
                    self._hosts.clear()
                allowed = self._hosts[client_host] = self._in_networks(client_host)
            return allowed
        return False

    def _in_networks(self, client_host: str) -> bool:
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
