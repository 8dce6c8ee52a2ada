"""KubeEdge's node groups (``apps.kubeedge.io/v1alpha1``): validation of NodeGroup and
EdgeApplication. Pure, no I/O.

A NodeGroup's members are the nodes it names (``spec.nodes``) and the nodes its
``spec.matchLabels`` match; each member carries the label
``apps.kubeedge.io/belonging-to: <group>`` (a node belongs to one group at most). An
EdgeApplication's manifests (``apps/v1`` Deployments) are generated once per target node
group, named ``<name>-<group>``, with ``nodeSelector: {apps.kubeedge.io/belonging-to:
<group>}`` and the group's overriders applied.
"""

from __future__ import annotations

from typing import Any

from edgebus.objects.checks import Causes, check_dns_subdomain, check_string_map, checks

BELONGING_TO = "apps.kubeedge.io/belonging-to"
APP_NAME_LABEL = "apps.kubeedge.io/edgeapplication-name"
APP_NAMESPACE_LABEL = "apps.kubeedge.io/edgeapplication-namespace"
IMAGE_COMPONENTS = ("Registry", "Repository", "Tag")
OPERATORS = ("add", "remove", "replace")
CMD_OPERATORS = ("add", "remove")
MANIFEST_KINDS = (("apps/v1", "Deployment"),)


@checks("nodegroups")
def check_nodegroup(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        c.required("spec")
        return
    nodes = spec.get("nodes")
    if nodes is not None:
        if not isinstance(nodes, list):
            c.type_error("spec.nodes", "a list", nodes)
        else:
            for i, n in enumerate(nodes):
                check_dns_subdomain(c, f"spec.nodes[{i}]", n)
    check_string_map(c, "spec.matchLabels", spec.get("matchLabels"), labels=True)
    if spec.get("topologyEnabled") is not None and not isinstance(spec.get("topologyEnabled"), bool):
        c.type_error("spec.topologyEnabled", "a boolean", spec.get("topologyEnabled"))


def _check_overriders(c: Causes, f: str, ov: Any) -> None:
    if ov is None:
        return
    if not isinstance(ov, dict):
        c.type_error(f, "an object", ov)
        return
    r = ov.get("replicas")
    if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < 0):
        c.invalid(f"{f}.replicas", r, "must be greater than or equal to 0")
    for i, o in enumerate(ov.get("imageOverriders") or []):
        g = f"{f}.imageOverriders[{i}]"
        if not isinstance(o, dict):
            c.type_error(g, "an object", o)
            continue
        if o.get("component") not in IMAGE_COMPONENTS:
            c.unsupported(f"{g}.component", o.get("component"), IMAGE_COMPONENTS)
        if o.get("operator") not in OPERATORS:
            c.unsupported(f"{g}.operator", o.get("operator"), OPERATORS)
        elif o["operator"] in ("add", "replace") and not o.get("value"):
            c.required(f"{g}.value")
    for key, ops in (("envOverriders", OPERATORS), ("commandOverriders", CMD_OPERATORS), ("argsOverriders", CMD_OPERATORS), ("resourcesOverriders", None)):
        for i, o in enumerate(ov.get(key) or []):
            g = f"{f}.{key}[{i}]"
            if not isinstance(o, dict):
                c.type_error(g, "an object", o)
                continue
            if not isinstance(o.get("containerName"), str) or not o["containerName"]:
                c.required(f"{g}.containerName")
            if ops is not None and o.get("operator") not in ops:
                c.unsupported(f"{g}.operator", o.get("operator"), ops)
            if ops is None and not isinstance(o.get("value"), dict):
                c.required(f"{g}.value")


@checks("edgeapplications")
def check_edgeapplication(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        c.required("spec")
        return
    manifests = ((spec.get("workloadTemplate") or {}) if isinstance(spec.get("workloadTemplate"), dict) else {}).get("manifests") or []
    if not isinstance(manifests, list):
        c.type_error("spec.workloadTemplate.manifests", "a list", manifests)
        manifests = []
    for i, m in enumerate(manifests):
        f = f"spec.workloadTemplate.manifests[{i}]"
        if not isinstance(m, dict):
            c.type_error(f, "an object", m)
            continue
        if (m.get("apiVersion"), m.get("kind")) not in MANIFEST_KINDS:
            c.unsupported(f"{f}.kind", f"{m.get('apiVersion')}/{m.get('kind')}", tuple(f"{a}/{k}" for a, k in MANIFEST_KINDS))
        check_dns_subdomain(c, f"{f}.metadata.name", (m.get("metadata") or {}).get("name") if isinstance(m.get("metadata"), dict) else None)
    scope = spec.get("workloadScope")
    if not isinstance(scope, dict):
        c.required("spec.workloadScope")
        return
    seen: set[str] = set()
    for i, t in enumerate(scope.get("targetNodeGroups") or []):
        f = f"spec.workloadScope.targetNodeGroups[{i}]"
        if not isinstance(t, dict):
            c.type_error(f, "an object", t)
            continue
        check_dns_subdomain(c, f"{f}.name", t.get("name"))
        if t.get("name") in seen:
            c.duplicate(f"{f}.name", t.get("name"))
        seen.add(str(t.get("name")))
        _check_overriders(c, f"{f}.overriders", t.get("overriders"))
