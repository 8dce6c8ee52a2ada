"""Identity pieces without servers: JWTs, tokens, the permission templates, the CA."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from edgebus import names
from edgebus.identity import natsjwt, pki, roles, tokens
from edgebus.identity.natsjwt import Key


def matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def expand(template: dict, node: str) -> tuple[list[str], list[str]]:
    tok = names.encode_token(node)
    sub = lambda xs: [x.replace(names.TEMPLATE_NODE, tok) for x in xs]  # noqa: E731
    return sub(template["pub"]["allow"]), sub(template["sub"]["allow"])


def allowed(patterns: list[str], subject: str) -> bool:
    return any(matches(p, subject) for p in patterns)


def test_jwt_round_trip_and_tampering() -> None:
    op = Key.new(natsjwt.PREFIX_OPERATOR)
    token = natsjwt.operator_jwt(op, name="x", system_account=Key.new(natsjwt.PREFIX_ACCOUNT).public)
    claims = natsjwt.decode(token)
    assert claims["iss"] == op.public == claims["sub"] and claims["nats"]["type"] == "operator" and len(claims["jti"]) == 52
    h, b, s = token.split(".")
    forged = natsjwt.encode({**claims, "name": "evil"}, Key.new(natsjwt.PREFIX_OPERATOR)).split(".")[1]
    with pytest.raises(natsjwt.JwtError):
        natsjwt.decode(f"{h}.{forged}.{s}")
    user = Key.new(natsjwt.PREFIX_USER)
    jwt, key = natsjwt.read_creds(natsjwt.creds("a.b.c", user))
    assert jwt == "a.b.c" and key.public == user.public and key.seed == user.seed
    with pytest.raises(natsjwt.JwtError):
        natsjwt.read_creds("not a creds file")


def test_scoped_user_jwt_carries_no_permissions() -> None:
    acc, signer, user = Key.new(natsjwt.PREFIX_ACCOUNT), Key.new(natsjwt.PREFIX_ACCOUNT), Key.new(natsjwt.PREFIX_USER)
    c = natsjwt.decode(natsjwt.user_jwt(signer, user.public, account=acc.public, name="edge-1", scoped=True, tags=["node:edge-1"]))
    assert c["nats"] == {"type": "user", "version": 2, "issuer_account": acc.public, "tags": ["node:edge-1"]}


def test_node_template_confines_each_node_to_its_own_subjects() -> None:
    pub, sub = expand(roles.node_template(), "edge-1.site")
    a, b = "edge-1.site", "edge-2"
    ok_pub = [
        names.up_subject(a, names.UP_HEARTBEAT),
        names.hub_node_subject(a, "renew"),
        names.api_node_subject(a),
        f"{names.reply_prefix(a)}.abc",
        names.mesh_open_subject(b, a),
        names.mesh_tunnel_subject(b, a, "t1"),
        f"$JS.cloud.API.CONSUMER.CREATE.{names.STREAM_DOWN}.{names.down_consumer(a)}.{names.down_filter(a)}",
        f"$JS.cloud.API.CONSUMER.MSG.NEXT.{names.STREAM_DOWN}.{names.down_consumer(a)}",
        f"$JS.ACK.{names.STREAM_DOWN}.{names.down_consumer(a)}.1.2.3.4.5",
        f"$JS.cloud.API.DIRECT.GET.{names.STREAM_UP}.{names.up_filter(a)}",
    ]
    bad_pub = [
        names.up_subject(b, names.UP_HEARTBEAT),
        names.hub_node_subject(b, "renew"),
        names.api_node_subject(b),
        names.API_NODE_FILTER.replace("*", "edge-2"),
        names.JOIN_SUBJECT,
        f"{names.reply_prefix(b)}.abc",
        names.mesh_open_subject(a, b),
        names.down_subject(a, "pods", "default", "p"),
        f"{names.node_filter(b)[:-2]}.edged.exec",
        f"$JS.cloud.API.CONSUMER.CREATE.{names.STREAM_DOWN}.JS_SRC_x.{names.down_filter(b)}",
        f"$JS.cloud.API.CONSUMER.CREATE.{names.STREAM_DOWN}.JS_SRC_x.{names.down_filter(a)}",
        f"$JS.cloud.API.CONSUMER.CREATE.{names.STREAM_DOWN}.{names.down_consumer(a)}.{names.down_filter(b)}",
        f"$JS.cloud.API.CONSUMER.CREATE.{names.STREAM_DOWN}",
        f"$JS.cloud.API.CONSUMER.MSG.NEXT.{names.STREAM_DOWN}.{names.down_consumer(b)}",
        f"$JS.cloud.API.CONSUMER.DELETE.{names.STREAM_DOWN}.{names.down_consumer(a)}",
        f"$JS.ACK.{names.STREAM_DOWN}.{names.down_consumer(b)}.1.2.3.4.5",
        f"$JS.cloud.API.STREAM.MSG.GET.{names.kv_stream(names.BUCKET_OBJECTS)}",
        "$KV.edgebus-objects.secrets.default.x",
        "_INBOX.x",
    ]
    for s in ok_pub:
        assert allowed(pub, s), s
    for s in bad_pub:
        assert not allowed(pub, s), s
    ok_sub = [f"{names.node_filter(a)[:-2]}.edged.exec", f"{names.inbox_prefix(a)}.x.y", names.mesh_tunnel_subject(a, b, "t")]
    bad_sub = [f"{names.node_filter(b)[:-2]}.edged.exec", f"{names.inbox_prefix(b)}.x", f"{names.deliver_prefix(b)}.S.x", names.mesh_tunnel_subject(b, a, "t"), "$KV.edgebus-objects.x", ">"]
    for s in ok_sub:
        assert allowed(sub, s), s
    for s in bad_sub:
        assert not allowed(sub, s), s
    assert roles.node_template()["allowed_connection_types"] == ["LEAFNODE"]


def test_site_template_is_the_node_template_per_member() -> None:
    t = roles.site_template()
    assert all(names.TEMPLATE_MEMBER in p or not p.startswith("edgebus.") for p in t["pub"]["allow"])
    assert f"$JS.{names.TEMPLATE_NODE}.API.>" in t["sub"]["allow"]


def test_mapper_permissions_are_device_topics_only() -> None:
    p = roles.mapper_permissions("edge-1")
    pub, sub = p["publish"]["allow"], p["subscribe"]["allow"]
    assert allowed(pub, names.hw_device_subject("default", "thermo", names.HW_TWIN_UPDATE))
    assert allowed(sub, names.hw_device_subject("default", "a.b", names.HW_TWIN_DELTA))
    assert not allowed(pub, names.outbox_subject("edge-1", names.UP_HEARTBEAT))
    assert not allowed(sub, names.meta_subject("edge-1", "list")) and not allowed(sub, f"{names.inbox_prefix('edge-1')}.xyz")
    assert allowed(sub, f"{names.mapper_inbox_prefix('edge-1')}.xyz")


def test_tokens_parse_and_refuse_clearly() -> None:
    pin = "ab" * 32
    t = tokens.Token.new(pin)
    assert tokens.Token.parse(str(t)) == t and str(t).startswith(pin + ".")
    assert tokens.Token.parse(t.bootstrap).ca_pin == ""
    for bad in ("", "abc", f"{pin}.ABCDEF.0123456789abcdef", "abcdef.short", f"{pin[:-1]}.abcdef.0123456789abcdef"):
        with pytest.raises(tokens.TokenError):
            tokens.Token.parse(bad)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    obj = tokens.secret_object(t, ttl=dt.timedelta(hours=1), uses=1, description="d", now=now)
    stored = tokens.StoredToken.from_secret(obj)
    assert stored is not None and stored.uses == 1 and stored.expires == now + dt.timedelta(hours=1)
    stored.check(t.secret, now)
    with pytest.raises(tokens.TokenError, match="wrong secret"):
        stored.check("x" * 16, now)
    with pytest.raises(tokens.TokenError, match="expired at 2026-01-01T01:00:00Z"):
        stored.check(t.secret, now + dt.timedelta(hours=2))
    used = tokens.StoredToken.from_secret(tokens.consume(obj))
    assert used is not None and used.uses == 0
    with pytest.raises(tokens.TokenError, match="no uses left"):
        used.check(t.secret, now)
    forever = tokens.StoredToken.from_secret(tokens.secret_object(t, ttl=None, uses=None))
    assert forever is not None and forever.expires is None and forever.uses is None
    forever.check(t.secret)
    assert tokens.StoredToken.from_secret({"type": "Opaque", "data": {}}) is None


def test_ca_pins_its_key_and_signs_requests_for_the_name_it_chooses() -> None:
    ca = pki.CA.create()
    other = pki.CA.create()
    assert ca.pin == pki.spki_sha256(ca.cert) != other.pin
    key = pki.new_key()
    cert = ca.issue_for_csr(pki.new_csr(key, "anything-the-node-asks"), cn="system:node:edge-1", lifetime=dt.timedelta(hours=1))
    assert cert.subject.rfc4514_string() == "CN=system:node:edge-1"
    assert pki.issued_by(cert, [other.cert, ca.cert]) and not pki.issued_by(cert, [other.cert])
    assert dt.timedelta(minutes=59) < pki.not_after(cert) - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)
    with pytest.raises(pki.PkiError):
        pki.load_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")


def _iat(jwt: str) -> int:
    return int(natsjwt.decode(jwt, verify_signature=False)["iat"])


def test_every_account_jwt_is_issued_later_than_the_one_before(tmp_path: Path) -> None:
    """A server keeps either of two account JWTs issued in the same second, so a revocation
    issued right after a server's preload could be undone by the preload's copy."""
    from edgebus.identity import cloud

    p = cloud.CloudPki.ensure(tmp_path / "pki", hosts=["127.0.0.1"], users=())
    preload = p.account_jwt()
    revoked = p.account_jwt({Key.new(natsjwt.PREFIX_USER).public: 1})
    assert _iat(revoked) > _iat(preload)
    cloud._last_iat.clear()  # another process (cloudhub) issuing from the same dir
    assert _iat(cloud.CloudPki(tmp_path / "pki").account_jwt()) > _iat(revoked)
