"""Device and DeviceModel objects <-> DMI messages, as KubeEdge's edge converts them. Pure.

* ``configData`` values (protocol and visitors) travel as ``google.protobuf.Any`` holding a
  wrapper: strings as ``StringValue``, booleans ``BoolValue``, integers ``Int64Value``,
  other numbers ``FloatValue`` (what KubeEdge sends; the mapper-framework decodes those and
  ``Int32Value``). KubeEdge cannot send nested maps or lists and drops the device; edgebus
  sends them as a ``StringValue`` holding their JSON.
* Every property carries ``desired`` and ``visitors`` (possibly empty): the
  mapper-framework reads both without checking.
* The desired value of a property is the one the edge acts on (the cloud's, an edge
  application's or a local rule's), with ``metadata.timestamp`` and ``metadata.type``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import any_pb2, wrappers_pb2

from edgebus.dmi.v1beta1 import api_pb2 as pb
from edgebus.objects.shapes import as_dict


def to_any(v: Any) -> any_pb2.Any:
    a = any_pb2.Any()
    if isinstance(v, bool):
        a.Pack(wrappers_pb2.BoolValue(value=v))
    elif isinstance(v, int) and -(1 << 63) <= v < (1 << 63):
        a.Pack(wrappers_pb2.Int64Value(value=v))
    elif isinstance(v, float) and math.isfinite(v):
        a.Pack(wrappers_pb2.FloatValue(value=v))
    elif isinstance(v, str):
        a.Pack(wrappers_pb2.StringValue(value=v))
    else:
        a.Pack(wrappers_pb2.StringValue(value=json.dumps(v, separators=(",", ":"))))
    return a


_WRAPPERS = {
    "google.protobuf.StringValue": wrappers_pb2.StringValue,
    "google.protobuf.BoolValue": wrappers_pb2.BoolValue,
    "google.protobuf.Int32Value": wrappers_pb2.Int32Value,
    "google.protobuf.Int64Value": wrappers_pb2.Int64Value,
    "google.protobuf.UInt32Value": wrappers_pb2.UInt32Value,
    "google.protobuf.UInt64Value": wrappers_pb2.UInt64Value,
    "google.protobuf.FloatValue": wrappers_pb2.FloatValue,
    "google.protobuf.DoubleValue": wrappers_pb2.DoubleValue,
}


def from_any(a: any_pb2.Any) -> Any:
    """The value of a wrapper in an ``Any`` (None for anything else)."""
    cls = _WRAPPERS.get(a.type_url.rsplit("/", 1)[-1])
    if cls is None:
        return None
    w = cls()
    w.ParseFromString(a.value)
    return w.value


def customized(data: Any) -> pb.CustomizedValue:
    cv = pb.CustomizedValue()
    for k, v in (data or {}).items() if isinstance(data, dict) else []:
        if v is not None:
            cv.data[str(k)].CopyFrom(to_any(v))
    return cv


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def push_method(pm: Any) -> pb.PushMethod | None:
    if not isinstance(pm, dict) or not pm:
        return None
    out = pb.PushMethod()
    h = pm.get("http")
    if isinstance(h, dict):
        out.http.CopyFrom(pb.PushMethodHTTP(hostname=_s(h.get("hostName")), port=_int(h.get("port")), requestpath=_s(h.get("requestPath")), timeout=_int(h.get("timeout"))))
    m = pm.get("mqtt")
    if isinstance(m, dict):
        out.mqtt.CopyFrom(pb.PushMethodMQTT(address=_s(m.get("address")), topic=_s(m.get("topic")), qos=_int(m.get("qos")), retained=m.get("retained") is True))
    o = pm.get("otel")
    if isinstance(o, dict):
        out.otel.CopyFrom(pb.PushMethodOTEL(endpointURL=_s(o.get("endpointURL"))))
    ad = pm.get("anomalyDetection")
    if isinstance(ad, dict):
        out.anomalyDetection.CopyFrom(pb.AnomalyDetection(data=customized(ad).data))
    db = pm.get("dbMethod")
    if isinstance(db, dict):
        dbm = pb.DBMethod()
        i = db.get("influxdb2")
        if isinstance(i, dict):
            cc, dc = i.get("influxdb2ClientConfig") or {}, i.get("influxdb2DataConfig") or {}
            dbm.influxdb2.CopyFrom(
                pb.DBMethodInfluxdb2(
                    influxdb2ClientConfig=pb.Influxdb2ClientConfig(url=_s(cc.get("url")), org=_s(cc.get("org")), bucket=_s(cc.get("bucket"))),
                    influxdb2DataConfig=pb.Influxdb2DataConfig(measurement=_s(dc.get("measurement")), tag={str(k): _s(v) for k, v in (dc.get("tag") or {}).items()}, fieldKey=_s(dc.get("fieldKey"))),
                )
            )
        r = db.get("redis")
        if isinstance(r, dict):
            rc = r.get("redisClientConfig") or {}
            dbm.redis.CopyFrom(pb.DBMethodRedis(redisClientConfig=pb.RedisClientConfig(addr=_s(rc.get("addr")), db=_int(rc.get("db")), poolsize=_int(rc.get("poolsize")), minIdleConns=_int(rc.get("minIdleConns")))))
        t = db.get("TDEngine")
        if isinstance(t, dict):
            tc = t.get("TDEngineClientConfig") or {}
            dbm.tdengine.CopyFrom(pb.DBMethodTDEngine(tdEngineClientConfig=pb.TDEngineClientConfig(addr=_s(tc.get("addr")), dbname=_s(tc.get("dbName")))))
        my = db.get("mysql")
        if isinstance(my, dict):
            mc = my.get("mysqlClientConfig") or {}
            dbm.mysql.CopyFrom(pb.DBMethodMySQL(mysqlClientConfig=pb.MySQLClientConfig(addr=_s(mc.get("addr")), database=_s(mc.get("database")), userName=_s(mc.get("userName")))))
        out.dbMethod.CopyFrom(dbm)
    return out


def device(obj: dict[str, Any], desired: dict[str, tuple[str, int]] | None = None, types: dict[str, str] | None = None) -> pb.Device:
    """The DMI Device of a Device object (its model's defaults already applied).

    ``desired``: per property the desired value the edge acts on and its time (ms);
    ``types``: per property the value type (``metadata.type``)."""
    md = obj.get("metadata") or {}
    spec = as_dict(obj.get("spec"))
    proto = as_dict(spec.get("protocol"))
    out = pb.Device(name=_s(md.get("name")), namespace=_s(md.get("namespace") or "default"))
    out.spec.deviceModelReference = _s((spec.get("deviceModelRef") or {}).get("name"))
    out.spec.protocol.CopyFrom(pb.ProtocolConfig(protocolName=_s(proto.get("protocolName")), configData=customized(proto.get("configData"))))
    for p in spec.get("properties") or []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        name = p["name"]
        vis = as_dict(p.get("visitors"))
        dp = pb.DeviceProperty(
            name=name,
            visitors=pb.VisitorConfig(protocolName=_s(vis.get("protocolName") or proto.get("protocolName")), configData=customized(vis.get("configData"))),
            reportCycle=_int(p.get("reportCycle")),
            collectCycle=_int(p.get("collectCycle")),
            reportToCloud=p.get("reportToCloud") is True,
        )
        value, ts = (desired or {}).get(name, ("", 0))
        dmd = {"type": (types or {}).get(name, "")}
        if ts:
            dmd["timestamp"] = str(ts)
        dp.desired.CopyFrom(pb.TwinProperty(value=value, metadata={k: v for k, v in dmd.items() if v}))
        pm = push_method(p.get("pushMethod"))
        if pm is not None:
            dp.pushMethod.CopyFrom(pm)
        out.spec.properties.append(dp)
    for m in spec.get("methods") or []:
        if isinstance(m, dict):
            out.spec.methods.append(pb.DeviceMethod(name=_s(m.get("name")), description=_s(m.get("description")), propertyNames=[_s(x) for x in m.get("propertyNames") or []]))
    sr = spec.get("stateReport") if isinstance(spec.get("stateReport"), dict) else None
    if sr is not None:
        out.status.CopyFrom(pb.DeviceStatus(reportCycle=_int(sr.get("reportCycle")), reportToCloud=sr.get("reportToCloud") is True))
    else:
        out.status.CopyFrom(pb.DeviceStatus())
    return out


def model(obj: dict[str, Any]) -> pb.DeviceModel:
    md = obj.get("metadata") or {}
    spec = as_dict(obj.get("spec"))
    out = pb.DeviceModel(name=_s(md.get("name")), namespace=_s(md.get("namespace") or "default"))
    for p in spec.get("properties") or []:
        if isinstance(p, dict):
            out.spec.properties.append(
                pb.ModelProperty(
                    name=_s(p.get("name")),
                    description=_s(p.get("description")),
                    type=_s(p.get("type")),
                    accessMode=_s(p.get("accessMode")),
                    minimum=_s(p.get("minimum")),
                    maximum=_s(p.get("maximum")),
                    unit=_s(p.get("unit")),
                )
            )
    return out
