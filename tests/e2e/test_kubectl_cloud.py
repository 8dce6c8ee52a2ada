"""The real kubectl against the cloud apiserver of a running lab (cloud + edge-1 as
processes; no containerd, no device services: pods need not run here).

kubectl runs with its defaults, so ``apply`` and ``create`` validate: kubectl downloads
the OpenAPI documents, sees that the server validates fields itself (``fieldValidation``)
and sends ``fieldValidation=Strict``. The last test repeats the essentials with every
kubectl version installed next to the dispatcher (1.27 ... 1.33)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kubectl import KUBECTL, BackgroundLab, Kubectl, Watch, versioned_kubectls

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

WEB = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: default, labels: {app: web}}
data: {mode: edge, level: info}
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret, namespace: default}
stringData: {token: s3cr3t}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web, tier: front}}
spec:
  nodeName: edge-1
  containers:
    - {name: main, image: docker.io/library/busybox:edgebus, command: [sleep, "3600"]}
    - {name: side, image: docker.io/library/busybox:edgebus, command: [sleep, "3600"]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundLab]:
    bl = BackgroundLab(tmp_path_factory.mktemp("kubectl-cloud"), proxy=False, devices=False, containerd=False)
    try:
        yield bl
    finally:
        bl.close()


@pytest.fixture(scope="module")
def k(lab: BackgroundLab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kc = Kubectl(tmp_path_factory.mktemp("kubectl"), "cloud", lab.rl.lab.plan.apiserver_url, ca_file=lab.rl.lab.plan.ca_file, token=lab.rl.lab.plan.admin_token())
    kc.run("apply", "-f", "-", stdin=WEB)
    kc.run("create", "namespace", "team-a")
    kc.run("run", "other", "-n", "team-a", "--image", "docker.io/library/busybox:edgebus", "--labels", "app=other", "--overrides", '{"spec": {"nodeName": "edge-1"}}')
    return kc


def test_get_prints_the_columns_users_know(k: Kubectl) -> None:
    head, rows = k.table("get", "nodes")
    assert head == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows[0][:2] == ["edge-1", "Ready"] and rows[0][4].startswith("v1.30.0")
    head, rows = k.table("get", "nodes", "-o", "wide")
    assert head[5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert rows[0][5:7] == ["127.0.0.1", "<none>"] and rows[0][7].startswith("Debian")

    head, rows = k.table("get", "namespaces")
    assert head == ["NAME", "STATUS", "AGE"]
    assert {r[0]: r[1] for r in rows}.items() >= {"default": "Active", "kube-system": "Active", "team-a": "Active"}.items()

    head, rows = k.table("get", "configmaps")
    assert head == ["NAME", "DATA", "AGE"] and ["web-config", "2"] == rows[[r[0] for r in rows].index("web-config")][:2]
    head, rows = k.table("get", "secrets")
    assert head == ["NAME", "TYPE", "DATA", "AGE"] and rows[0][:3] == ["web-secret", "Opaque", "1"]

    head, rows = k.table("get", "pods")
    assert head == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[0] for r in rows] == ["web"] and rows[0][1] == "0/2"
    head, rows = k.table("get", "pods", "-o", "wide")
    assert head == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"] and rows[0][6:] == ["edge-1", "<none>", "<none>"]
    head, rows = k.table("get", "pods", "-A")
    assert head[:2] == ["NAMESPACE", "NAME"] and {(r[0], r[1]) for r in rows} == {("default", "web"), ("team-a", "other")}
    head, rows = k.table("get", "pods", "-A", "-l", "app=other")
    assert [(r[0], r[1]) for r in rows] == [("team-a", "other")]
    assert k.out("get", "pods", "-l", "tier=back").strip() == ""
    assert sorted(k.out("get", "pods", "-A", "-o", "name").split()) == ["pod/other", "pod/web"]

    pod = json.loads(k.out("get", "pod", "web", "-o", "json"))
    assert pod["kind"] == "Pod" and pod["spec"]["nodeName"] == "edge-1" and pod["metadata"]["uid"]
    listed = json.loads(k.out("get", "pods", "-A", "-o", "json"))
    assert listed["kind"] == "List" and len(listed["items"]) == 2
    secret = k.yaml("get", "secret", "web-secret")
    assert secret["data"] == {"token": "czNjcjN0"} and secret["type"] == "Opaque"


def test_apply_create_label_patch_edit_delete(k: Kubectl, tmp_path: Path) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: default}\ndata: {color: blue}\n"
    assert k.out("apply", "-f", "-", stdin=cm).strip() == "configmap/app created"
    assert k.out("apply", "-f", "-", stdin=cm).strip() == "configmap/app unchanged"
    assert k.out("apply", "-f", "-", stdin=cm.replace("blue", "green")).strip() == "configmap/app configured"
    assert k.yaml("get", "configmap", "app")["data"] == {"color": "green"}
    # a field removed from the manifest is removed from the object (three-way merge)
    k.run("apply", "-f", "-", stdin=cm.replace("{color: blue}", "{color: red, size: xl}"))
    k.run("apply", "-f", "-", stdin=cm.replace("blue", "red"))
    assert k.yaml("get", "configmap", "app")["data"] == {"color": "red"}

    assert k.out("create", "-f", "-", stdin=cm.replace("name: app", "name: app2")).strip() == "configmap/app2 created"

    assert k.out("label", "pod", "web", "stage=test").strip() == "pod/web labeled"
    assert k.out("label", "pod", "web", "stage=prod", "--overwrite").strip() == "pod/web labeled"
    assert k.out("patch", "configmap", "app", "--type", "merge", "-p", '{"data": {"color": "yellow"}}').strip() == "configmap/app patched"
    k.run("patch", "configmap", "app", "--type", "json", "-p", '[{"op": "add", "path": "/data/shape", "value": "round"}]')
    assert k.yaml("get", "configmap", "app")["data"] == {"color": "yellow", "shape": "round"}
    # strategic merge: the containers list merges by name, the other container is kept
    k.run("patch", "pod", "web", "-p", '{"spec": {"containers": [{"name": "side", "image": "docker.io/library/busybox:v2"}]}}')
    pod = k.yaml("get", "pod", "web")
    assert [(c["name"], c["image"]) for c in pod["spec"]["containers"]] == [("main", "docker.io/library/busybox:edgebus"), ("side", "docker.io/library/busybox:v2")]
    assert pod["metadata"]["labels"]["stage"] == "prod"

    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/color: yellow/color: purple/' \"$1\"\n")
    editor.chmod(0o755)
    edited = k.run("edit", "configmap", "app", env={"KUBE_EDITOR": str(editor)})
    assert edited.stdout.strip() == "configmap/app edited"
    assert k.yaml("get", "configmap", "app")["data"]["color"] == "purple"

    assert k.out("delete", "-f", "-", stdin=cm).strip() == 'configmap "app" deleted'
    assert k.fails("get", "configmap", "app") == 'Error from server (NotFound): configmaps "app" not found'
    k.run("delete", "configmap", "app2")


def test_errors_read_like_a_real_api_server(k: Kubectl) -> None:
    assert k.fails("get", "pod", "nope") == 'Error from server (NotFound): pods "nope" not found'
    assert k.fails("delete", "pod", "nope") == 'Error from server (NotFound): pods "nope" not found'
    assert k.fails("get", "namespace", "nope") == 'Error from server (NotFound): namespaces "nope" not found'
    assert 'the server doesn\'t have a resource type "gizmos"' in k.fails("get", "gizmos")

    dup = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config, namespace: default}\n"
    assert k.fails("create", "-f", "-", stdin=dup) == 'Error from server (AlreadyExists): error when creating "STDIN": configmaps "web-config" already exists'

    stale = k.yaml("get", "configmap", "web-config")
    k.run("label", "configmap", "web-config", "touched=yes")
    err = k.fails("replace", "-f", "-", stdin=json.dumps(stale))
    assert err == (
        'Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "web-config": '
        "the object has been modified; please apply your changes to the latest version and try again"
    )

    bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Pod, namespace: default}\nspec: {containers: [{name: main}]}\n"
    err = k.fails("create", "-f", "-", stdin=bad)
    assert err.splitlines()[0] == 'The Pod "Bad_Pod" is invalid: '
    assert "* spec.containers[0].image: Required value" in err.splitlines()

    # strict field validation (kubectl's default) flags a typo; warn stores without it
    typo = "apiVersion: v1\nkind: Pod\nmetadata: {name: typo, namespace: default}\nspec:\n  nodeName: ghost\n  containers: [{name: main, image: busybox, imagee: nope}]\n"
    assert k.fails("apply", "-f", "-", stdin=typo) == (
        'Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: '
        'strict decoding error: unknown field "spec.containers[0].imagee"'
    )
    warned = k.run("create", "--validate=warn", "-f", "-", stdin=typo)
    assert warned.stdout.strip() == "pod/typo created" and 'Warning: unknown field "spec.containers[0].imagee"' in warned.stderr
    assert "imagee" not in json.dumps(k.yaml("get", "pod", "typo"))
    # kubectl patch sends no fieldValidation: the server's default, Warn
    patched = k.run("patch", "pod", "typo", "-p", '{"metadata": {"labelz": {"a": "b"}}}')
    assert 'Warning: unknown field "metadata.labelz"' in patched.stderr and "labelz" not in json.dumps(k.yaml("get", "pod", "typo"))
    silent = k.run("create", "--validate=false", "-f", "-", stdin=typo.replace("name: typo", "name: typo2"))
    assert silent.stderr == ""
    k.run("delete", "pod", "typo", "typo2", "--grace-period=0", "--force")

    # server-side dry runs check everything and change nothing
    dry = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry, namespace: default}\ndata: {a: b}\n"
    assert k.out("apply", "--dry-run=server", "-f", "-", stdin=dry).strip() == "configmap/dry created (server dry run)"
    assert k.out("delete", "configmap", "web-config", "--dry-run=server").strip() == 'configmap "web-config" deleted (server dry run)'
    assert k.fails("get", "configmap", "dry").startswith("Error from server (NotFound)") and k.out("get", "configmap", "web-config", "-o", "name") == "configmap/web-config\n"
    bad = dry.replace("name: dry", "name: Not_Valid")
    assert "is invalid" in k.fails("apply", "--dry-run=server", "-f", "-", stdin=bad)


def test_devices_group_is_discoverable_and_validated(k: Kubectl) -> None:
    manifest = (EXAMPLES / "thermostat.yaml").read_text()
    created = k.out("apply", "-f", "-", stdin=manifest).splitlines()
    assert created == ["devicemodel.devices.kubeedge.io/thermostat-model created", "device.devices.kubeedge.io/thermostat created"]
    assert k.out("apply", "-f", "-", stdin=manifest).splitlines() == [
        "devicemodel.devices.kubeedge.io/thermostat-model unchanged",
        "device.devices.kubeedge.io/thermostat unchanged",
    ]
    out = k.out("get", "devices,devicemodels")
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    assert blocks[0][0].split() == ["NAME", "NODE", "MODEL", "STATE", "VALUES", "AGE"]
    assert blocks[0][1].split()[:3] == ["device.devices.kubeedge.io/thermostat", "edge-1", "thermostat-model"]
    assert blocks[1][0].split() == ["NAME", "PROTOCOL", "PROPERTIES", "AGE"]
    assert blocks[1][1].split()[:3] == ["devicemodel.devices.kubeedge.io/thermostat-model", "modbus", "temperature,humidity,setpoint,fan,alarm"]
    dev = k.yaml("get", "device", "thermostat")
    assert dev["apiVersion"] == "devices.kubeedge.io/v1beta1" and dev["spec"]["rules"][0]["name"] == "fan-on"
    assert dev["spec"]["protocol"]["configData"]["deviceID"] == 1  # free-form config kept as written
    resources = k.out("api-resources", "--api-group", "devices.kubeedge.io", "-o", "name").split()
    assert resources == ["devicemodels.devices.kubeedge.io", "devices.devices.kubeedge.io", "devicestatuses.devices.kubeedge.io"]
    assert "FIELD: rules <[]Object>" in k.out("explain", "device.spec.rules")

    typo = manifest.replace("  nodeName: edge-1\n", "  nodeNmae: edge-1\n")
    err = k.fails("apply", "-f", "-", stdin=typo)
    assert err.startswith("Error from server (BadRequest): error when applying patch:")
    assert err.endswith('error when patching "STDIN": Device in version "v1beta1" cannot be handled as a Device: strict decoding error: unknown field "spec.nodeNmae"')
    # KubeEdge's schema refuses a number where it says string; edgebus's own range check is a warning
    as_number = manifest.replace('value: "22"', "value: 22")
    assert 'spec.properties[2].desired.value in body must be of type string: "integer"' in k.fails("apply", "-f", "-", stdin=as_number)
    out_of_range = manifest.replace('value: "22"', 'value: "99"')
    warned = k.run("apply", "-f", "-", stdin=out_of_range)
    assert "Warning: spec.properties[2].desired.value: 99 is above the maximum 35: the desired value is not written" in warned.stderr, warned.stderr
    k.out("apply", "-f", "-", stdin=manifest)


def test_describe_pod_lists_its_events(k: Kubectl) -> None:
    pod = k.yaml("get", "pod", "web")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.started", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "uid": pod["metadata"]["uid"], "apiVersion": "v1"},
        "reason": "Started",
        "message": "Started container main",
        "type": "Normal",
        "source": {"component": "edged", "host": "edge-1"},
        "count": 1,
        "firstTimestamp": pod["metadata"]["creationTimestamp"],
        "lastTimestamp": pod["metadata"]["creationTimestamp"],
    }
    k.run("create", "-f", "-", stdin=json.dumps(event))
    out = k.out("describe", "pod", "web")
    fields = dict((ln.split(":", 1)[0], ln.split(":", 1)[1].strip()) for ln in out.splitlines() if ln[:1].isalpha() and ":" in ln)
    assert fields["Name"] == "web" and fields["Namespace"] == "default" and fields["Node"].startswith("edge-1")
    assert fields["Labels"] == "app=web"
    events = out.split("Events:", 1)[1].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert events[3].split()[:2] == ["Normal", "Started"] and events[3].endswith("Started container main")
    assert k.out("describe", "pod", "other", "-n", "team-a").rstrip().splitlines()[-1].split() == ["Events:", "<none>"]


def test_get_pods_watch_shows_changes_live(k: Kubectl) -> None:
    w = Watch(k.argv("get", "pods", "-w", "--output-watch-events"))
    try:
        assert w.until("web").split()[:2] == ["ADDED", "web"]
        t0 = time.monotonic()
        k.run("run", "watched", "--image", "busybox", "--overrides", '{"spec": {"nodeName": "ghost"}}')
        assert w.until("watched").split()[:2] == ["ADDED", "watched"]
        k.run("label", "pod", "watched", "seen=yes")
        assert w.until("watched").split()[:2] == ["MODIFIED", "watched"]
        k.run("delete", "pod", "watched", "--grace-period=0", "--force")
        assert w.until("watched").split()[:2] == ["DELETED", "watched"]
        assert time.monotonic() - t0 < 10
    finally:
        w.close()


def test_deleting_a_bound_pod_waits_for_its_node(k: Kubectl) -> None:
    # bound to a node that never confirms: Terminating until forced
    k.run("run", "stuck", "--image", "busybox", "--overrides", '{"spec": {"nodeName": "ghost"}}')
    assert k.out("delete", "pod", "stuck", "--wait=false").strip() == 'pod "stuck" deleted'
    head, rows = k.table("get", "pod", "stuck")
    assert rows[0][:3] == ["stuck", "0/1", "Terminating"]
    assert k.yaml("get", "pod", "stuck")["metadata"]["deletionTimestamp"]
    forced = k.run("delete", "pod", "stuck", "--grace-period=0", "--force")
    assert forced.stdout.strip() == 'pod "stuck" force deleted' and "Immediate deletion does not wait" in forced.stderr
    assert k.fails("get", "pod", "stuck") == 'Error from server (NotFound): pods "stuck" not found'
    # an unbound pod goes at once (one no scheduler here binds: its schedulerName is no one's)
    k.run("run", "loose", "--image", "busybox", "--overrides", '{"spec": {"schedulerName": "nobody"}}')
    assert k.out("delete", "pod", "loose").strip() == 'pod "loose" deleted'


def test_every_installed_kubectl_version(lab: BackgroundLab, tmp_path: Path) -> None:
    kubectls = versioned_kubectls()
    if not kubectls:
        pytest.skip("no versioned kubectl binaries (kubectl.1.NN) next to kubectl")
    plan = lab.rl.lab.plan
    url = plan.apiserver_url
    creds = {"ca_file": plan.ca_file, "token": plan.admin_token()}
    picked = json.loads(Kubectl(tmp_path, "dispatch", url, **creds).out("version", "-o", "json"))["clientVersion"]["gitVersion"]
    print(f"\nthe dispatcher picks {picked}; testing {', '.join(kubectls)}")
    typo = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME, namespace: default}\ndata: {a: b}\nbinaryDta: {}\n"
    for version, binary in kubectls.items():
        kc = Kubectl(tmp_path, f"v{version}", url, binary=binary, **creds)
        name = "v" + version.replace(".", "-")
        manifest = typo.replace("NAME", name).replace("binaryDta: {}\n", "")
        assert kc.fails("apply", "-f", "-", stdin=typo.replace("NAME", name)).endswith('strict decoding error: unknown field "binaryDta"'), version
        assert kc.out("apply", "-f", "-", stdin=manifest).strip() == f"configmap/{name} created", version
        assert kc.out("apply", "-f", "-", stdin=manifest).strip() == f"configmap/{name} unchanged", version
        assert kc.out("apply", "-f", "-", stdin=manifest.replace("{a: b}", "{a: c}")).strip() == f"configmap/{name} configured", version
        assert kc.out("get", "configmap", name, "-o", "jsonpath={.data.a}") == "c", version
        head, _ = kc.table("get", "pods")
        assert head == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], version


def test_validation_rules_as_kubernetes(k: Kubectl, tmp_path: Path) -> None:
    """Each validation rule as kubectl users meet it: quantities, pod spec immutability,
    field selectors, JSON-patch texts, ``get all``."""
    greedy = WEB.split("---")[2].replace("name: web,", "name: greedy,").replace('command: [sleep, "3600"]}', 'command: [sleep, "3600"], resources: {limits: {cpu: lots}}}', 1)
    err = k.fails("apply", "-f", "-", stdin=greedy)
    assert 'The Pod "greedy" is invalid: spec.containers[0].resources.limits[cpu]: Invalid value: "lots": quantities must match the regular expression' in err
    # a pod's command (and its node) cannot change; its image can
    err = k.fails("patch", "pod", "web", "--type", "json", "-p", '[{"op":"replace","path":"/spec/containers/0/command","value":["sh"]}]')
    assert err.startswith('The Pod "web" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`')
    err = k.fails("patch", "pod", "web", "-p", '{"spec":{"nodeName":"edge-2"}}')
    assert "Forbidden: pod updates may not change fields" in err and "spec.nodeName" in err
    assert k.out("get", "pod", "web", "-o", "jsonpath={.spec.nodeName}") == "edge-1"
    assert "image updated" in k.out("set", "image", "pod/web", "side=docker.io/library/busybox:other")
    # a failed JSON-patch test
    err = k.fails("patch", "pod", "web", "--type", "json", "-p", '[{"op":"test","path":"/metadata/name","value":"nope"}]')
    assert "testing value /metadata/name failed: test failed" in err and "str" not in err
    # field selectors: an unknown field is an error, not an empty list
    err = k.fails("get", "pods", "--field-selector", "spec.nope=x")
    assert err.startswith("Error from server (BadRequest)") and "field label not supported: spec.nope" in err
    assert "web" in k.out("get", "pods", "--field-selector", "spec.nodeName=edge-1", "-o", "name")
    # get all: the pods and services (by the "all" category)
    k.run("apply", "-f", "-", stdin="apiVersion: v1\nkind: Service\nmetadata: {name: web-all}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n")
    out = k.out("get", "all")
    assert "pod/web " in out and "service/web-all " in out, out
    assert "configmap" not in out


def test_diff_shows_what_apply_would_change(k: Kubectl) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: diffed, namespace: default}\ndata: {level: info, mode: edge}\n"
    new = k.run("diff", "-f", "-", stdin=cm, check=False)
    assert new.returncode == 1 and "+  name: diffed" in new.stdout  # not there yet: all of it is new
    k.run("apply", "-f", "-", stdin=cm)
    assert k.run("diff", "-f", "-", stdin=cm, check=False).returncode == 0  # no difference
    changed = k.run("diff", "-f", "-", stdin=cm.replace("level: info", "level: debug"), check=False)
    assert changed.returncode == 1, changed.stderr
    lines = changed.stdout.splitlines()
    assert "-  level: info" in lines and "+  level: debug" in lines
    assert k.out("get", "configmap", "diffed", "-o", "jsonpath={.data.level}") == "info"  # nothing changed


def test_server_side_apply_conflicts_and_force(k: Kubectl) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default, labels: {team: a}}\ndata: {level: info, mode: edge}\n"
    assert k.out("apply", "--server-side", "-f", "-", stdin=cm).strip() == "configmap/ssa serverside-applied"
    got = k.yaml("get", "configmap", "ssa", "-o", "yaml", "--show-managed-fields")
    (entry,) = got["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply" and entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"]["f:data"] == {"f:level": {}, "f:mode": {}} and entry["fieldsV1"]["f:metadata"] == {"f:labels": {"f:team": {}}}
    # another manager setting a field kubectl owns to another value: a conflict
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default}\ndata: {level: debug}\n"
    err = k.fails("apply", "--server-side", "--field-manager=tuner", "-f", "-", stdin=other)
    assert 'Apply failed with 1 conflict: conflict with "kubectl" using v1: .data.level' in err
    assert k.out("get", "configmap", "ssa", "-o", "jsonpath={.data.level}") == "info"
    # the same value is shared ownership, no conflict; --force-conflicts takes a field over
    k.run("apply", "--server-side", "--field-manager=sharer", "-f", "-", stdin=other.replace("debug", "info"))
    k.run("apply", "--server-side", "--field-manager=tuner", "--force-conflicts", "-f", "-", stdin=other)
    got = k.yaml("get", "configmap", "ssa", "-o", "yaml", "--show-managed-fields")
    assert got["data"] == {"level": "debug", "mode": "edge"}
    owners = {e["manager"]: e["fieldsV1"] for e in got["metadata"]["managedFields"]}
    assert owners["tuner"] == {"f:data": {"f:level": {}}} and "f:level" not in owners["kubectl"]["f:data"]
    # a field the manager stops applying is removed (no one else owns it)
    k.run("apply", "--server-side", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default, labels: {team: a}}\ndata: {}\n")
    assert k.yaml("get", "configmap", "ssa")["data"] == {"level": "debug"}
    # an edit by another client is an Update manager; applying over it conflicts too
    k.run("patch", "configmap", "ssa", "--type", "merge", "-p", '{"metadata": {"labels": {"team": "b"}}}')
    err = k.fails("apply", "--server-side", "-f", "-", stdin=cm)
    assert 'conflict with "kubectl-patch"' in err and ".metadata.labels.team" in err
    assert k.out("apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-", stdin=cm).strip() == "configmap/ssa serverside-applied (server dry run)"
    assert k.out("get", "configmap", "ssa", "-o", "jsonpath={.metadata.labels.team}") == "b"
