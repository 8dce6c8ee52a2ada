"""EdgeApplication rendering (pure; no I/O), as KubeEdge's edgeapplication controller: each
manifest (an ``apps/v1`` Deployment) once per target node group, named ``<name>-<group>``,
its pods selected onto the group's nodes (``nodeSelector: {apps.kubeedge.io/belonging-to:
<group>}``), with the group's overriders applied:

* ``replicas``;
* ``imageOverriders``: ``add`` appends the value to the image's ``Registry``, ``Repository``
  or ``Tag``, ``replace`` sets it, ``remove`` clears it (images are
  ``[registry/]repository[:tag|@digest]``); with a ``predicate`` only the image at that path;
* ``envOverriders``: ``add`` appends variables, ``replace`` sets the value of those that
  exist, ``remove`` deletes them by name;
* ``commandOverriders`` / ``argsOverriders``: ``add`` appends, ``remove`` deletes matching items;
* ``resourcesOverriders``: set the container's resources.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from edgebus.objects.nodegroups import APP_NAME_LABEL, APP_NAMESPACE_LABEL, BELONGING_TO
from edgebus.objects.workloads import apply_defaults


@dataclass(frozen=True, slots=True)
class Image:
    registry: str
    repository: str
    tag: str  # "" or ":v1" or "@sha256:..."

    def __str__(self) -> str:
        return (f"{self.registry}/" if self.registry else "") + self.repository + self.tag


def parse_image(image: str) -> Image:
    rest, tag = image, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        tag = "@" + digest
    else:
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, t = rest.rsplit(":", 1)
            tag = ":" + t
    parts = rest.split("/", 1)
    if len(parts) == 2 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        return Image(parts[0], parts[1], tag)
    return Image("", rest, tag)


def override_image(image: str, ov: dict[str, Any]) -> str:
    img = parse_image(image)
    comp, op, value = ov.get("component"), ov.get("operator"), str(ov.get("value") or "")
    if comp == "Registry":
        reg = img.registry + value if op == "add" else (value if op == "replace" else "")
        img = Image(reg, img.repository, img.tag)
    elif comp == "Repository":
        repo = img.repository + value if op == "add" else (value if op == "replace" else "")
        img = Image(img.registry, repo, img.tag)
    elif comp == "Tag":
        sep = img.tag[:1] or ":"
        current = img.tag[1:]
        tag = current + value if op == "add" else (value if op == "replace" else "")
        img = Image(img.registry, img.repository, sep + tag if tag else "")
    return str(img)


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in spec.get("containers") or [] if isinstance(c, dict)]


def apply_overriders(deployment: dict[str, Any], ov: dict[str, Any]) -> dict[str, Any]:
    d = copy.deepcopy(deployment)
    spec = d.setdefault("spec", {})
    if ov.get("replicas") is not None:
        spec["replicas"] = int(ov["replicas"])
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    containers = _containers(pod)
    for o in ov.get("imageOverriders") or []:
        path = ((o.get("predicate") or {}).get("path") or "") if isinstance(o, dict) else ""
        for i, c in enumerate(containers):
            if path and path != f"/spec/template/spec/containers/{i}/image":
                continue
            if isinstance(c.get("image"), str):
                c["image"] = override_image(c["image"], o)
    by_name = {c.get("name"): c for c in containers}
    for o in ov.get("envOverriders") or []:
        target = by_name.get(o.get("containerName"))
        if target is None:
            continue
        env = list(target.get("env") or [])
        values = [v for v in o.get("value") or [] if isinstance(v, dict)]
        if o.get("operator") == "add":
            env += copy.deepcopy(values)
        elif o.get("operator") == "remove":
            gone = {v.get("name") for v in values}
            env = [e for e in env if e.get("name") not in gone]
        elif o.get("operator") == "replace":
            new = {v.get("name"): v for v in values}
            env = [copy.deepcopy(new[e.get("name")]) if e.get("name") in new else e for e in env]
        target["env"] = env
        if not env:
            target.pop("env")
    for key, field in (("commandOverriders", "command"), ("argsOverriders", "args")):
        for o in ov.get(key) or []:
            target = by_name.get(o.get("containerName"))
            if target is None:
                continue
            items = list(target.get(field) or [])
            words = [str(v) for v in o.get("value") or []]
            items = items + words if o.get("operator") == "add" else [x for x in items if x not in words]
            target[field] = items
            if not items:
                target.pop(field)
    for o in ov.get("resourcesOverriders") or []:
        target = by_name.get(o.get("containerName"))
        if target is not None and isinstance(o.get("value"), dict):
            target["resources"] = copy.deepcopy(o["value"])
    return d


def render(app: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """``(ordinal, group, Deployment)`` for every manifest and target node group."""
    md = app.get("metadata") or {}
    ns = md.get("namespace") or "default"
    spec = app.get("spec") or {}
    manifests = ((spec.get("workloadTemplate") or {}).get("manifests")) or []
    targets = ((spec.get("workloadScope") or {}).get("targetNodeGroups")) or []
    out = []
    for i, m in enumerate(manifests):
        if not isinstance(m, dict) or m.get("kind") != "Deployment":
            continue
        for t in targets:
            group = str(t.get("name") or "")
            d = apply_overriders(m, t.get("overriders") or {})
            dmd = d.setdefault("metadata", {})
            dmd["name"] = f"{(m.get('metadata') or {}).get('name')}-{group}"
            dmd["namespace"] = ns
            dmd["labels"] = {**(dmd.get("labels") or {}), APP_NAME_LABEL: str(md.get("name") or ""), APP_NAMESPACE_LABEL: ns}
            for k in ("uid", "resourceVersion", "creationTimestamp", "generation", "ownerReferences"):
                dmd.pop(k, None)
            pod = d.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {})
            pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), BELONGING_TO: group}
            d.pop("status", None)
            out.append((i, group, d))
    return out


def differs(current: dict[str, Any], want: dict[str, Any]) -> bool:
    """Does the stored Deployment differ from what the application renders (both with
    the API's defaults)? A change made to it by hand is undone: the application decides."""
    w = copy.deepcopy(want)
    apply_defaults("deployments", w)
    cm, wm = current.get("metadata") or {}, w.get("metadata") or {}
    return current.get("spec") != w.get("spec") or (cm.get("labels") or {}) != (wm.get("labels") or {})


def condition(dep: dict[str, Any] | None) -> str:
    if dep is None:
        return "Processing"
    st = dep.get("status") or {}
    want = int((dep.get("spec") or {}).get("replicas") or 0)
    avail = any(c.get("type") == "Available" and c.get("status") == "True" for c in st.get("conditions") or [])
    done = st.get("observedGeneration", 0) >= (dep.get("metadata") or {}).get("generation", 1) and int(st.get("updatedReplicas") or 0) == want == int(st.get("availableReplicas") or 0)
    return "Available" if avail and done else "Processing"


def status(app: dict[str, Any], rendered: list[tuple[int, str, dict[str, Any]]], current: dict[str, dict[str, Any]]) -> dict[str, Any]:
    items = []
    for ordinal, _group, d in rendered:
        name = d["metadata"]["name"]
        items.append(
            {
                "identifier": {"ordinal": ordinal, "group": "apps", "version": "v1", "kind": "Deployment", "resource": "deployments", "namespace": d["metadata"]["namespace"], "name": name},
                "conditions": condition(current.get(name)),
            }
        )
    return {"workloadStatus": items} if items else {}
