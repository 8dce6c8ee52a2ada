"""Services resolve inside pods, as in Kubernetes: the real kubectl against a lab of two
nodes with real containerd pods. Each node's edgemesh DNS is on port 53 of an address of
its own loopback range, edged passes it to the runtime as the pods' resolv.conf (CRI
DNSConfig: nameserver, ``<ns>.svc.cluster.local`` search path, ``ndots:5``), and from inside
pods on both nodes ``nslookup hello-web`` and ``wget http://hello-web:8080`` reach the
backend on the same node and the one on the other node (through edgemesh's tunnel).
``dnsPolicy`` Default / None / ClusterFirstWithHostNet and headless Services too."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import pytest

from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import wait_until

from .kubectl import KUBECTL, BackgroundLab, Kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

IMAGE = "docker.io/library/busybox:edgebus"


def web(name: str, node: str, port: int, ns: str = "default") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: hello-web}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: httpd
      image: {IMAGE}
      command: [sh, -c, 'mkdir -p /tmp/www && echo "hello from {name} on {node}" > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /tmp/www']
      ports: [{{name: http, containerPort: {port}}}]
      readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
"""


def client(name: str, node: str, ns: str = "default", extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
{extra}
  containers:
    - {{name: sh, image: {IMAGE}, command: [sleep, "86400"]}}
"""


#: the host's glibc programs (GNU wget, getent) in a pod: besides busybox's own resolver,
#: the one most applications use (glibc's, with its search and ndots rules) reads the pod's
#: resolv.conf
GLIBC = """
  volumes:
    - {name: usr, hostPath: {path: /usr}}
    - {name: lib, hostPath: {path: /usr/lib}}
    - {name: lib64, hostPath: {path: /usr/lib64}}"""
GLIBC_MOUNTS = "[{name: usr, mountPath: /usr, readOnly: true}, {name: lib, mountPath: /lib, readOnly: true}, {name: lib64, mountPath: /lib64, readOnly: true}]"


def tools(name: str, node: str) -> str:
    return client(name, node, extra=GLIBC).replace('command: [sleep, "86400"]}', f'command: [sleep, "86400"], volumeMounts: {GLIBC_MOUNTS}}}')


def manifests(dns1: str) -> str:
    docs = [
        """
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {pod-security.kubernetes.io/enforce: privileged}}
""",
        """
apiVersion: v1
kind: Service
metadata: {name: hello-web, namespace: default}
spec:
  selector: {app: hello-web}
  ports: [{name: http, port: 8080, targetPort: http}]
""",
        """
apiVersion: v1
kind: Service
metadata: {name: hello-headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: hello-web}
  ports: [{name: http, port: 8080, targetPort: http}]
""",
        """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
""",
        """
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: hello-web}
  ports: [{port: 9090, targetPort: http}]
""",
        """
apiVersion: v1
kind: Namespace
metadata: {name: hostnet, labels: {pod-security.kubernetes.io/enforce: privileged}}
""",
        web("hello-web-1", "edge-1", 18181),
        web("hello-web-2", "edge-2", 18182),
        web("cart-1", "edge-1", 18183, ns="shop"),
        client("client-1", "edge-1"),
        client("client-2", "edge-2"),
        tools("tools-1", "edge-1"),
        tools("tools-2", "edge-2"),
        client("shopper", "edge-2", ns="shop"),
        client("plain", "edge-1", extra="  dnsPolicy: Default"),
        client(
            "custom",
            "edge-1",
            extra=f"  dnsPolicy: None\n  dnsConfig: {{nameservers: [{dns1}], searches: [shop.svc.cluster.local], options: [{{name: ndots, value: '2'}}]}}",
        ),
        client("host-1", "edge-1", ns="hostnet", extra="  hostNetwork: true"),
        client("host-2", "edge-1", ns="hostnet", extra="  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet"),
    ]
    return "---".join(docs)


PODS = [("default", p) for p in ("hello-web-1", "hello-web-2", "client-1", "client-2", "tools-1", "tools-2", "plain", "custom")] + [("shop", "shopper"), ("shop", "cart-1"), ("hostnet", "host-1"), ("hostnet", "host-2")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundLab]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    bl = BackgroundLab(tmp_path_factory.mktemp("pod-dns"), proxy=False, devices=False, nodes=2)
    try:
        yield bl
    finally:
        bl.close()


@pytest.fixture(scope="module")
def k(lab: BackgroundLab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    plan = lab.rl.lab.plan
    if not plan.pod_dns_on:
        pytest.skip("port 53 cannot be bound here (not root): pods keep the host's resolv.conf")
    kc = Kubectl(tmp_path_factory.mktemp("kubectl"), "cloud", plan.apiserver_url, ca_file=plan.ca_file, token=plan.admin_token())
    kc.run("apply", "-f", "-", stdin=manifests(plan.mesh_dns("edge-1")[0]))
    for ns, name in PODS:
        wait_until(lambda ns=ns, name=name: kc.out("get", "pod", "-n", ns, name, "-o", "jsonpath={.status.phase}") == "Running", timeout=120, msg=f"{name} Running")

    def ready() -> bool:
        ep = kc.yaml("get", "endpoints", "hello-web")
        return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or []) == 2

    wait_until(ready, timeout=60, interval=0.5, msg="both backends Ready")
    return kc


def sh(k: Kubectl, pod: str, script: str, ns: str = "default") -> str:
    return k.out("exec", "-n", ns, pod, "--", "sh", "-c", script)


def test_cluster_ips_in_kubectl_get_svc(k: Kubectl) -> None:
    head, rows = k.table("get", "svc")
    cols = {r[0]: dict(zip(head, r)) for r in rows}
    ip = cols["hello-web"]["CLUSTER-IP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/12")
    assert cols["hello-headless"]["CLUSTER-IP"] == "None"
    assert k.out("get", "svc", "-n", "shop", "cart", "-o", "jsonpath={.spec.clusterIP}") not in ("", ip)
    err = k.fails("create", "service", "clusterip", "taken", "--tcp=80", f"--clusterip={ip}")
    assert "provided IP is already allocated" in err


def test_resolv_conf_of_each_dns_policy(k: Kubectl, lab: BackgroundLab) -> None:
    plan = lab.rl.lab.plan
    dns1, dns2 = plan.mesh_dns("edge-1")[0], plan.mesh_dns("edge-2")[0]
    with open("/etc/resolv.conf") as f:
        host = f.read()
    cluster = "search {ns}.svc.cluster.local svc.cluster.local cluster.local"
    c1 = sh(k, "client-1", "cat /etc/resolv.conf")
    assert f"nameserver {dns1}" in c1 and cluster.format(ns="default") in c1 and "options ndots:5" in c1
    c2 = sh(k, "client-2", "cat /etc/resolv.conf")
    assert f"nameserver {dns2}" in c2 and dns1 not in c2
    assert cluster.format(ns="shop") in sh(k, "shopper", "cat /etc/resolv.conf", ns="shop")
    assert sh(k, "plain", "cat /etc/resolv.conf").split() == host.split()  # Default: the node's
    custom = sh(k, "custom", "cat /etc/resolv.conf")
    assert sorted(custom.splitlines()) == [f"nameserver {dns1}", "options ndots:2", "search shop.svc.cluster.local"]
    assert sh(k, "host-1", "cat /etc/resolv.conf", ns="hostnet").split() == host.split()  # hostNetwork + ClusterFirst
    assert f"nameserver {dns1}" in sh(k, "host-2", "cat /etc/resolv.conf", ns="hostnet")  # ClusterFirstWithHostNet


def answers(out: str) -> list[str]:
    """The addresses in busybox nslookup's answer (after the ``Name:`` line)."""
    _, _, rest = out.partition("Name:")
    return re.findall(r"Address(?: \d+)?:\s*([0-9.]+)", rest)


def test_nslookup_and_http_from_pods_on_both_nodes(k: Kubectl, lab: BackgroundLab) -> None:
    expect = {"hello from hello-web-1 on edge-1", "hello from hello-web-2 on edge-2"}
    for pod, glibc, node in (("client-1", "tools-1", "edge-1"), ("client-2", "tools-2", "edge-2")):
        looked = wait_until(lambda pod=pod: answers(sh(k, pod, "nslookup hello-web || true")), timeout=30, msg=f"hello-web resolves in {pod}")
        (addr,) = looked
        assert ipaddress.ip_address(addr) in ipaddress.ip_network(lab.rl.lab.plan.service_cidr(node))  # the node's Service address
        assert answers(sh(k, pod, "nslookup hello-web.default.svc.cluster.local")) == [addr]
        # glibc's resolver: the search path turns hello-web into hello-web.default.svc.cluster.local
        assert sh(k, glibc, "/usr/bin/getent hosts hello-web").split()[0] == addr
        seen = {sh(k, glibc, "/usr/bin/wget -qO- -T 5 http://hello-web:8080/").strip() for _ in range(6)}
        assert seen == expect, (glibc, seen)  # this node's backend directly, the other's through the tunnel
        # busybox's wget (its -T option crashes Debian's busybox-static 1.35, so none)
        assert {sh(k, pod, "wget -qO- http://hello-web:8080/").strip() for _ in range(4)} == expect
    # an unknown name in the cluster domain is NXDOMAIN, answered by the node's DNS
    out = k.run("exec", "client-1", "--", "nslookup", "nope.default.svc.cluster.local", check=False)
    assert out.returncode != 0 and "NXDOMAIN" in out.stdout + out.stderr


def test_search_path_of_the_pods_namespace(k: Kubectl) -> None:
    # "cart" is shop's Service: found by its short name from shop, not from default
    # (busybox's nslookup tries every search domain and fails if any one is NXDOMAIN)
    (cart,) = answers(sh(k, "shopper", "nslookup cart || true", ns="shop"))
    assert sh(k, "shopper", "wget -qO- http://cart:9090/", ns="shop").strip() == "hello from cart-1 on edge-1"  # edge-2 to edge-1
    assert answers(sh(k, "client-1", "nslookup cart || true")) == []
    assert k.run("exec", "tools-1", "--", "/usr/bin/getent", "hosts", "cart", check=False).returncode != 0
    (cart1,) = answers(sh(k, "client-1", "nslookup cart.shop || true"))  # edge-1's address of it
    assert cart1 != cart
    assert sh(k, "tools-1", "/usr/bin/wget -qO- -T 5 http://cart.shop:9090/").strip() == "hello from cart-1 on edge-1"
    # dnsPolicy None with dnsConfig: its own search path (shop) and nameserver
    assert answers(sh(k, "custom", "nslookup cart || true")) == [cart1]
    # ClusterFirstWithHostNet on the host network: cluster names resolve; ClusterFirst there does not
    assert answers(sh(k, "host-2", "nslookup hello-web.default || true", ns="hostnet"))
    assert sh(k, "host-2", "wget -qO- http://hello-web.default:8080/", ns="hostnet").startswith("hello from hello-web-")
    assert answers(sh(k, "host-1", "nslookup hello-web.default || true", ns="hostnet")) == []


def test_headless_service_answers_the_endpoints(k: Kubectl) -> None:
    ep = k.yaml("get", "endpoints", "hello-headless")
    ips = sorted({a["ip"] for s in ep["subsets"] for a in s.get("addresses") or []})
    assert ips
    assert sorted(set(answers(sh(k, "client-1", "nslookup hello-headless || true")))) == ips
