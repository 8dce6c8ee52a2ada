"""Schemas of KubeEdge's node groups API (``apps.kubeedge.io/v1alpha1``), as the API server
publishes a CRD's: ``NodeGroup`` (cluster-scoped: the nodes of a site, by name or labels, and
their status) and ``EdgeApplication`` (one application's manifests rolled out to several
node groups, with per-group overrides, and the status of each generated workload). The
manifests are free-form (``x-kubernetes-preserve-unknown-fields``), as in KubeEdge."""

from __future__ import annotations

from typing import Any

from edgebus.openapi.devices import LIST_META, META


def _s(description: str = "", **kw: Any) -> dict[str, Any]:
    return {**({"description": description} if description else {}), "type": "string", **kw}


def _i(description: str = "") -> dict[str, Any]:
    return {**({"description": description} if description else {}), "type": "integer", "format": "int64"}


def _b(description: str = "") -> dict[str, Any]:
    return {**({"description": description} if description else {}), "type": "boolean"}


def _obj(description: str, props: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"description": description, "type": "object", "properties": props, **kw}


def _free(description: str) -> dict[str, Any]:
    return {"description": description, "type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _arr(description: str, items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"description": description, "type": "array", "items": items, **kw}

GROUP = "apps.kubeedge.io"
VERSION = "v1alpha1"
PREFIX = "io.kubeedge.apps.v1alpha1."
K8S = "#/definitions/io.k8s.api.core.v1."

_TYPE_META = {
    "apiVersion": _s("APIVersion defines the versioned schema of this representation of an object."),
    "kind": _s("Kind is a string value representing the REST resource this object represents."),
}


def _ref(name: str, description: str = "") -> dict[str, Any]:
    return {"$ref": f"#/definitions/{PREFIX}{name}", **({"description": description} if description else {})}


def _cmd_overrider(what: str) -> dict[str, Any]:
    return _obj(
        f"Overrides the {what} of one container.",
        {
            "containerName": _s("Required: the container."),
            "operator": _s("Required: add (append the values) or remove (delete the matching items).", enum=["add", "remove"]),
            "value": _arr("The items.", _s()),
        },
        required=["containerName", "operator"],
    )


def definitions() -> dict[str, Any]:
    gvk = lambda kind: [{"group": GROUP, "version": VERSION, "kind": kind}]  # noqa: E731
    overriders = _obj(
        "What changes in the workload for one node group.",
        {
            "replicas": _i("The replicas of the Deployment in this group."),
            "imageOverriders": _arr(
                "Image changes.",
                _obj(
                    "Changes one component of the image ([registry/]repository[:tag]).",
                    {
                        "predicate": _obj("Only the image at this path (e.g. /spec/template/spec/containers/0/image).", {"path": _s("Required.")}, required=["path"]),
                        "component": _s("Required: the component.", enum=["Registry", "Repository", "Tag"]),
                        "operator": _s("Required: add (append), remove, replace.", enum=["add", "remove", "replace"]),
                        "value": _s("The value for add and replace."),
                    },
                    required=["component", "operator"],
                ),
            ),
            "envOverriders": _arr(
                "Environment changes.",
                _obj(
                    "Adds, removes or replaces environment variables of one container.",
                    {
                        "containerName": _s("Required: the container."),
                        "operator": _s("Required: add, remove, replace.", enum=["add", "remove", "replace"]),
                        "value": _arr("The variables (for remove only the names count).", {"$ref": K8S + "EnvVar"}),
                    },
                    required=["containerName", "operator"],
                ),
            ),
            "commandOverriders": _arr("Command changes.", _cmd_overrider("command")),
            "argsOverriders": _arr("Argument changes.", _cmd_overrider("args")),
            "resourcesOverriders": _arr(
                "Resource changes.",
                _obj("Sets the resources of one container.", {"containerName": _s("Required: the container."), "value": {"$ref": K8S + "ResourceRequirements"}}, required=["containerName", "value"]),
            ),
        },
    )
    return {
        PREFIX + "NodeGroup": _obj(
            "NodeGroup is a group of nodes (a site): members by name or by labels; each member gets the label apps.kubeedge.io/belonging-to.",
            {
                **_TYPE_META,
                "metadata": {"$ref": META, "description": "Standard object's metadata."},
                "spec": _obj(
                    "The members.",
                    {
                        "nodes": _arr("Nodes by name.", _s()),
                        "matchLabels": {"description": "Nodes whose labels match.", "type": "object", "additionalProperties": _s()},
                        "topologyEnabled": _b("Services of this group's pods route within the group."),
                    },
                ),
                "status": _obj(
                    "The members' state.",
                    {
                        "nodeStatuses": _arr(
                            "One per member.",
                            _obj(
                                "A member node.",
                                {
                                    "nodeName": _s("The node."),
                                    "readyStatus": _s("Ready, NotReady or Unknown."),
                                    "selectionStatus": _s("Succeeded or Failed."),
                                    "selectionStatusReason": _s("Why the selection failed."),
                                },
                                required=["nodeName", "readyStatus", "selectionStatus"],
                            ),
                        )
                    },
                ),
            },
            **{"x-kubernetes-group-version-kind": gvk("NodeGroup")},
        ),
        PREFIX + "NodeGroupList": _obj(
            "NodeGroupList contains a list of NodeGroup",
            {**_TYPE_META, "metadata": {"$ref": LIST_META}, "items": _arr("", _ref("NodeGroup"))},
            required=["items"],
            **{"x-kubernetes-group-version-kind": gvk("NodeGroupList")},
        ),
        PREFIX + "EdgeApplication": _obj(
            "EdgeApplication rolls one application out to several node groups, with overrides per group.",
            {
                **_TYPE_META,
                "metadata": {"$ref": META, "description": "Standard object's metadata."},
                "spec": _obj(
                    "The application and where it runs.",
                    {
                        "workloadTemplate": _obj("The manifests.", {"manifests": _arr("The workloads (apps/v1 Deployments).", _free("A manifest."))}),
                        "workloadScope": _obj(
                            "Where the workloads run.",
                            {
                                "targetNodeGroups": _arr(
                                    "The node groups, each with its overrides.",
                                    _obj("A node group.", {"name": _s("Required: the NodeGroup."), "overriders": overriders}, required=["name"]),
                                )
                            },
                        ),
                    },
                ),
                "status": _obj(
                    "The generated workloads' state.",
                    {
                        "workloadStatus": _arr(
                            "One per generated workload.",
                            _obj(
                                "A workload and its condition.",
                                {
                                    "identifier": _obj(
                                        "The workload.",
                                        {"ordinal": _i("Its manifest's index."), "group": _s(), "version": _s(), "kind": _s(), "resource": _s(), "namespace": _s(), "name": _s()},
                                    ),
                                    "conditions": _s("Processing or Available."),
                                },
                            ),
                        )
                    },
                ),
            },
            **{"x-kubernetes-group-version-kind": gvk("EdgeApplication")},
        ),
        PREFIX + "EdgeApplicationList": _obj(
            "EdgeApplicationList contains a list of EdgeApplication",
            {**_TYPE_META, "metadata": {"$ref": LIST_META}, "items": _arr("", _ref("EdgeApplication"))},
            required=["items"],
            **{"x-kubernetes-group-version-kind": gvk("EdgeApplicationList")},
        ),
    }
