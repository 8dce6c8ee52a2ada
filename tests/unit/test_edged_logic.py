"""edged's per-container sync decisions (services/edged/logic.py), from what the runtime reports."""

from __future__ import annotations

from typing import Any

import pytest

from services.edged import logic as L
from services.edged import spec as S
from services.edged.runtime import Observed
from services.edged.status import CREATED, EXITED, RUNNING, CState

SPEC: dict[str, Any] = {"name": "app", "image": "busybox", "command": ["sleep", "60"]}
SB = "sb-2"


def c(state: str, *, attempt: int = 0, sandbox: str = SB, exit_code: int = 0, spec: dict[str, Any] = SPEC, name: str = "app") -> CState:
    return CState(id=f"{name}-{sandbox}-{attempt}", name=name, attempt=attempt, state=state, sandbox_id=sandbox, created_at=attempt + 1, exit_code=exit_code, hash=S.container_hash(spec))


def act(*cs: CState, policy: str = "Always", forced: bool = False, liveness: str | None = None) -> L.Action:
    return L.container_action(SPEC, Observed(containers=list(cs)), SB, policy, forced=forced, liveness=lambda cid: liveness if cid.endswith(f"-{SB}-0") else None)


def test_none_yet_is_created() -> None:
    assert act() == L.Action(L.Do.CREATE)


def test_running_as_wanted_is_kept() -> None:
    assert act(c(RUNNING)).do is L.Do.KEEP


def test_a_changed_spec_restarts_before_a_liveness_verdict() -> None:
    old = c(RUNNING, spec={**SPEC, "image": "other"})
    assert act(old, liveness="liveness probe failed: x") == L.Action(L.Do.RESTART, L.SPEC_CHANGED, old)


def test_a_liveness_failure_restarts() -> None:
    assert act(c(RUNNING), liveness="liveness probe failed: exit 1") == L.Action(L.Do.RESTART, "liveness probe failed: exit 1", c(RUNNING))


def test_created_is_started() -> None:
    assert act(c(CREATED)).do is L.Do.START


def test_running_in_an_old_sandbox_is_stopped() -> None:
    old = c(RUNNING, sandbox="sb-1")
    assert act(old) == L.Action(L.Do.STOP_STRAY, container=old)


@pytest.mark.parametrize(("policy", "code", "want"), [("Always", 0, L.Do.CREATE_AFTER_BACKOFF), ("OnFailure", 1, L.Do.CREATE_AFTER_BACKOFF), ("OnFailure", 0, L.Do.KEEP), ("Never", 1, L.Do.KEEP)])
def test_an_exited_container_follows_the_restart_policy(policy: str, code: int, want: L.Do) -> None:
    assert act(c(EXITED, exit_code=code), policy=policy).do is want


def test_a_forced_restart_skips_policy_and_backoff() -> None:
    last = c(EXITED, exit_code=0)
    assert act(last, policy="Never", forced=True) == L.Action(L.Do.CREATE, container=last)


def test_strays_and_finished() -> None:
    obs = Observed(containers=[c(EXITED, name="app"), c(RUNNING, name="gone"), c(EXITED, name="init")])
    assert [s.name for s in L.strays(obs, ["app", "init"])] == ["gone"]
    assert L.finished(obs, ["app"], "Never", forced=())
    assert not L.finished(obs, ["app"], "Always", forced=())
    assert not L.finished(obs, ["app"], "Never", forced={"app"})
    assert not L.finished(Observed(), ["app"], "Never", forced=())
