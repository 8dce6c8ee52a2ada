"""The OPC-UA driver (asyncua client): node-id visitors, read, write, subscriptions.

Protocol ``configData``: ``url`` (``opc.tcp://host:port/path``), ``timeout`` (s),
``subscribe`` (default true: values come from an OPC-UA subscription instead of polling),
``publishingInterval`` (ms, default 100). Property visitor ``configData``: ``nodeID``
(``ns=2;s=Temperature``, ``ns=2;i=42``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from edgebus.devices.mapper import DeviceConfig, DeviceFault, Driver, LinkDown, PropSpec

log = logging.getLogger("edgebus.mapper.opcua")
for noisy in ("asyncua", "asyncua.client", "asyncua.common", "asyncua.uaprotocol"):
    logging.getLogger(noisy).setLevel(logging.ERROR)

_INT_VARIANTS = {
    ua.VariantType.SByte,
    ua.VariantType.Byte,
    ua.VariantType.Int16,
    ua.VariantType.UInt16,
    ua.VariantType.Int32,
    ua.VariantType.UInt32,
    ua.VariantType.Int64,
    ua.VariantType.UInt64,
}


def to_variant_value(value: Any, vt: ua.VariantType) -> Any:
    if vt == ua.VariantType.Boolean:
        return bool(value)
    if vt in _INT_VARIANTS:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not an integer (node type {vt.name})")
        return int(value)
    if vt in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    if vt == ua.VariantType.String:
        return str(value)
    raise ValueError(f"writing {vt.name} nodes is not supported")


class _Handler:
    def __init__(self, names_by_node: dict[str, str], on_value: Callable[[str, Any], None]) -> None:
        self.names = names_by_node
        self.on_value = on_value

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        name = self.names.get(node.nodeid.to_string())
        if name is not None:
            self.on_value(name, val)


class OpcuaDriver(Driver):
    def __init__(self, config: DeviceConfig, *, default_timeout: float = 2.0) -> None:
        super().__init__(config)
        pc = config.protocol
        self.url = str(pc.get("url") or pc.get("endpoint") or "")
        self.timeout = float(pc.get("timeout") or default_timeout)
        self.use_subscription = pc.get("subscribe", True) is not False
        self.interval = float(pc.get("publishingInterval") or 100)
        self.client: Client | None = None
        self.sub: Subscription | None = None
        self.types: dict[str, ua.VariantType] = {}

    def node_id(self, p: PropSpec) -> str:
        nid = p.config.get("nodeID")
        if not isinstance(nid, str) or not nid:
            raise DeviceFault(f"property {p.name} has no visitors.configData.nodeID")
        return nid

    async def connect(self) -> None:
        if not self.url:
            raise LinkDown("the device's protocol configData has no url")
        self.client = Client(self.url, timeout=self.timeout)
        try:
            await asyncio.wait_for(self.client.connect(), self.timeout + 1)
        except (OSError, TimeoutError, ua.UaError, asyncio.TimeoutError) as exc:
            self.client = None
            raise LinkDown(f"cannot connect to OPC-UA server {self.url}: {exc or type(exc).__name__}") from None

    async def close(self) -> None:
        c, self.client = self.client, None
        if c is not None:
            try:
                await asyncio.wait_for(c.disconnect(), 2)
            except Exception:
                pass

    def _check_link(self) -> Client:
        if self.client is None:
            raise LinkDown("not connected")
        return self.client  # a lost connection surfaces as ConnectionError on the next request

    async def read(self, p: PropSpec) -> Any:
        c = self._check_link()
        try:
            return await c.get_node(self.node_id(p)).read_value()
        except ua.UaStatusCodeError as exc:
            raise DeviceFault(f"{self.node_id(p)}: {exc}") from None
        except (OSError, TimeoutError, asyncio.TimeoutError, ConnectionError) as exc:
            raise LinkDown(f"reading {p.name}: {exc or type(exc).__name__}") from None

    async def write(self, p: PropSpec, value: Any) -> None:
        c = self._check_link()
        node = c.get_node(self.node_id(p))
        try:
            vt = self.types.get(p.name)
            if vt is None:
                vt = await node.read_data_type_as_variant_type()
                self.types[p.name] = vt
            await node.write_value(ua.DataValue(ua.Variant(to_variant_value(value, vt), vt)))
        except ua.UaStatusCodeError as exc:
            raise DeviceFault(f"{self.node_id(p)}: {exc}") from None
        except (OSError, TimeoutError, asyncio.TimeoutError, ConnectionError) as exc:
            raise LinkDown(f"writing {p.name}: {exc or type(exc).__name__}") from None

    async def subscribe(self, props: list[PropSpec], on_value: Callable[[str, Any], None]) -> set[str]:
        if not self.use_subscription or not props:
            return set()
        c = self._check_link()
        by_node = {}
        nodes = []
        for p in props:
            try:
                nid = self.node_id(p)
            except DeviceFault:
                continue
            node = c.get_node(nid)
            by_node[node.nodeid.to_string()] = p.name
            nodes.append(node)
        if not nodes:
            return set()
        try:
            self.sub = await c.create_subscription(self.interval, _Handler(by_node, on_value))
            await self.sub.subscribe_data_change(nodes)
        except ua.UaStatusCodeError as exc:
            log.warning("subscription on %s refused (%s); polling instead", self.url, exc)
            return set()
        return set(by_node.values())
