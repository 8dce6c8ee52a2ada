"""A leafnode connection spoken by hand (for tests that play an attacker holding a node's
credential): the NATS leafnode protocol as nats-server documents it — the server's ``INFO``
(with a nonce), the TLS upgrade, ``CONNECT`` with the user JWT and the nonce signed by its
nkey, then ``LS+``/``LS-`` (subscription interest) and ``LMSG`` (messages), with
``PING``/``PONG``. It does not filter anything itself: whatever it is refused, the server
refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from dataclasses import dataclass, field

from edgebus.identity.natsjwt import read_creds


@dataclass
class LeafMsg:
    subject: str
    reply: str
    data: bytes


@dataclass
class RawLeaf:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    info: dict[str, object]
    messages: list[LeafMsg] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, host: str, port: int, *, creds: str | None, ca_file: str, cert_file: str | None = None, key_file: str | None = None) -> RawLeaf:
        r, w = await asyncio.open_connection(host, port)
        line = await asyncio.wait_for(r.readline(), 5)
        if not line.startswith(b"INFO "):
            raise ConnectionError(f"no INFO from the server: {line[:80]!r}")
        info = json.loads(line[5:])
        ctx = ssl.create_default_context(cafile=ca_file)
        if cert_file and key_file:
            ctx.load_cert_chain(cert_file, key_file)
        await w.start_tls(ctx, server_hostname=host)
        conn: dict[str, object] = {"name": "raw-leaf", "hub": False, "headers": True, "tls_required": True, "proto": 1}
        if creds:
            jwt, key = read_creds(open(creds).read())
            conn["jwt"] = jwt
            conn["sig"] = base64.urlsafe_b64encode(key.sign(str(info["nonce"]).encode())).rstrip(b"=").decode()
        w.write(f"CONNECT {json.dumps(conn)}\r\nPING\r\n".encode())
        await w.drain()
        leaf = cls(r, w, info)
        leaf._task = asyncio.get_running_loop().create_task(leaf._read())
        return leaf

    async def _read(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    return
                if line.startswith(b"PING"):
                    self.writer.write(b"PONG\r\n")
                    await self.writer.drain()
                elif line.startswith(b"-ERR"):
                    self.errors.append(line[5:].strip().decode(errors="replace"))
                elif line.startswith(b"LMSG "):
                    parts = line.decode().split()
                    subject, size = parts[1], int(parts[-1])
                    reply = parts[2] if len(parts) > 3 else ""
                    data = await self.reader.readexactly(size + 2)
                    self.messages.append(LeafMsg(subject, reply, data[:-2]))
                elif line.startswith(b"HLMSG "):
                    parts = line.decode().split()
                    subject, total = parts[1], int(parts[-1])
                    reply = parts[2] if len(parts) > 4 else ""
                    data = await self.reader.readexactly(total + 2)
                    hdr_len = int(parts[-2])
                    self.messages.append(LeafMsg(subject, reply, data[hdr_len:-2]))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            self.closed.set()

    async def subscribe(self, subject: str) -> None:
        self.writer.write(f"LS+ {subject}\r\n".encode())
        await self.writer.drain()

    async def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        head = f"LMSG {subject} {reply} {len(data)}" if reply else f"LMSG {subject} {len(data)}"
        self.writer.write(head.encode() + b"\r\n" + data + b"\r\n")
        await self.writer.drain()

    async def ping(self) -> None:
        self.writer.write(b"PING\r\n")
        await self.writer.drain()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        try:
            self.writer.close()
        except Exception:
            pass
