"""edgebus.names: reversible token encoding, subject builders/parsers, and filters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus import names
from edgebus.names import InvalidName, ObjectRef

# ---------------------------------------------------------------------------------------
# Strategies and a tiny NATS wildcard matcher
# ---------------------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


@st.composite
def dns_labels(draw: st.DrawFn, max_len: int = 20) -> str:
    first = draw(st.sampled_from(_ALNUM))
    if draw(st.booleans()):
        return first
    middle = draw(st.text(alphabet=_ALNUM + "-", max_size=max_len - 2))
    last = draw(st.sampled_from(_ALNUM))
    return first + middle + last


def dns_subdomains(max_labels: int = 5) -> st.SearchStrategy[str]:
    return st.lists(dns_labels(), min_size=1, max_size=max_labels).map(".".join).filter(lambda s: len(s) <= 253)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` = exactly one token, ``>`` = one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            assert i == len(p) - 1, "'>' must be the last token"
            return len(s) > i
        if i >= len(s):
            return False
        if tok != "*" and tok != s[i]:
            return False
    return len(p) == len(s)


def test_matcher_itself() -> None:
    assert subject_matches("a.*.c", "a.b.c")
    assert not subject_matches("a.*.c", "a.b.x.c")
    assert subject_matches("a.>", "a.b")
    assert subject_matches("a.>", "a.b.c.d")
    assert not subject_matches("a.>", "a")
    assert not subject_matches("a.b", "a.b.c")
    assert not subject_matches("a.b.c", "a.b")


RESOURCES = st.sampled_from(["pods", "configmaps", "secrets", "nodes", "namespaces"])
KINDS = st.sampled_from([names.UP_HEARTBEAT, names.UP_STATUS, names.UP_EVENT])
NAMESPACES = st.one_of(st.none(), dns_labels())


def _tokens_ok(subject: str) -> None:
    for tok in subject.split("."):
        assert tok, f"empty token in {subject!r}"
        assert "*" not in tok and ">" not in tok, subject
        assert not any(ch.isspace() for ch in tok), subject


# ---------------------------------------------------------------------------------------
# Token encoding
# ---------------------------------------------------------------------------------------


@given(dns_subdomains())
def test_token_roundtrip_and_shape(name: str) -> None:
    tok = names.encode_token(name)
    assert names.decode_token(tok) == name
    assert "." not in tok
    assert "*" not in tok and ">" not in tok
    assert not any(ch.isspace() for ch in tok)


@given(dns_subdomains(), dns_subdomains())
def test_encoding_is_injective(a: str, b: str) -> None:
    if a != b:
        assert names.encode_token(a) != names.encode_token(b)


def test_dotted_name_becomes_underscore() -> None:
    assert names.encode_token("edge-1.site.example") == "edge-1_site_example"
    assert names.decode_token("edge-1_site_example") == "edge-1.site.example"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Edge",
        "edge_1",
        "a" * 254,
        "-edge",
        "edge-",
        ".edge",
        "edge.",
        "a..b",
        "edge 1",
        "edge*",
        "edge>",
        "edge/1",
        "édge",
    ],
)
def test_invalid_names_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.encode_token(bad)


def test_longest_valid_name_is_accepted() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert names.decode_token(names.encode_token(name)) == name


@pytest.mark.parametrize("bad", ["node\n", "a.b\n"])
def test_trailing_newline_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.encode_token(bad)


@pytest.mark.parametrize("bad", ["", "a.b", "A", "a b", "a*", ">"])
def test_decode_token_rejects_non_tokens(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.decode_token(bad)


def test_namespace_encoding() -> None:
    assert names.encode_ns(None) == names.CLUSTER_NS == "_"
    assert names.encode_ns("") == "_"
    assert names.decode_ns("_") is None
    assert names.decode_ns(names.encode_ns("kube-system")) == "kube-system"


# ---------------------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------------------


def test_node_domain() -> None:
    assert names.node_domain("edge-1") == "edge-1"
    assert names.node_domain("edge.site") == "edge_site"
    assert "." not in names.node_domain("a.b.c")
    assert names.node_domain("cloud.edge") == "cloud_edge"
    assert names.js_api_prefix("edge-1") == "$JS.edge-1.API"


def test_node_named_cloud_is_rejected_as_domain() -> None:
    with pytest.raises(InvalidName, match="cloud"):
        names.node_domain(names.CLOUD_DOMAIN)


@given(dns_subdomains())
def test_node_domain_never_collides_with_cloud(node: str) -> None:
    try:
        dom = names.node_domain(node)
    except InvalidName:
        assert node == "cloud"
    else:
        assert dom != names.CLOUD_DOMAIN


# ---------------------------------------------------------------------------------------
# Object keys
# ---------------------------------------------------------------------------------------


@given(RESOURCES, NAMESPACES, dns_subdomains())
def test_object_key_roundtrip(resource: str, ns: str | None, name: str) -> None:
    key = names.object_key(resource, ns, name)
    assert len(key.split(".")) == 3
    _tokens_ok(key)
    ref = names.parse_object_key(key)
    assert ref == ObjectRef(resource, ns, name)
    assert ref.key == key


def test_cluster_scoped_object_key() -> None:
    key = names.object_key("nodes", None, "edge.1")
    assert key == "nodes._.edge_1"
    ref = names.parse_object_key(key)
    assert ref.namespace is None and ref.name == "edge.1"
    assert str(ref) == "nodes/edge.1"
    assert str(ObjectRef("pods", "default", "web")) == "pods/default/web"


@pytest.mark.parametrize("bad", ["pods.default", "pods.default.web.x", "pods", "pods.default.Web"])
def test_parse_object_key_rejects(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.parse_object_key(bad)


@given(RESOURCES, NAMESPACES, dns_subdomains())
def test_object_key_filters(resource: str, ns: str | None, name: str) -> None:
    key = names.object_key(resource, ns, name)
    assert subject_matches(names.object_key_filter(resource), key)
    assert subject_matches(names.object_key_filter(resource, ns), key)
    assert not subject_matches(names.object_key_filter(resource, "other-ns"), key) or ns == "other-ns"
    assert not subject_matches(names.object_key_filter("devices"), key)


def test_kv_subjects() -> None:
    key = names.object_key("pods", "default", "web")
    subj = names.kv_subject(names.BUCKET_OBJECTS, key)
    assert subj == "$KV.edgebus-objects.pods.default.web"
    assert subj.startswith(names.kv_subject_prefix(names.BUCKET_OBJECTS))
    assert subj[len(names.kv_subject_prefix(names.BUCKET_OBJECTS)) :] == key
    assert names.kv_stream(names.BUCKET_OBJECTS) == "KV_edgebus-objects"


# ---------------------------------------------------------------------------------------
# Downstream subjects
# ---------------------------------------------------------------------------------------


@given(dns_subdomains(), RESOURCES, NAMESPACES, dns_subdomains())
def test_down_subject_roundtrip(node: str, resource: str, ns: str | None, name: str) -> None:
    subj = names.down_subject(node, resource, ns, name)
    _tokens_ok(subj)
    assert names.parse_down_subject(subj) == (node, ObjectRef(resource, ns, name))
    assert subject_matches(names.down_filter(node), subj)
    assert subject_matches(names.down_filter(), subj)
    assert not subject_matches(names.up_filter(), subj)


@given(dns_subdomains(), dns_subdomains(), RESOURCES, dns_subdomains())
def test_down_filter_isolates_nodes(a: str, b: str, resource: str, name: str) -> None:
    subj = names.down_subject(b, resource, "default", name)
    assert subject_matches(names.down_filter(a), subj) == (a == b)


def test_down_filter_is_not_a_string_prefix_match() -> None:
    # "edge" must not see "edge.1"'s objects, and vice versa.
    assert not subject_matches(names.down_filter("edge"), names.down_subject("edge.1", "pods", "default", "p"))
    assert not subject_matches(names.down_filter("edge.1"), names.down_subject("edge", "pods", "default", "p"))


@pytest.mark.parametrize(
    "bad",
    [
        "edgebus.up.n.pods.default.p",
        "other.down.n.pods.default.p",
        "edgebus.down.n.pods.default",
        "edgebus.down.n.pods.default.p.x",
        "edgebus.down.N.pods.default.p",
    ],
)
def test_parse_down_subject_rejects(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.parse_down_subject(bad)


# ---------------------------------------------------------------------------------------
# Upstream subjects
# ---------------------------------------------------------------------------------------


@given(dns_subdomains(), KINDS, st.one_of(st.none(), st.builds(ObjectRef, RESOURCES, NAMESPACES, dns_subdomains())))
def test_up_and_outbox_roundtrip(node: str, kind: str, ref: ObjectRef | None) -> None:
    up = names.up_subject(node, kind, ref)
    out = names.outbox_subject(node, kind, ref)
    _tokens_ok(up)
    _tokens_ok(out)
    assert names.parse_up_subject(up) == names.UpSubject(node, kind, ref)
    assert names.up_subject_from_outbox(out) == up
    assert subject_matches(names.outbox_filter(node), out)
    assert subject_matches(names.up_filter(node), up)
    assert subject_matches(names.up_filter(), up)
    assert not subject_matches(names.up_filter(), out)
    assert not subject_matches(names.outbox_filter(node), up)
    assert not subject_matches(names.down_filter(), up)


def test_up_subject_shapes() -> None:
    assert names.up_subject("e.1", names.UP_HEARTBEAT) == "edgebus.up.e_1.heartbeat"
    ref = ObjectRef("pods", "default", "web")
    assert names.outbox_subject("e.1", names.UP_STATUS, ref) == "edgebus.outbox.e_1.status.pods.default.web"
    assert names.up_subject_from_outbox("edgebus.outbox.e_1.status.pods.default.web") == "edgebus.up.e_1.status.pods.default.web"


@pytest.mark.parametrize("bad", ["edgebus.up.n.status", "other.outbox.n.x", "edgebus.outbox"])
def test_up_subject_from_outbox_rejects(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.up_subject_from_outbox(bad)


@pytest.mark.parametrize(
    "bad", ["edgebus.up.n", "edgebus.down.n.status", "x.up.n.status", "edgebus.up.n.status.pods.default"]
)
def test_parse_up_subject_rejects(bad: str) -> None:
    with pytest.raises(InvalidName):
        names.parse_up_subject(bad)


# ---------------------------------------------------------------------------------------
# Node-local subjects, DLQ, queue groups
# ---------------------------------------------------------------------------------------


@given(dns_subdomains())
def test_node_local_subjects(node: str) -> None:
    tok = names.encode_token(node)
    for subj in (
        names.meta_subject(node, "list"),
        names.meta_events_subject(node, "pods"),
        names.link_subject(node),
        names.edgehub_subject(node, "state"),
    ):
        _tokens_ok(subj)
        assert subj.split(".")[:3] == ["edgebus", "node", tok]
    assert subject_matches(names.meta_events_subject(node), names.meta_events_subject(node, "pods"))
    assert not subject_matches(names.meta_events_subject(node, "pods"), names.meta_events_subject(node, "secrets"))


def test_dlq_and_queue_group() -> None:
    subj = names.dlq_subject("edge-1", "meta.manager")
    assert subj == "edgebus.dlq.edge-1.meta_manager"
    assert subject_matches(names.DLQ_FILTER, subj)
    # each domain's stream captures its own rejects only
    assert subject_matches(names.dlq_filter("edge-1"), subj)
    assert not subject_matches(names.dlq_filter("edge-2"), subj)
    assert not subject_matches(names.dlq_filter(names.CLOUD_DOMAIN), subj)
    with pytest.raises(names.InvalidName):
        names.dlq_subject("a.b", "svc")
    assert names.queue_group("cloudhub") == "edgebus-cloudhub"
    assert not subject_matches(names.DLQ_FILTER, names.JOIN_SUBJECT)


@settings(max_examples=200)
@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}", fullmatch=True), st.from_regex(r"[a-f0-9]{16}", fullmatch=True))
def test_mesh_tunnel_subjects_round_trip(node: str, tunnel: str) -> None:
    subj = names.mesh_tunnel_subject(node, "peer-1.site", tunnel)
    assert names.parse_mesh_tunnel_subject(subj) == (node, "peer-1.site", tunnel)
    assert subject_matches(names.mesh_tunnel_filter(node), subj)
    assert subject_matches(names.mesh_to_filter(node), subj) and subject_matches(names.mesh_from_filter("peer-1.site"), subj)
    opened = names.mesh_open_subject(node, "peer-1.site")
    assert names.parse_mesh_open_subject(opened) == (node, "peer-1.site")
    assert subject_matches(names.mesh_open_filter(node), opened) and subject_matches(names.mesh_from_filter("peer-1.site"), opened)
    reply = names.mesh_reply_subject("peer-1.site", node, tunnel)
    assert subject_matches(names.mesh_to_filter("peer-1.site"), reply) and subject_matches(names.mesh_from_filter(node), reply)
    assert not subject_matches(names.mesh_from_filter(node), subj) or node == "peer-1.site"


def test_mesh_tunnel_subjects_reject_foreign_subjects() -> None:
    for bad in ("edgebus.mesh.n1.n2.open", "edgebus.mesh.n1.n2.t", "edgebus.mesh.n1.n2.t.a.b", "x.mesh.n1.n2.t.ab", "edgebus.mesh.n1.n2.t.A*", "edgebus.node.n1.mesh.t.ab"):
        with pytest.raises(names.InvalidName):
            names.parse_mesh_tunnel_subject(bad)
    with pytest.raises(names.InvalidName):
        names.mesh_tunnel_subject("n1", "n2", "a.b")


def test_header_names_are_written_only_in_names() -> None:
    """Every NATS and edgebus header name is spelled once, in edgebus/names.py: no module
    keeps its own copy (a copy that drifts is a header nobody reads)."""
    import re
    from pathlib import Path

    root = Path(names.__file__).resolve().parent.parent
    literal = re.compile(r"""["'](Nats|Edgebus|KV)-[A-Za-z][-A-Za-z0-9]*["']""")
    found = [
        f"{p.relative_to(root)}:{n}: {line.strip()}"
        for tree in ("edgebus", "services")
        for p in sorted((root / tree).rglob("*.py"))
        if p.name != "names.py" or p.parent.name != "edgebus"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert found == []
    spelled = [v for k, v in vars(names).items() if k.startswith("HDR_") and isinstance(v, str)]
    assert len(spelled) == len(set(spelled)), "two names for one header"
