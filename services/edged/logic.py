"""What a sync of one pod does, decided from the pod and what the runtime reports, with no
I/O (the kubelet's ``computePodActions``): :mod:`services.edged.pods` carries it out.

Status decisions (restart policy, crash back-off, phase, conditions) are in
:mod:`services.edged.status`; the pod spec's translation into CRI configuration is in
:mod:`services.edged.spec`."""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from services.edged import spec as S
from services.edged.runtime import Observed
from services.edged.status import CREATED, EXITED, RUNNING, CState, restart_wanted

SPEC_CHANGED = "its spec changed"


class Do(enum.Enum):
    KEEP = "keep"  # running as wanted, or exited and not to be restarted
    RESTART = "restart"  # running, but replaced: stop it; the next sync creates it anew
    START = "start"  # created and not yet started
    STOP_STRAY = "stop-stray"  # running in a sandbox that is not the pod's current one
    CREATE = "create"  # none yet, or forced: create and start it now
    CREATE_AFTER_BACKOFF = "create-after-backoff"  # exited, restart wanted once its back-off has passed


@dataclass(frozen=True, slots=True)
class Action:
    do: Do
    reason: str = ""
    #: the container acted on: the current one (RESTART, START), the one in an old sandbox
    #: (STOP_STRAY), or the latest before the one to create (CREATE*, None if there is none)
    container: CState | None = None


def container_action(spec: dict[str, Any], obs: Observed, sandbox_id: str, policy: str, *, forced: bool, liveness: Callable[[str], str | None]) -> Action:
    """What to do with the container ``spec`` of a pod whose ready sandbox is ``sandbox_id``.

    ``forced``: a restart already decided (its spec changed) bypasses the restart policy and
    the back-off; ``liveness``: the prober's verdict on a running container (by its ID)."""
    name = str(spec["name"])
    cur = obs.latest(name, sandbox_id)
    if cur is not None and cur.state == RUNNING:
        if cur.hash and cur.hash != S.container_hash(spec):
            return Action(Do.RESTART, SPEC_CHANGED, cur)
        if (failure := liveness(cur.id)) is not None:
            return Action(Do.RESTART, failure, cur)
        return Action(Do.KEEP, container=cur)
    if cur is not None and cur.state == CREATED:
        return Action(Do.START, container=cur)
    last = obs.latest(name)
    if last is not None and last.state == RUNNING and last.sandbox_id != sandbox_id:
        return Action(Do.STOP_STRAY, container=last)
    if last is not None and not forced:
        if not restart_wanted(policy, last):
            return Action(Do.KEEP, container=last)
        return Action(Do.CREATE_AFTER_BACKOFF, container=last)
    return Action(Do.CREATE, container=last)


def strays(obs: Observed, names: Collection[str]) -> list[CState]:
    """Containers of the pod whose name left its spec (containers and init containers)."""
    return [c for c in obs.containers if c.name not in names]


def finished(obs: Observed, names: Collection[str], policy: str, forced: Collection[str]) -> bool:
    """Every container has exited and none is to be started again: the pod is done."""
    return all((lc := obs.latest(n)) is not None and lc.state == EXITED and n not in forced and not restart_wanted(policy, lc) for n in names)
