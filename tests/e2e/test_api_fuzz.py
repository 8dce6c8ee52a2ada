"""schemathesis against the apiserver's own OpenAPI (every group-version it serves), on a
running lab: a bounded number of examples per operation, valid and invalid ones, also on
objects that exist (it patches, replaces and deletes them); no answer is a 5xx, the
apiserver stays up, and the lab's user story passes afterwards.

Anonymous for now; when the API authenticates, the fuzzer gets credentials (and an
anonymous one must get only 401s)."""

from __future__ import annotations

import multiprocessing
import random
import ssl
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from edgebus.testing.labrun import LabCli

from .test_user_story import test_user_story as user_story

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(720)]

#: examples per operation and generation mode (valid, invalid; on new and existing objects):
#: the API has a few hundred operations, so this keeps the run within a few minutes
EXAMPLES = 1
#: the whole fuzzing run stops taking new operations after this many seconds (a slow machine)
BUDGET = 360.0
#: worker processes generating and sending the examples
WORKERS = 2
TARGET = "fuzz-target"
TARGETS: list[tuple[str, dict[str, Any]]] = [
    ("/api/v1/namespaces", {"metadata": {"name": TARGET}}),
    ("/api/v1/nodes", {"metadata": {"name": TARGET}}),
    ("/api/v1/namespaces/default/configmaps", {"metadata": {"name": TARGET}, "data": {"a": "b"}}),
    ("/api/v1/namespaces/default/secrets", {"metadata": {"name": TARGET}}),
    ("/api/v1/namespaces/default/services", {"metadata": {"name": TARGET}, "spec": {"ports": [{"port": 80}]}}),
    ("/api/v1/namespaces/default/events", {"metadata": {"name": TARGET}, "involvedObject": {"kind": "Pod", "name": "x"}}),
    ("/api/v1/namespaces/default/pods", {"metadata": {"name": TARGET}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
]


def credentials(state: dict[str, Any]) -> dict[str, Any]:
    """The lab admin's bearer token and the cloud's CA (the API is HTTPS with authentication)."""
    token = Path(state["api_token_file"]).read_text().strip()
    return {"headers": {"Authorization": f"Bearer {token}"}, "verify": ssl.create_default_context(cafile=state["ca_file"])}


def ca_file(state: dict[str, Any]) -> str:
    return str(state["ca_file"])


def operations(base: str, creds: dict[str, Any]) -> list[Any]:
    root = httpx.get(f"{base}/openapi/v3", timeout=10, **creds).json()
    out = []
    for gv in root["paths"].values():
        doc = httpx.get(base + gv["serverRelativeURL"], timeout=30, **creds).json()
        out += [r.ok() for r in schemathesis.openapi.from_dict(doc).get_all_operations()]
    return out


def fuzz_part(base: str, state: dict[str, Any], part: int, parts: int) -> tuple[int, list[str]]:
    """Every ``parts``-th operation from ``part`` (the shares of the worker processes)."""
    creds, ca = credentials(state), ca_file(state)
    calls, errors = 0, []
    ops = operations(base, creds)
    random.Random(7).shuffle(ops)  # under a budget, every API group still gets its share
    ops = ops[part::parts]
    t0 = time.monotonic()
    done = 0
    for op in ops:
        if time.monotonic() - t0 > BUDGET:
            print(f"\nfuzzing budget spent after {done} of {len(ops)} operations")
            break
        done += 1
        known = {k: v for k, v in {"namespace": "default", "name": TARGET}.items() if "{" + k + "}" in op.path}
        strategy = st.one_of(*(op.as_strategy(mode, path_parameters=p) for mode in GenerationMode for p in ({}, known)))

        @settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate], database=None)
        @given(strategy)
        def run(case: Any) -> None:
            nonlocal calls
            q = case.query or {}
            if str(q.get("watch", "")).lower() in ("true", "1", "yes"):
                q["timeoutSeconds"] = 1  # a watch ends
                case.query = q
            r = case.call(base_url=base, timeout=20, headers={**(case.headers or {}), **creds["headers"]}, verify=ca)
            calls += 1
            if r.status_code >= 500:
                errors.append(f"{case.method} {r.request.url}: {r.status_code} {r.text[:300]}")

        run()
    return calls, errors


def fuzz(base: str, state: dict[str, Any]) -> tuple[int, list[str]]:
    """Generating the examples costs far more CPU than the apiserver spends answering them:
    the operations are shared among worker processes (fresh interpreters, not forks of the
    test's process)."""
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = [pool.submit(fuzz_part, base, state, i, WORKERS) for i in range(WORKERS)]
        results = [p.result() for p in parts]
    return sum(c for c, _ in results), [e for _, errs in results for e in errs]


def test_the_api_under_fuzzing(lab: LabCli, tmp_path: Path) -> None:
    st_ = lab.state()
    base = st_["apiserver"]
    api_pid = next(p["pid"] for p in st_["processes"] if p["name"] == "cloud/apiserver")
    creds = credentials(st_)
    for path, body in TARGETS:
        assert httpx.post(base + path, json=body, timeout=10, **creds).status_code == 201
    t0 = time.monotonic()
    calls, errors = fuzz(base, {k: st_[k] for k in ("api_token_file", "ca_file")})
    print(f"\n{calls} requests in {time.monotonic() - t0:.0f}s, {len(errors)} answered 5xx")
    assert not errors, "\n".join(errors[:20])
    assert httpx.get(f"{base}/readyz", timeout=10, **creds).status_code == 200
    assert next(p["pid"] for p in lab.state()["processes"] if p["name"] == "cloud/apiserver") == api_pid, "the apiserver restarted"
    user_story(lab, tmp_path)
