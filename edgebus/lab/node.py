"""One edge node on its own host (``edgebus node start``): the processes of a lab node, with
the node's identity from ``edgebus node join`` and the cloud's addresses it was given then.

Ports are the usual ones of an edge host rather than a lab block: NATS 4222, MQTT 1883, the
metaserver 10550, edgemesh's DNS on 10553, ops endpoints from 10560 (all on ``host``,
loopback by default).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebus.identity.node import NodeIdentity
from edgebus.lab.plan import DEVICE_SERVICES, EDGE_SERVICES, LabPlan

NATS, MQTT, METASERVER, DNS, OPS = 4222, 1883, 10550, 10553, 10560


@dataclass
class NodePlan(LabPlan):
    """The plan of the one node whose data dir is ``node_dir``."""

    node_dir: str = ""
    nodes: list[str] = field(default_factory=list)
    #: None: the usual ports above; a number: a block of 16 ports from there (several nodes
    #: on one host, tests)
    port_base: int | None = None

    def _port(self, usual: int, offset: int) -> int:
        return usual if self.port_base is None else self.port_base + offset

    def __post_init__(self) -> None:
        ident = NodeIdentity.at(self.node_dir)
        info = ident.info  # raises NotJoined with a clear message
        node = str(info["node"])
        self.nodes = [node]
        self.data_dir = self.node_dir
        self.run_cloud = False
        urls = ident.leaf_urls()
        if urls and node not in self.leaf_urls:
            self.leaf_urls[node] = ",".join(urls)  # every server of the cloud's cluster

    def node_identity(self, node: str) -> NodeIdentity:
        return NodeIdentity.at(self.node_dir)

    def _dir(self, *parts: str) -> Path:
        # the lab keeps nodes under nodes/<node>/ and logs under logs/<node>/: here the node
        # is the whole data dir
        if len(parts) >= 2 and parts[0] in ("nodes", "logs") and parts[1] in self.nodes:
            return Path(self.node_dir, *(["logs"] if parts[0] == "logs" else []), *parts[2:])
        return Path(self.node_dir, *parts)

    def node_base(self, node: str) -> int:
        return self.node_nats_port(node)

    def node_nats_port(self, node: str) -> int:
        return self._port(NATS, 0)

    def node_mqtt_port(self, node: str) -> int:
        return self._port(MQTT, 1)

    def metaserver_port(self, node: str) -> int:
        return self._port(METASERVER, 2)

    def mesh_dns_port(self, node: str) -> int:
        return self._port(DNS, 3)

    def node_ops_port(self, node: str, service: str) -> int:
        if service in DEVICE_SERVICES:
            return self._port(OPS, 4) + 2 + list(DEVICE_SERVICES).index(service)
        return self._port(OPS, 4) + 5 + EDGE_SERVICES.index(service)

    def edged_ops_port(self, node: str) -> int:
        return self._port(OPS, 4)

    def edgemesh_ops_port(self, node: str) -> int:
        return self._port(OPS, 4) + 1

    def sim_modbus_port(self, node: str) -> int | None:
        return None

    def service_cidr(self, node: str) -> str:
        return "127.41.0.0/24"

    @property
    def ca_file(self) -> str | None:
        """The cloud's CA bundle, as the node received it at join."""
        return str(NodeIdentity.at(self.node_dir).ca_file)


def all_in_one_launch(plan: NodePlan) -> tuple[list[str], dict[str, str]]:
    """The command and environment of the node as one process: ``python -m edgebus.allinone``
    with the node's nats-server (and containerd) as its children, so nothing else - no
    supervisor process - runs beside it. Writes the children's list and prepares what they
    need (local credentials, containerd's dirs and the lab's images)."""
    from edgebus.cri.containerd import prepare_dirs

    node = plan.nodes[0]
    plan.prepare()
    if plan.use_containerd:
        from edgebus.images import lab_images

        try:
            lab_images(**({"cache": Path(plan.image_cache)} if plan.image_cache else {}))
        except Exception as exc:  # pods then show ErrImagePull; the node still runs
            print(f"lab images not built: {exc}", file=sys.stderr)
        prepare_dirs(plan.node_containerd(node))
    procs = plan.node_processes(node)
    children: list[dict[str, Any]] = []
    main = None
    for p in procs:
        if p.name.endswith("/allinone"):
            main = p
            continue
        children.append(
            {
                "name": p.name,
                "argv": p.argv,
                "env": p.env,
                "log": p.log,
                "host": plan.host,
                "ready_port": p.ready_port,
                "ready_socket": p.ready_socket,
                "cri_address": p.cri_address,
                "config_file": p.config_file,
                "config_text": p.config(),
            }
        )
    assert main is not None
    path = Path(plan.node_dir, "allinone-children.json")
    path.write_text(json.dumps(children, indent=2))
    path.chmod(0o600)
    Path(main.log).parent.mkdir(parents=True, exist_ok=True)
    env = {**main.env, "EDGEBUS_ALLINONE__CHILDREN_FILE": str(path), "EDGEBUS_LOG__FILE": main.log, "PYTHONUNBUFFERED": "1"}
    return main.argv, env


def exec_all_in_one(plan: NodePlan) -> None:
    argv, env = all_in_one_launch(plan)
    os.chdir(Path(__file__).resolve().parents[2])
    os.execve(argv[0], argv, {**{k: v for k, v in os.environ.items() if not k.startswith("EDGEBUS_")}, **env})
