"""RuntimeClass (``node.k8s.io/v1``) rules, pure: what a valid class is, and the handlers
edgebus nodes know.

A RuntimeClass names a ``handler`` (a DNS label; immutable), optionally an ``overhead``
(``podFixed`` quantities) and ``scheduling`` (``nodeSelector``, ``tolerations``) that the
scheduler applies to the pods of the class. A node advertises the handlers it runs in
``status.runtimeHandlers`` (Kubernetes' ``NodeRuntimeHandler`` list): ``runc`` when
containerd answers, ``wasm`` when edged can run WebAssembly modules (docs/wasm.md).
"""

from __future__ import annotations

from typing import Any

from edgebus.objects.checks import Causes, check_dns_label, checks

#: the handler of containerd's default runtime
RUNC = "runc"
#: the handler of edged's WebAssembly runtime (wasmtime)
WASM = "wasm"


@checks("runtimeclasses")
def check_runtimeclass(c: Causes, obj: dict[str, Any]) -> None:
    check_dns_label(c, "handler", obj.get("handler"))
    overhead = obj.get("overhead")
    if overhead is not None:
        if not isinstance(overhead, dict):
            c.type_error("overhead", "an object", overhead)
        elif overhead.get("podFixed") is not None and not isinstance(overhead.get("podFixed"), dict):
            c.type_error("overhead.podFixed", "an object", overhead.get("podFixed"))
    sched = obj.get("scheduling")
    if sched is None:
        return
    if not isinstance(sched, dict):
        c.type_error("scheduling", "an object", sched)
        return
    sel = sched.get("nodeSelector")
    if sel is not None and (not isinstance(sel, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sel.items())):
        c.type_error("scheduling.nodeSelector", "a map of strings", sel)
    tols = sched.get("tolerations")
    if tols is not None and (not isinstance(tols, list) or not all(isinstance(t, dict) for t in tols)):
        c.type_error("scheduling.tolerations", "a list of objects", tols)


def handlers_of(node: dict[str, Any]) -> list[str]:
    """The handler names a Node advertises."""
    found = (node.get("status") or {}).get("runtimeHandlers") or []
    return [str(h["name"]) for h in found if isinstance(h, dict) and isinstance(h.get("name"), str)]
