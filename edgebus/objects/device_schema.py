"""The structural schemas of ``devices.kubeedge.io`` (what KubeEdge's CRDs declare), and a
checker that applies one to an object the way the Kubernetes API server applies a CRD's
``openAPIV3Schema``. Pure data and pure functions.

The schemas follow KubeEdge's published CRDs field for field: ``Device``, ``DeviceModel``
and ``DeviceStatus`` in ``v1beta1`` (the storage version), ``Device`` and ``DeviceModel`` in
``v1alpha2``. edgebus adds ``Device.spec.rules`` (local rules) and declares the status it
writes (``status.twins``, ``state``, ...); KubeEdge's ``v1beta1`` Device status already keeps
unknown fields. The OpenAPI documents (:mod:`edgebus.openapi.devices`) are built from these,
so kubectl's validation, server-side field validation (unknown fields) and the checks below
agree.

:func:`check` reports what the API server reports for a CRD: wrong types
(``spec.properties[0].desired.value: Invalid value: "integer": ... must be of type string``),
values outside an ``enum``, missing ``required`` fields. Like the API server it drops
``null`` values of fields that are not ``nullable`` before validating.
"""

from __future__ import annotations

import math
from typing import Any

from edgebus.objects.checks import Causes

# -- building blocks ----------------------------------------------------------------------


def s(description: str = "", **kw: Any) -> dict[str, Any]:
    return {"type": "string", **({"description": description} if description else {}), **kw}


def i64(description: str = "", **kw: Any) -> dict[str, Any]:
    return {"type": "integer", "format": "int64", **({"description": description} if description else {}), **kw}


def i32(description: str = "") -> dict[str, Any]:
    return {"type": "integer", "format": "int32", **({"description": description} if description else {})}


def integer(description: str = "") -> dict[str, Any]:
    return {"type": "integer", **({"description": description} if description else {})}


def num(description: str = "") -> dict[str, Any]:
    return {"type": "number", **({"description": description} if description else {})}


def b(description: str = "") -> dict[str, Any]:
    return {"type": "boolean", **({"description": description} if description else {})}


def obj(description: str, props: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": props, **kw}


def free(description: str) -> dict[str, Any]:
    """An object whose content the API keeps as given (``x-kubernetes-preserve-unknown-fields``)."""
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


def arr(description: str, items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": items, **kw}


def string_map(description: str = "", **kw: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string"}, **({"description": description} if description else {}), **kw}


#: ``metadata`` (checked by the generic object validation, not here)
METADATA: dict[str, Any] = {"type": "object"}
ACCESS_MODES = ["ReadWrite", "ReadOnly"]
PROPERTY_TYPES = ["INT", "FLOAT", "DOUBLE", "STRING", "BOOLEAN", "BYTES", "STREAM"]
REGISTERS = ["CoilRegister", "DiscreteInputRegister", "InputRegister", "HoldingRegister"]


def _top(description: str, spec: dict[str, Any] | None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "apiVersion": s("APIVersion defines the versioned schema of this representation of an object."),
        "kind": s("Kind is a string value representing the REST resource this object represents."),
        "metadata": METADATA,
    }
    if spec is not None:
        props["spec"] = spec
    if status is not None:
        props["status"] = status
    return obj(description, props)


def _twin_value(description: str) -> dict[str, Any]:
    return obj(
        description,
        {"value": s("Required: The value for this property."), "metadata": string_map("Additional metadata like timestamp when the value was reported etc.")},
        required=["value"],
    )


def _model_ref() -> dict[str, Any]:
    return obj(
        "Required: DeviceModelRef is reference to the device model used as a template to create the device instance.",
        {"name": s("Name of the referent.", default="")},
        **{"x-kubernetes-map-type": "atomic"},
    )


# -- v1beta1 --------------------------------------------------------------------------------

_PUSH_METHOD = obj(
    "PushMethod represents the protocol used to push data, please ensure that the mapper can access the destination address.",
    {
        "http": obj("HTTP Push method configuration for http", {"hostName": s(), "port": i64(), "requestPath": s(), "timeout": i64()}),
        "mqtt": obj(
            "MQTT Push method configuration for mqtt",
            {
                "address": s("broker address, like mqtt://127.0.0.1:1883"),
                "topic": s("publish topic for mqtt"),
                "qos": i32("qos of mqtt publish param"),
                "retained": b("Is the message retained"),
            },
        ),
        "otel": obj("OTEL Push Method configuration for otel", {"endpointURL": s("the target endpoint URL the Exporter will connect to")}),
        "anomalyDetection": free("AnomalyDetection represents the method used to push data to anomaly detection service"),
        "dbMethod": obj(
            "DBMethod represents the method used to push data to database.",
            {
                "influxdb2": obj(
                    "method configuration for database",
                    {
                        "influxdb2ClientConfig": obj("Config of influx database", {"url": s(), "org": s(), "bucket": s()}),
                        "influxdb2DataConfig": obj("config of device data when push to influx database", {"measurement": s(), "tag": string_map(), "fieldKey": s()}),
                    },
                ),
                "redis": obj(
                    "redis",
                    {"redisClientConfig": obj("RedisClientConfig of redis database", {"addr": s(), "db": integer(), "poolsize": integer(), "minIdleConns": integer()})},
                ),
                "TDEngine": obj("tdengine", {"TDEngineClientConfig": obj("tdengineClientConfig of tdengine database", {"addr": s(), "dbName": s()})}),
                "mysql": obj("mysql", {"mysqlClientConfig": obj("mysql", {"addr": s(), "database": s(), "userName": s()})}),
            },
        ),
    },
)

_VISITOR = obj(
    "Visitors are intended to be consumed by device mappers which connect to devices and collect data / perform actions on the device.",
    {"protocolName": s("Required: name of customized protocol"), "configData": free("Required: The configData of customized protocol")},
)

_RULE = obj(
    "A local rule (edgebus): evaluated on the edge, also while the node is offline.",
    {
        "name": s("Required: the rule's name, unique in the device."),
        "when": s("Required: '<property> <op> <literal>', op one of > >= < <= == !=."),
        "set": {"type": "object", "description": "Desired values to set when the condition becomes true.", "additionalProperties": {"type": "string"}},
    },
)

_STATUS_TWIN = obj(
    "The reported value of a property, and the desired value the edge acts on.",
    {
        "propertyName": s("Required: The property name for which the desired/reported values are specified."),
        "reported": _twin_value("Required: the reported property value."),
        "observedDesired": _twin_value("The desired value the mapper has received in the current cycle (with its source: cloud, edge, rule:<name>)."),
    },
)

DEVICE_V1BETA1 = _top(
    "Device is the Schema for the devices API",
    obj(
        "DeviceSpec represents a single device instance.",
        {
            "deviceModelRef": _model_ref(),
            "nodeName": s("NodeName is a request to schedule this device onto a specific node."),
            "properties": arr(
                "List of properties which describe the device properties. properties list item must be unique by properties.Name.",
                obj(
                    "DeviceProperty describes the specifics all the properties of the device.",
                    {
                        "name": s("Required: The device property name to be accessed. It must be unique."),
                        "desired": _twin_value("The desired property value."),
                        "visitors": _VISITOR,
                        "reportCycle": i64("Define how frequent mapper will report the value."),
                        "collectCycle": i64("Define how frequent mapper will collect from device."),
                        "reportToCloud": b("whether be reported to the cloud"),
                        "pushMethod": _PUSH_METHOD,
                    },
                ),
            ),
            "methods": arr(
                "List of methods of device. methods list item must be unique by method.Name.",
                obj(
                    "DeviceMethod describes the specifics all the methods of the device.",
                    {"name": s("Required: The device method name to be accessed. It must be unique."), "description": s(), "propertyNames": arr("", s())},
                ),
            ),
            "protocol": obj(
                "Required: The protocol configuration used to connect to the device.",
                {"protocolName": s("Unique protocol name. Required."), "configData": free("Any config data")},
            ),
            "stateReport": obj("StateReport represents the configuration of state reporting for a device.", {"reportCycle": i64(), "reportToCloud": b()}),
            "rules": arr("Local rules (edgebus).", _RULE),
        },
    ),
    {
        **obj(
            "DeviceStatus (edgebus keeps the twins here too, for clients of KubeEdge 1.22 and older; DeviceStatus is the 1.23 resource).",
            {
                "reportCycle": i64("Optional: Define how frequent mapper will report the device status."),
                "reportToCloud": b("Optional: whether be reported to the cloud"),
                "state": s("online, offline, unhealthy, unknown (or what the mapper reported, e.g. ok)."),
                "stateReason": s("Why the device is not online (edgebus)."),
                "stateTimestamp": s("Edge time of the state, Unix ms (edgebus)."),
                "lastOnlineTime": s("When the device was last online."),
                "twins": arr("The device's twins.", _STATUS_TWIN),
            },
        ),
        "x-kubernetes-preserve-unknown-fields": True,
    },
)

DEVICEMODEL_V1BETA1 = _top(
    "DeviceModel is the Schema for the device model API",
    obj(
        "DeviceModelSpec defines the model for a device.",
        {
            "properties": arr(
                "Required: List of device properties.",
                obj(
                    "ModelProperty describes an individual device property / attribute like temperature / humidity etc.",
                    {
                        "name": s("Required: The device property name."),
                        "description": s("The device property description."),
                        "type": s("Required: Type of device property.", enum=PROPERTY_TYPES),
                        "accessMode": s("Required: Access mode of property, ReadWrite or ReadOnly.", enum=ACCESS_MODES),
                        "minimum": s(),
                        "maximum": s(),
                        "unit": s("The unit of the property"),
                        "visitors": {**_VISITOR, "description": "Note: It can be overridden in the device instance"},
                    },
                ),
            ),
            "protocol": s("Required: Protocol name used by the device."),
            "protocolConfigData": free("Optional: Any config data. It can be overridden in the device instance."),
        },
    ),
)

DEVICESTATUS_V1BETA1 = _top(
    "DeviceStatus is the Schema for the device status API (KubeEdge 1.23): the twins and state of one Device, of the same name.",
    {"type": "object", "description": "DeviceStatusSpec is empty: the Device is the one of the same name."},
    obj(
        "DeviceStatusStatus reports the device state and the desired/reported values of twin attributes.",
        {
            "twins": arr("A list of device twins containing desired/reported desired/reported values of twin properties.", _STATUS_TWIN),
            "state": s("Optional: The state of the device."),
            "lastOnlineTime": s("Optional: The last time the device was online."),
            "extensions": free("Optional: Extensions can be used to add more status information."),
        },
    ),
)

# -- v1alpha2 -------------------------------------------------------------------------------


def _typed(description: str, value: dict[str, Any] | None, *, ranged: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"accessMode": s("Required: Access mode of property, ReadWrite or ReadOnly.", enum=ACCESS_MODES)}
    if value is not None:
        props["defaultValue"] = value
    if ranged:
        props["minimum"] = dict(value or {})
        props["maximum"] = dict(value or {})
        props["unit"] = s("The unit of the property")
    return obj(description, props)


DEVICEMODEL_V1ALPHA2 = _top(
    "DeviceModel is the Schema for the device model API",
    obj(
        "DeviceModelSpec defines the model / template for a device.",
        {
            "properties": arr(
                "Required: List of device properties.",
                obj(
                    "DeviceProperty describes an individual device property / attribute like temperature / humidity etc.",
                    {
                        "name": s("Required: The device property name."),
                        "description": s("The device property description."),
                        "type": obj(
                            "Required: PropertyType represents the type and data validation of the property.",
                            {
                                "int": _typed("int", i64(), ranged=True),
                                "string": _typed("string", s()),
                                "double": _typed("double", num(), ranged=True),
                                "float": _typed("float", num(), ranged=True),
                                "boolean": _typed("boolean", b()),
                                "bytes": _typed("bytes", None),
                            },
                        ),
                    },
                ),
            ),
            "protocol": s("Required for DMI: Protocol name used by the device."),
        },
    ),
)

_SELECTOR_REQ = obj(
    "A node selector requirement.",
    {"key": s("The label key that the selector applies to."), "operator": s("In, NotIn, Exists, DoesNotExist, Gt, Lt."), "values": arr("", s(), **{"x-kubernetes-list-type": "atomic"})},
    required=["key", "operator"],
)

_COM = obj(
    "Serial port configuration.",
    {
        "serialPort": s("Required."),
        "baudRate": i64("Required. BaudRate", enum=[115200, 57600, 38400, 19200, 9600, 4800, 2400, 1800, 1200, 600, 300, 200, 150, 134, 110, 75, 50]),
        "dataBits": i64("Required. Valid values are 8, 7, 6, 5.", enum=[8, 7, 6, 5]),
        "parity": s('Required. Valid options are "none", "even", "odd".', enum=["none", "even", "odd"]),
        "stopBits": i64("Required. Bit that stops 1|2", enum=[1, 2]),
    },
)

DEVICE_V1ALPHA2 = _top(
    "Device is the Schema for the devices API",
    obj(
        "DeviceSpec represents a single device instance. It is an instantiation of a device model.",
        {
            "deviceModelRef": _model_ref(),
            "protocol": obj(
                "Required: The protocol configuration used to connect to the device.",
                {
                    "opcua": obj(
                        "Protocol configuration for opc-ua",
                        {
                            "url": s("Required: The URL for opc server endpoint."),
                            "userName": s(),
                            "password": s(),
                            "securityPolicy": s(),
                            "securityMode": s(),
                            "certificate": s(),
                            "privateKey": s(),
                            "timeout": i64(),
                        },
                    ),
                    "modbus": obj("Protocol configuration for modbus", {"slaveID": i64("Required. 0-255")}),
                    "bluetooth": obj("Protocol configuration for bluetooth", {"macAddress": s()}),
                    "common": obj(
                        "Configuration for protocol common part",
                        {
                            "com": _COM,
                            "tcp": obj("TCP configuration.", {"ip": s("Required."), "port": i64("Required.")}),
                            "commType": s("Communication type, like tcp client, tcp server or COM"),
                            "reconnTimeout": i64(),
                            "reconnRetryTimes": i64(),
                            "collectTimeout": i64(),
                            "collectRetryTimes": i64(),
                            "collectType": s("Define collect type, sync or async.", enum=["sync", "async"]),
                            "customizedValues": free("Customized values for provided protocol"),
                        },
                    ),
                    "customizedProtocol": obj("Configuration for customized protocol", {"protocolName": s(), "configData": free("Any config data")}),
                },
            ),
            "propertyVisitors": arr(
                "List of property visitors which describe how to access the device properties.",
                obj(
                    "DevicePropertyVisitor describes the specifics of accessing a particular device property.",
                    {
                        "propertyName": s("Required: The device property name to be accessed."),
                        "reportCycle": i64(),
                        "collectCycle": i64(),
                        "customizedValues": free("Customized values for visitor of provided protocols"),
                        "opcua": obj("opc-ua visitor", {"nodeID": s("Required: The ID of opc-ua node"), "browseName": s()}),
                        "modbus": obj(
                            "modbus visitor",
                            {
                                "register": s("Required: Type of register", enum=REGISTERS),
                                "offset": i64("Required: Offset indicates the starting register number to read/write data."),
                                "limit": i64("Required: Limit number of registers to read/write."),
                                "scale": num("The scale to convert raw property data into final units."),
                                "isSwap": b("Indicates whether the high and low byte swapped."),
                                "isRegisterSwap": b("Indicates whether the high and low register swapped."),
                            },
                        ),
                        "bluetooth": obj(
                            "bluetooth visitor",
                            {
                                "characteristicUUID": s(),
                                "dataWrite": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                                "dataConverter": obj(
                                    "",
                                    {
                                        "startIndex": integer(),
                                        "endIndex": integer(),
                                        "shiftLeft": integer(),
                                        "shiftRight": integer(),
                                        "orderOfOperations": arr("", obj("", {"operationType": s(), "operationValue": num()})),
                                    },
                                ),
                            },
                        ),
                        "customizedProtocol": obj("customized protocol visitor", {"protocolName": s(), "configData": free("")}),
                    },
                ),
            ),
            "data": obj(
                "Data section describe a list of time-series properties which should be processed on edge node.",
                {
                    "dataProperties": arr("", obj("DataProperty represents the device property for external use.", {"propertyName": s(), "metadata": string_map()})),
                    "dataTopic": s("Topic used by mapper, default $ke/events/device/+/data/update"),
                },
            ),
            "nodeSelector": obj(
                "NodeSelector indicates the binding preferences between devices and nodes.",
                {
                    "nodeSelectorTerms": arr(
                        "Required. A list of node selector terms. The terms are ORed.",
                        obj(
                            "",
                            {"matchExpressions": arr("", _SELECTOR_REQ, **{"x-kubernetes-list-type": "atomic"}), "matchFields": arr("", _SELECTOR_REQ, **{"x-kubernetes-list-type": "atomic"})},
                            **{"x-kubernetes-map-type": "atomic"},
                        ),
                        **{"x-kubernetes-list-type": "atomic"},
                    )
                },
                required=["nodeSelectorTerms"],
                **{"x-kubernetes-map-type": "atomic"},
            ),
        },
    ),
    obj(
        "DeviceStatus reports the device state and the desired/reported values of twin attributes.",
        {
            "twins": arr(
                "A list of device twins containing desired/reported values of twin properties.",
                obj("Twin", {"propertyName": s(), "desired": _twin_value("Required: the desired property value."), "reported": _twin_value("Required: the reported property value.")}),
            )
        },
    ),
)

#: (version, kind) -> schema
SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("v1beta1", "Device"): DEVICE_V1BETA1,
    ("v1beta1", "DeviceModel"): DEVICEMODEL_V1BETA1,
    ("v1beta1", "DeviceStatus"): DEVICESTATUS_V1BETA1,
    ("v1alpha2", "Device"): DEVICE_V1ALPHA2,
    ("v1alpha2", "DeviceModel"): DEVICEMODEL_V1ALPHA2,
}

# -- checking ---------------------------------------------------------------------------

_INT_RANGE = {"int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}


def _go_type(v: Any) -> str:
    """The JSON type name the API server quotes (``"integer"``, ``"string"``, ...)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _type_ok(want: str, v: Any) -> bool:
    got = _go_type(v)
    if want == "number":
        return got in ("integer", "number")
    return got == want


def check(c: Causes, schema: dict[str, Any], value: Any, path: str = "") -> None:
    """Check ``value`` against ``schema``, adding a cause per problem (Kubernetes wording).

    ``null`` values of object fields are removed first (the API server prunes them), so the
    stored object never holds them."""
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        for k in [k for k, v in value.items() if v is None and not (schema["properties"].get(k) or {}).get("nullable")]:
            del value[k]
    want = schema.get("type")
    if want and not _type_ok(want, value):
        got = _go_type(value)
        c.add(path, "FieldValueTypeInvalid", f'Invalid value: "{got}": {path} in body must be of type {want}: "{got}"')
        return
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        opts = ", ".join(_show(e) for e in enum)
        c.add(path, "FieldValueNotSupported", f"Unsupported value: {_show(value)}: supported values: {opts}")
    fmt = schema.get("format")
    if want == "integer" and fmt in _INT_RANGE:
        lo, hi = _INT_RANGE[fmt]
        iv = int(value) if not isinstance(value, float) or math.isfinite(value) else 0
        if not lo <= iv <= hi:
            c.add(path, "FieldValueInvalid", f"Invalid value: {_show(value)}: {path} in body should be within the {fmt} range")
    if isinstance(value, dict):
        for r in schema.get("required") or []:
            if r not in value:
                c.add(f"{path}.{r}" if path else r, "FieldValueRequired", "Required value")
        if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
            return
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k) if isinstance(props, dict) else None
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is not None:
                check(c, sub, v, f"{path}.{k}" if path else k)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, v in enumerate(value):
            check(c, schema["items"], v, f"{path}[{n}]")


def check_kind(c: Causes, version: str, kind: str, obj: dict[str, Any]) -> None:
    """Check the parts of ``obj`` below ``metadata`` against its kind's schema."""
    schema = SCHEMAS.get((version, kind))
    if schema is None:
        return
    for key in ("spec", "status"):
        sub = schema["properties"].get(key)
        if key in obj and obj[key] is None:
            del obj[key]
        if sub is not None and key in obj:
            check(c, sub, obj[key], key)
