"""edgehub keeps the node's link certificate fresh.

* Online, at two thirds of its lifetime: a new key, a certificate request to cloudhub over the
  link (``edgebus.hub.node.<node>.renew``), the files replaced atomically, and the node's
  server told to reload (a system-account request on the node's own server). nats-server
  checks a certificate only when a link is opened, so the link stays up; the next link uses
  the new certificate.
* Offline past the expiry (the link cannot be opened with an expired certificate): a request
  over HTTPS to the apiserver, signed with the node's identity key, accepted by the cloud
  within its renewal window (``cloudhub.renew_window``, default 1 year). Retried with
  back-off; the node keeps running meanwhile, whatever the answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from edgebus import names
from edgebus.bus import Backoff, Bus, BusAuth, BusError, RemoteError
from edgebus.envelope import OP_QUERY, Envelope
from edgebus.identity.node import NodeIdentity

log = logging.getLogger("edgebus.edgehub.credentials")

LINK_CERT_EXPIRY = Gauge("edgebus_link_certificate_expiry_seconds", "Seconds until the node's link certificate expires", ["node"])

#: renew when this share of the certificate's lifetime has passed
RENEW_AT = 2 / 3


@dataclass
class CredentialState:
    not_after: float = 0.0
    renewed: int = 0
    last_error: str = ""
    last_renewal: float = 0.0


def renew_due(not_before: float, not_after: float, now: float) -> float:
    """When the certificate valid from ``not_before`` to ``not_after`` should be renewed."""
    return not_before + (not_after - not_before) * RENEW_AT


class Credentials:
    def __init__(self, node: str, bus: Bus, ident: NodeIdentity, *, system_nkey_file: str | None, servers: list[str], link_up: Any) -> None:
        self.node = node
        self.bus = bus
        self.ident = ident
        self.system_nkey_file = system_nkey_file
        self.servers = servers
        self.link_up = link_up  # () -> bool
        self.state = CredentialState()

    def _validity(self) -> tuple[float, float]:
        v = self.ident.link_validity()
        if v is None:
            raise RuntimeError(f"no link certificate at {self.ident.link_cert_file}")
        return v

    async def run(self) -> None:
        backoff = Backoff(2.0, 300.0)
        while True:
            if not self.ident.link_cert_file.exists():
                await asyncio.sleep(10)
                continue
            nb, na = self._validity()
            self.state.not_after = na
            now = time.time()
            LINK_CERT_EXPIRY.labels(self.node).set(na - now)
            due = renew_due(nb, na, now)
            if now < due:
                await asyncio.sleep(min(due - now, 60.0))
                continue
            try:
                if self.link_up():
                    await self.renew_online()
                elif now >= na - 60:
                    await self.renew_offline()
                else:
                    await asyncio.sleep(5)
                    continue
                backoff.reset()
            except Exception as exc:  # noqa: BLE001 - keep trying, keep running
                self.state.last_error = str(exc)
                delay = backoff.next()
                log.warning("link certificate not renewed (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)

    async def renew_online(self) -> None:
        from edgebus.identity import pki  # X.509 only when renewing (every few weeks)

        key = pki.new_key()
        csr = pki.new_csr(key, self.node).decode()
        env = Envelope.new(source="edgehub", operation=OP_QUERY, resource="nodes", content={"csr": csr})
        try:
            reply = await self.bus.call(names.hub_node_subject(self.node, "renew"), env, timeout=10.0)
        except RemoteError as exc:
            raise RuntimeError(f"the cloud refused the renewal: {exc}") from None
        except BusError as exc:
            raise RuntimeError(f"renewal not answered: {exc}") from None
        c = reply.content if isinstance(reply.content, dict) else {}
        self.ident.save_link(str(c["certificate"]).encode(), pki.key_pem(key), str(c.get("ca") or "").encode())
        await self._reload_server()
        self._renewed("online")

    async def renew_offline(self) -> None:
        from edgebus.identity import join as joinproto  # HTTPS only after an expiry offline

        await asyncio.to_thread(joinproto.renew_offline, self.ident)
        await self._reload_server()
        self._renewed("over HTTPS after expiry")

    def _renewed(self, how: str) -> None:
        _, na = self._validity()
        self.state.not_after = na
        self.state.renewed += 1
        self.state.last_renewal = time.time()
        self.state.last_error = ""
        log.info("link certificate renewed %s; valid until %s", how, dt.datetime.fromtimestamp(na, dt.UTC).isoformat())

    async def _reload_server(self) -> None:
        """Have the node's server re-read its configuration (the link's certificate files)."""
        if not self.system_nkey_file:
            log.warning("no system credential for the node's server: the new certificate is used after its restart")
            return
        sysbus = Bus(self.servers, name="edgehub-system", request_timeout=5.0, auth=BusAuth(nkey_file=self.system_nkey_file))
        await sysbus.connect(retry_for=10)
        try:
            ping = await sysbus.request("$SYS.REQ.SERVER.PING", b"", timeout=5.0)
            import json

            server_id = json.loads(ping.data)["server"]["id"]
            await sysbus.request(f"$SYS.REQ.SERVER.{server_id}.RELOAD", b"", timeout=10.0)
        finally:
            await sysbus.close()
