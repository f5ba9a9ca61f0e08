"""The transports by name: what ``providers.NAME.transport`` picks (``default``: aiohttp;
``lean``: tether's own HTTP/1.1 client). Each is imported only when built."""

from __future__ import annotations

from typing import Protocol

from tether.providers.transport import Transport, TransportName, TransportOptions


def build_transport(name: TransportName, options: TransportOptions) -> Transport:
    """The transport ``providers.NAME.transport`` names (imported only when built)."""
    if name == "lean":
        from tether.providers._lean import LeanTransport

        return LeanTransport(options)
    from tether.providers._aiohttp import AiohttpTransport

    return AiohttpTransport(options)


class _TransportConfig(Protocol):
    """The fields of a provider's config that choose and shape its transport."""

    @property
    def transport(self) -> TransportName: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def connect_timeout_s(self) -> float: ...


def transport_for(config: _TransportConfig) -> Transport:
    """The transport a provider's config asks for (``transport``, ``max_connections``,
    ``connect_timeout_s``)."""
    options = TransportOptions(
        max_connections=config.max_connections, connect_timeout_s=config.connect_timeout_s
    )
    return build_transport(config.transport, options)
