"""The relay hosted by Jupyter Server: remote notebooks reach a driver through the Jupyter URL they
already use, logged in the way they already log in.

    jupyter server extension enable cbridge_magics
    # jupyter_server_config.py
    c.CBridgeApp.drivers = {"demo": "unix:///tmp/cbridge-demo.sock"}

    %cbridge connect ws://host:8888/cbridge/drivers/demo/ws --token T

The same relay core as ``%cbridge serve`` (``relay.core``) runs on Jupyter Server's own event loop,
with a driver link per configured driver (``relay.driver_link``): no second implementation and no
thread hop per message. Authentication, authorization (resource ``cbridge``) and the Origin check
are Jupyter Server's: a token as ``?token=`` or ``Authorization: token ...``, its identity provider
and authorizer, its ``allow_origin``. Routes, under the server's ``base_url``:

- ``cbridge/drivers/<name>/ws``: the relay protocol, as ``%cbridge serve`` speaks it;
- ``cbridge/api/drivers``: GET, JSON: per driver its url, state, name, version, types and clients.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from tornado.websocket import WebSocketHandler
from traitlets import Dict, Float, Int, Unicode, validate

from ..wire.codes import HEADER_SIZE
from ..wire.hello import parse_hello
from ..wire.transports import UnixTransport, transport_for
from .core import RelayCore
from .driver_link import DriverConnection
from .tornado_client import CoreSocket

AUTH_RESOURCE = "cbridge"


class CBridgeApp(ExtensionApp):
    """The Jupyter Server extension: a relay per configured driver."""

    name = "cbridge"
    description = "cbridge: drive C programs from notebooks, through this server's login"
    load_other_extensions = True

    drivers = Dict(key_trait=Unicode(), value_trait=Unicode(), default_value={},
                   help="The drivers served, name to unix:// URL: "
                   "{'demo': 'unix:///tmp/cbridge-demo.sock'}. A driver is reached at "
                   "<base_url>cbridge/drivers/<name>/ws.").tag(config=True)
    queue_bytes = Int(4 << 20, help="Stream bytes queued per client before its oldest stream "
                      "frames are dropped (replies are never dropped).").tag(config=True)
    max_message = Int((1 << 20) + HEADER_SIZE, help="The largest WebSocket message sent or "
                      "taken, in bytes.").tag(config=True)
    max_inflight = Int(10_000, help="Requests one client may have waiting for the driver; more "
                       "are refused with ERROR 8.").tag(config=True)
    backoff_cap = Float(2.0, help="Seconds between two attempts to reach a driver that went "
                        "away, at most.").tag(config=True)

    @validate("drivers")
    def _valid_drivers(self, proposal: Any) -> dict[str, str]:
        for name, url in proposal["value"].items():
            if not name or "/" in name:
                raise ValueError(f"CBridgeApp.drivers: {name!r} cannot be part of a URL path")
            if not isinstance(transport_for(url), UnixTransport):
                raise ValueError(f"CBridgeApp.drivers[{name!r}]: {url!r} is not a unix:// URL")
        return proposal["value"]

    def initialize_settings(self) -> None:
        make_core = partial(RelayCore, queue_bytes=self.queue_bytes, max_message=self.max_message,
                            max_inflight=self.max_inflight)
        self.links = {name: DriverConnection(transport_for(url).path, make_core=make_core,
                                             backoff=(0.05, self.backoff_cap))
                      for name, url in self.drivers.items()}
        self.settings.update(cbridge_links=self.links, cbridge_urls=dict(self.drivers),
                             websocket_max_message_size=self.max_message)

    def initialize_handlers(self) -> None:
        self.handlers.extend([
            (r"/cbridge/drivers/([^/]+)/ws", DriverSocketHandler),
            (r"/cbridge/api/drivers", DriversHandler),
        ])

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        await super()._start_jupyter_server_extension(serverapp)
        for name, link in self.links.items():
            asyncio.ensure_future(self._first_connect(name, link))

    async def _first_connect(self, name: str, link: DriverConnection) -> None:
        try:
            await link.connect(timeout=5.0)
            self.log.info("cbridge: serving driver %r (unix://%s)", name, link.path)
        except Exception as e:  # noqa: BLE001 - any failure: keep trying, say why
            link.last_error = str(e)
            self.log.warning("cbridge: driver %r not reachable yet (%s); retrying", name, e)
            await link.reconnect()

    async def stop_extension(self) -> None:
        for link in self.links.values():
            link.close()
            if link.core is not None:
                for client in list(link.core.clients.values()):
                    client.close(1001, "server stopping")


class DriverSocketHandler(WebSocketMixin, CoreSocket, WebSocketHandler, JupyterHandler):
    """One remote client of one driver, behind Jupyter Server's login and Origin check."""

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self) -> None:
        """No JupyterHandler headers on a WebSocket upgrade."""

    def relay_core(self) -> RelayCore:
        return self._core

    async def pre_get(self, name: str) -> None:
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "execute",
                                                                  AUTH_RESOURCE)):
            raise web.HTTPError(403, "not authorized for cbridge")
        link = self.settings["cbridge_links"].get(name)
        if link is None:
            raise web.HTTPError(404, f"no driver {name!r} is configured")
        if link.core is None:  # never reached yet: no HELLO to give a client
            raise web.HTTPError(503, f"driver {name!r} not reachable yet: {link.last_error}")
        self._core = link.core

    @ws_authenticated
    async def get(self, name: str) -> None:
        await self.pre_get(name)
        await super().get(name)


class DriversHandler(APIHandler):
    """GET cbridge/api/drivers: what each configured driver is doing, and who is connected."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    async def get(self) -> None:
        out = []
        for name, link in self.settings["cbridge_links"].items():
            entry: dict[str, Any] = {"name": name, "url": self.settings["cbridge_urls"][name],
                                     "state": "connected" if link.connected else "unreachable",
                                     "last_error": link.last_error, "reconnects": link.reconnects}
            core = link.core
            if core is not None:
                schema = parse_hello(core.hello)
                entry.update(driver=schema.driver, driver_version=schema.driver_version,
                             types=[t.name for t in schema.types],
                             clients=[vars(s) for s in core.client_stats()],
                             driver_drops=core.driver_drops)
            out.append(entry)
        self.finish(json.dumps({"drivers": out}))
