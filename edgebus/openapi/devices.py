"""Schemas of the devices API group (``devices.kubeedge.io/v1beta1``), as the API server
publishes a CRD's: KubeEdge's ``Device`` and ``DeviceModel`` (its v1beta1 CRDs) plus
edgebus's additions (``spec.rules``; ``status`` with twins and state, see docs/devices.md).

Protocol and visitor ``configData`` are free-form (``x-kubernetes-preserve-unknown-fields``),
as in KubeEdge: each mapper defines its own.
"""

from __future__ import annotations

from typing import Any

GROUP = "devices.kubeedge.io"
VERSION = "v1beta1"
PREFIX = "io.kubeedge.devices.v1beta1."
META = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"


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


def _ref(name: str, description: str = "") -> dict[str, Any]:
    return {"$ref": f"#/definitions/{PREFIX}{name}", **({"description": description} if description else {})}


_TYPE_META = {
    "apiVersion": _s("APIVersion defines the versioned schema of this representation of an object."),
    "kind": _s("Kind is a string value representing the REST resource this object represents."),
}

_VALUE = _obj(
    "A property value and its metadata.",
    {
        "value": _s("Required: The value for this property (a string, as in KubeEdge)."),
        "metadata": {"description": "Additional metadata like the timestamp when the value was reported, its type, its source.", "type": "object", "additionalProperties": {"type": "string"}},
    },
)


def definitions() -> dict[str, Any]:
    """The group's definitions, keyed by definition name."""
    gvk = lambda kind: [{"group": GROUP, "version": VERSION, "kind": kind}]  # noqa: E731
    model_property = _obj(
        "ModelProperty describes an individual device property / attribute like temperature / humidity etc.",
        {
            "name": _s("Required: The device property name."),
            "description": _s("The device property description."),
            "type": _s("Required: Type of device property.", enum=["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"]),
            "accessMode": _s("Required: Access mode of property, ReadWrite or ReadOnly.", enum=["ReadWrite", "ReadOnly"]),
            "minimum": _s("The minimum value (numeric types)."),
            "maximum": _s("The maximum value (numeric types)."),
            "unit": _s("The unit of the property"),
        },
    )
    device_property = _obj(
        "DeviceProperty describes the specifics of a property of the device.",
        {
            "name": _s("Required: The device property name to be accessed. It must be unique."),
            "desired": {**_VALUE, "description": "The desired property value."},
            "visitors": _obj(
                "How a mapper reaches the property on the device.",
                {
                    "protocolName": _s("Required: name of the protocol."),
                    "configData": _free("Required: the protocol's visitor configuration (Modbus: register, offset, limit, dataType, scale, isSwap, isRegisterSwap; OPC-UA: nodeID)."),
                },
            ),
            "reportCycle": _i("Define how frequent mapper will report the value (ms)."),
            "collectCycle": _i("Define how frequent mapper will collect from device (ms)."),
            "reportToCloud": _b("whether be reported to the cloud"),
            "pushMethod": _free("PushMethod represents the protocol used to push data."),
        },
    )
    rule = _obj(
        "A local rule (edgebus): run on the edge, also while the node is offline.",
        {
            "name": _s("Required: the rule's name, unique in the device."),
            "when": _s("Required: '<property> <op> <literal>', op one of > >= < <= == !=."),
            "set": {"description": "Desired values to set when the condition becomes true.", "type": "object", "additionalProperties": _s()},
        },
    )
    twin = _obj(
        "The reported value of a property, and the desired value the edge acts on.",
        {
            "propertyName": _s("The property name."),
            "reported": {**_VALUE, "description": "The last value read from the device."},
            "observedDesired": {**_VALUE, "description": "The desired value the edge acts on, with its source (cloud, edge, rule:<name>)."},
        },
    )
    return {
        PREFIX + "DeviceModel": _obj(
            "DeviceModel is the Schema for the device model API",
            {
                **_TYPE_META,
                "metadata": {"$ref": META, "description": "Standard object's metadata."},
                "spec": _obj(
                    "DeviceModelSpec defines the model for a device.",
                    {
                        "protocol": _s("The protocol the devices of this model speak."),
                        "properties": _arr("Required: List of device properties.", model_property),
                    },
                ),
            },
            **{"x-kubernetes-group-version-kind": gvk("DeviceModel")},
        ),
        PREFIX + "DeviceModelList": _obj(
            "DeviceModelList contains a list of DeviceModel",
            {**_TYPE_META, "metadata": {"$ref": LIST_META}, "items": _arr("", _ref("DeviceModel"))},
            required=["items"],
            **{"x-kubernetes-group-version-kind": gvk("DeviceModelList")},
        ),
        PREFIX + "Device": _obj(
            "Device is the Schema for the devices API",
            {
                **_TYPE_META,
                "metadata": {"$ref": META, "description": "Standard object's metadata."},
                "spec": _obj(
                    "DeviceSpec represents a single device instance.",
                    {
                        "deviceModelRef": _obj("Required: the DeviceModel (same namespace).", {"name": _s("Name of the referent.")}, **{"x-kubernetes-map-type": "atomic"}),
                        "nodeName": _s("The edge node that runs the device."),
                        "protocol": _obj(
                            "Required: The protocol configuration used to connect to the device.",
                            {"protocolName": _s("Unique protocol name. Required."), "configData": _free("Any config data")},
                        ),
                        "properties": _arr("List of properties which describe the device properties.", device_property),
                        "methods": _arr(
                            "List of methods of device.",
                            _obj("DeviceMethod describes a method of the device.", {"name": _s(), "description": _s(), "propertyNames": _arr("", _s())}),
                        ),
                        "stateReport": _obj("The configuration of state reporting.", {"reportCycle": _i(), "reportToCloud": _b()}),
                        "rules": _arr("Local rules (edgebus).", rule),
                    },
                ),
                "status": _obj(
                    "DeviceStatus: the twins and the device state, reported by the edge.",
                    {
                        "state": _s("online, offline, unhealthy or unknown."),
                        "stateReason": _s("Why the device is not online."),
                        "stateTimestamp": _s("Edge time of the state (Unix ms)."),
                        "lastOnlineTime": _s("When the device was last online."),
                        "reportCycle": _i(),
                        "reportToCloud": _b(),
                        "twins": _arr("The device's twins.", twin),
                    },
                    **{"x-kubernetes-preserve-unknown-fields": True},
                ),
            },
            **{"x-kubernetes-group-version-kind": gvk("Device")},
        ),
        PREFIX + "DeviceList": _obj(
            "DeviceList contains a list of Device",
            {**_TYPE_META, "metadata": {"$ref": LIST_META}, "items": _arr("", _ref("Device"))},
            required=["items"],
            **{"x-kubernetes-group-version-kind": gvk("DeviceList")},
        ),
    }
