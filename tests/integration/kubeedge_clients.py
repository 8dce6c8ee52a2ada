"""Protocol-level clients written from KubeEdge's side of the wire, for the compatibility
tests: an MQTT client (paho) that plays a KubeEdge mapper or application against a node's
MQTT listener.

A node's MQTT listener refuses anonymous clients: each client logs in as one of the node's
mappers (``NodeIdentity.mapper``), as a real mapper is configured to."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

import paho.mqtt.client as mqtt


class MqttClient:
    """A paho-mqtt client whose received messages are queued for the (async) test."""

    def __init__(self, port: int, *, auth: tuple[str, str] | None, host: str = "127.0.0.1", name: str = "kubeedge-mapper") -> None:
        """``auth``: (user, password); None only for brokers that are not a node's."""
        self.q: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{time.time_ns()}")
        if auth is not None:
            self.c.username_pw_set(*auth)
        self.c.on_message = lambda _c, _u, msg: self.q.put((msg.topic, msg.payload))
        self.c.connect(host, port)
        self.c.loop_start()
        self.seen: list[tuple[str, Any]] = []

    def sub(self, *topics: str) -> None:
        for t in topics:
            r, _ = self.c.subscribe(t, qos=1)
            assert r == mqtt.MQTT_ERR_SUCCESS

    def pub(self, topic: str, payload: Any, *, qos: int = 1) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.c.publish(topic, data, qos=qos).wait_for_publish(5)

    def drain(self) -> list[tuple[str, Any]]:
        while True:
            try:
                topic, data = self.q.get_nowait()
            except queue.Empty:
                return self.seen
            try:
                body = json.loads(data)
            except ValueError:
                body = data
            self.seen.append((topic, body))

    def find(self, topic: str, pred: Any = lambda b: True) -> Any:
        for t, b in self.drain():
            if t == topic and pred(b):
                return b
        return None

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()
