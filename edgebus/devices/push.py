"""``pushMethod`` of device properties: values pushed straight from the mapper to another
system, besides the twin (KubeEdge's mapper-framework data push). Each push carries one
property's value as the mapper-framework formats it:

* ``http``: ``POST {hostName}:{port}{requestPath}``, form-encoded
  ``<property>=<value>&time=<YYYY-MM-DD HH:MM:SS>`` (the mapper's local time), waiting at
  most ``timeout`` ms;
* ``mqtt``: a publish to ``topic`` on the broker at ``address`` (``tcp://host:port``,
  ``mqtt://host:port``) with ``qos`` and ``retained``, payload
  ``time is <YYYY-MM-DD HH:MM:SS>  <topic>: <value>``; one connection per broker, kept;
* ``dbMethod.redis``: ``ZADD <device name> <timestamp ms> "TimeStamp: <ms> PropertyName:
  <property> data: <value>"`` on ``addr`` / ``db``, password from the mapper's settings.

``otel``, ``anomalyDetection`` and the ``influxdb2``, ``TDEngine`` and ``mysql`` sinks are
not supported: a device that names them is driven as usual, and the mapper logs once per
property that the push is skipped. A push that fails is counted and logged; it never stops
the device's worker, and the twin is reported regardless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import Counter

from edgebus.objects.shapes import as_dict

log = logging.getLogger("edgebus.mapper.push")

PUSHES = Counter("edgebus_mapper_pushes_total", "pushMethod pushes", ["method", "outcome"])
SUPPORTED = ("http", "mqtt", "redis")
UNSUPPORTED = ("otel", "anomalyDetection", "influxdb2", "TDEngine", "mysql")


@dataclass(frozen=True, slots=True)
class Target:
    method: str  # http | mqtt | redis
    config: tuple[tuple[str, Any], ...]

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.config).get(key, default)


def targets(push_method: Any) -> tuple[list[Target], list[str]]:
    """The supported targets of a property's ``pushMethod`` and the names of the unsupported ones."""
    out: list[Target] = []
    skipped: list[str] = []
    pm = as_dict(push_method)
    for key in ("http", "mqtt"):
        if isinstance(pm.get(key), dict):
            out.append(Target(key, tuple(sorted(pm[key].items()))))
    skipped += [k for k in ("otel", "anomalyDetection") if pm.get(k) is not None]
    db = as_dict(pm.get("dbMethod"))
    r = db.get("redis")
    if isinstance(r, dict) and isinstance(r.get("redisClientConfig"), dict):
        out.append(Target("redis", tuple(sorted(r["redisClientConfig"].items()))))
    skipped += [k for k in ("influxdb2", "TDEngine", "mysql") if db.get(k) is not None]
    return out, skipped


def _clock(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts_ms / 1000))


def http_body(prop: str, value: str, ts_ms: int) -> str:
    """As the mapper-framework writes it: not URL-encoded (``time=2026-12-01 09:00:00``)."""
    return f"{prop}={value}&time={_clock(ts_ms)}"


def mqtt_payload(topic: str, value: str, ts_ms: int) -> str:
    return f"time is {_clock(ts_ms)}  {topic}: {value}"


def redis_member(prop: str, value: str, ts_ms: int) -> str:
    return f"TimeStamp: {ts_ms} PropertyName: {prop} data: {value}"


class _Mqtt:
    """One kept connection to a broker (paho-mqtt, its network loop on a thread)."""

    def __init__(self, address: str) -> None:
        import paho.mqtt.client as mqtt

        u = urlsplit(address if "://" in address else f"tcp://{address}")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgebus-mapper-{time.time_ns()}")
        if u.username:
            self.client.username_pw_set(u.username, u.password)
        self.client.connect(u.hostname or "127.0.0.1", u.port or 1883)
        self.client.loop_start()

    def publish(self, topic: str, payload: str, qos: int, retained: bool) -> None:
        self.client.publish(topic, payload.encode(), qos=qos, retain=retained).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Pusher:
    """The push clients of one mapper process (shared by its devices)."""

    def __init__(self, *, redis_password: str = "") -> None:
        self.redis_password = redis_password
        self._http: httpx.AsyncClient | None = None
        self._mqtt: dict[str, _Mqtt] = {}
        self._redis: dict[tuple[str, int], Any] = {}

    async def push(self, target: Target, device: tuple[str, str], prop: str, value: str, ts_ms: int) -> bool:
        try:
            if target.method == "http":
                await self._push_http(target, prop, value, ts_ms)
            elif target.method == "mqtt":
                await self._push_mqtt(target, value, ts_ms)
            elif target.method == "redis":
                await self._push_redis(target, device, prop, value, ts_ms)
        except Exception as exc:  # a sink that is down never stops the device
            PUSHES.labels(target.method, "failed").inc()
            log.warning("push %s of %s/%s %s failed: %s", target.method, device[0], device[1], prop, exc)
            return False
        PUSHES.labels(target.method, "ok").inc()
        return True

    async def _push_http(self, t: Target, prop: str, value: str, ts_ms: int) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient()
        url = f"{t.get('hostName', '')}:{int(t.get('port') or 80)}{t.get('requestPath', '')}"
        timeout = int(t.get("timeout") or 0) / 1000 or 5.0
        r = await self._http.post(url, content=http_body(prop, value, ts_ms), headers={"content-type": "application/x-www-form-urlencoded"}, timeout=timeout)
        r.raise_for_status()

    async def _push_mqtt(self, t: Target, value: str, ts_ms: int) -> None:
        address = str(t.get("address") or "")
        client = self._mqtt.get(address)
        if client is None:
            client = await asyncio.to_thread(_Mqtt, address)
            self._mqtt[address] = client
        topic = str(t.get("topic") or "")
        await asyncio.to_thread(client.publish, topic, mqtt_payload(topic, value, ts_ms), int(t.get("qos") or 0), t.get("retained") is True)

    async def _push_redis(self, t: Target, device: tuple[str, str], prop: str, value: str, ts_ms: int) -> None:
        import redis.asyncio as aioredis

        addr, db = str(t.get("addr") or "127.0.0.1:6379"), int(t.get("db") or 0)
        client = self._redis.get((addr, db))
        if client is None:
            host, _, port = addr.rpartition(":")
            client = aioredis.Redis(host=host or "127.0.0.1", port=int(port or 6379), db=db, password=self.redis_password or None, socket_timeout=5)
            self._redis[(addr, db)] = client
        await client.zadd(device[1], {redis_member(prop, value, ts_ms): float(ts_ms)})

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        for m in self._mqtt.values():
            await asyncio.to_thread(m.close)
        for r in self._redis.values():
            await r.aclose()
