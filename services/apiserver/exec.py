"""``kubectl exec`` over the Kubernetes websocket streaming protocol.

``/api/v1/namespaces/{ns}/pods/{name}/exec?command=...&stdout=true&stderr=true`` upgraded to
a websocket with subprotocol ``v5.channel.k8s.io`` or ``v4.channel.k8s.io`` (what kubectl
1.30+ speaks by default). Every binary message starts with its channel: 1 stdout, 2 stderr,
3 the final ``Status`` (success, or ``NonZeroExitCode`` with the exit code, which kubectl
turns into its own exit code).

The command runs on the pod's node through edged's ``exec`` request over NATS (CRI
``ExecSync``): non-interactive, its output arrives when it ends (within 60 s). Standard
input and terminals (``kubectl exec -i/-t``) are refused with a clear Status, and so is the
older SPDY upgrade (kubectl 1.27-1.29 by default); ``edgebus exec`` works everywhere.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from edgebus.edgedclient import EdgedClient
from edgebus.errors import ApiError, BadRequest
from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore

log = logging.getLogger("edgebus.apiserver")

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDOUT, STDERR, ERROR = 1, 2, 3
EXEC_TIMEOUT = 60.0
PATH = "/api/v1/namespaces/{namespace}/pods/{name}/exec"


def _true(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true")


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    """The Status that ends the stream, as the kubelet sends it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def add_routes(app: FastAPI, store: ObjectStore) -> None:
    @app.websocket(PATH)
    async def exec_ws(ws: WebSocket, namespace: str, name: str) -> None:
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        proto = next((p for p in PROTOCOLS if p in offered), None)
        if proto is None:
            await ws.close(code=1002, reason=f"supported subprotocols: {', '.join(PROTOCOLS)}")
            return
        await ws.accept(subprotocol=proto)
        q = ws.query_params
        command = q.getlist("command")
        try:
            if _true(q.get("stdin")) or _true(q.get("tty")):
                raise BadRequest("edgebus runs exec without standard input or a terminal (no -i/-t): the command runs on the node with CRI ExecSync")
            if not command:
                raise BadRequest("you must specify at least one command for the container")
            pod = await store.get(PODS, namespace, name)
            node = (pod.get("spec") or {}).get("nodeName")
            if not node:
                raise BadRequest(f'pod "{name}" is not scheduled to a node yet')
            res = await EdgedClient(store.bus, node, source="apiserver").exec(namespace, name, command, container=q.get("container") or None, timeout=EXEC_TIMEOUT)
            if _true(q.get("stdout")) and res.get("stdout"):
                await ws.send_bytes(bytes([STDOUT]) + bytes(res["stdout"]))
            if _true(q.get("stderr")) and res.get("stderr"):
                await ws.send_bytes(bytes([STDERR]) + bytes(res["stderr"]))
            status = exit_status(int(res.get("exitCode") or 0), command)
        except ApiError as exc:
            status = exc.status()
        except Exception:
            log.exception("exec in %s/%s failed", namespace, name)
            status = ApiError("Internal error occurred: exec failed").status()
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
        await ws.close()

    async def not_upgraded(request: Request) -> Response:
        err = BadRequest(
            "exec needs the websocket streaming protocol of the cloud apiserver (v5.channel.k8s.io / v4.channel.k8s.io: kubectl 1.30+, or 1.29 "
            "with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true); "
            "SPDY is not supported: use kubectl >= 1.30 or `edgebus exec`"
        )
        return JSONResponse(err.status(), status_code=err.code)

    app.add_route(PATH, not_upgraded, methods=["GET", "POST"])
