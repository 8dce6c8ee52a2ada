"""Who may publish and subscribe to what: the permissions of each role, as nats-server enforces them.

Roles on the cloud's servers (account ``EDGEBUS``):

* **cloud service** / **admin** — the whole account.
* **node** — a node's leaf connection. Its permissions are a *template* on the account's
  scoped signing key for nodes (``{{name()}}`` is the node's subject token, the name in its
  user JWT), so a node's JWT carries no permissions of its own and every node gets the same
  rules, each confined to its own subjects. nats-server applies them on the hub (a leaf that
  publishes outside them is disconnected; deliveries outside them are never sent) and tells
  the node's own server, which filters before sending.

Roles on a node's own server (account ``EDGE``): the node's services (the whole account),
and mappers/devices (KubeEdge's ``$hw`` topics only; MQTT clients included).
"""

from __future__ import annotations

from typing import Any

from edgebus import names

#: the template variable nats-server replaces with the user JWT's name (the node token)
NODE = names.TEMPLATE_NODE


#: in a site server's credential: every member node's token (its JWT lists them as tags)
SITE_MEMBER = names.TEMPLATE_MEMBER


def site_template(cloud_domain: str = names.CLOUD_DOMAIN) -> dict[str, Any]:
    """A site server's uplink (edge federation): what each of its member nodes may do,
    expanded once per ``node:<token>`` tag of its JWT, plus the site's own JetStream domain.
    The site server itself enforces each node's own permissions on the node's link to it."""
    t = node_template(cloud_domain, SITE_MEMBER)
    t["sub"]["allow"].append(f"{names.js_api_prefix(NODE)}.>")
    return t


def node_template(cloud_domain: str = names.CLOUD_DOMAIN, node: str = names.TEMPLATE_NODE) -> dict[str, Any]:
    """The permissions of every node's leaf connection on the hub (a scoped-signer template)."""
    NODE = node
    js = names.js_api_prefix(cloud_domain)
    images = names.kv_stream(names.BUCKET_IMAGES).replace("KV_", "OBJ_")
    pub = [
        names.up_filter(NODE),  # the outbox, forwarded (JetStream publish into EDGEBUS_UP)
        names.hub_node_filter(NODE),  # requests to cloudhub about itself (credential renewal)
        names.api_node_subject(NODE),  # the metaserver's writes, as this node
        names.reply_filter(NODE),  # answers and streams to the cloud's requests addressed to it
        names.mesh_from_filter(NODE),  # edgemesh tunnels it opens and the frames it sends
        f"{js}.INFO",  # the link probe
        # its desired state: pulls from its own durable consumer, their acknowledgements, and
        # the consumer's creation when the cloud did not make it at join (once per node)
        f"{js}.CONSUMER.MSG.NEXT.{names.STREAM_DOWN}.{names.down_consumer(NODE)}",
        f"$JS.ACK.{names.STREAM_DOWN}.{names.down_consumer(NODE)}.>",
        f"$JS.ACK.*.*.{names.STREAM_DOWN}.{names.down_consumer(NODE)}.>",
        f"{js}.CONSUMER.INFO.{names.STREAM_DOWN}.{names.down_consumer(NODE)}",
        f"{js}.CONSUMER.CREATE.{names.STREAM_DOWN}.{names.down_consumer(NODE)}.{names.down_filter(NODE)}",
        f"{js}.DIRECT.GET.{names.STREAM_UP}.{names.up_filter(NODE)}",  # where forwarding resumes
        # image archives (cluster-wide, content-addressed): read-only access to the object store
        f"{js}.STREAM.INFO.{images}",
        f"{js}.STREAM.NAMES",  # (the client looks the stream up by subject; names only)
        f"{js}.STREAM.MSG.GET.{images}",
        f"{js}.DIRECT.GET.{images}.>",
        f"{js}.CONSUMER.CREATE.{images}",
        f"{js}.CONSUMER.CREATE.{images}.>",
        f"{js}.CONSUMER.DELETE.{images}.>",
    ]
    sub = [
        names.node_filter(NODE),  # requests addressed to its services
        names.inbox_filter(NODE),  # replies to its own requests (its clients' inbox prefix)
        names.mesh_to_filter(NODE),  # tunnels and frames addressed to it
        f"{names.js_api_prefix(NODE)}.>",  # the cloud reaching its JetStream domain (inspection)

    ]
    # leaf connections only: the credential cannot be used by a plain client
    return {"pub": {"allow": pub}, "sub": {"allow": sub}, "subs": -1, "data": -1, "payload": -1, "allowed_connection_types": ["LEAFNODE"]}


def mapper_permissions(node: str) -> dict[str, Any]:
    """A mapper or device on a node's own server: KubeEdge's device topics, nothing else.
    Used for NATS users (``publish``/``subscribe`` in server config form) and MQTT users."""
    dev = f"{names.HW_ROOT}.device.*.*"
    nodeh = f"{names.HW_ROOT}.node.{names.mqtt_level(node)}"
    pub = [f"{dev}.{names.HW_TWIN_UPDATE}", f"{dev}.{names.HW_STATE_UPDATE}", f"{dev}.{names.HW_TWIN_GET}", f"{nodeh}.{names.HW_MEMBERSHIP_GET}"]
    sub = [
        f"{dev}.{names.HW_TWIN_DELTA}",
        f"{dev}.{names.HW_TWIN_RESULT}",
        f"{dev}.{names.HW_TWIN_GET_RESULT}",
        f"{dev}.{names.HW_STATE_RESULT}",
        f"{dev}.twin.update.document",
        f"{nodeh}.{names.HW_MEMBERSHIP_RESULT}",
        f"{nodeh}.{names.HW_MEMBERSHIP_UPDATED}",
        f"{names.mapper_inbox_prefix(node)}.>",
    ]
    return {"publish": {"allow": pub}, "subscribe": {"allow": sub}}
