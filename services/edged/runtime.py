"""What containerd runs for a pod, read through CRI and turned into :class:`CState`.

``ListContainers`` lacks exit codes and start/finish times, so each container's
``ContainerStatus`` is read once per state it reaches (created, running, exited) and
cached: a steady pod costs two list calls per sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgebus.cri import CriClient, CriNotFound, api
from services.edged.spec import ANN_HASH, LABEL_NODE, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID
from services.edged.status import CREATED, EXITED, RUNNING, UNKNOWN, CState

_STATE = {api.CONTAINER_CREATED: CREATED, api.CONTAINER_RUNNING: RUNNING, api.CONTAINER_EXITED: EXITED}


@dataclass
class Observed:
    """A pod's sandboxes and containers in the runtime."""

    sandboxes: list[api.PodSandbox] = field(default_factory=list)
    containers: list[CState] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.sandboxes and not self.containers

    def ready_sandbox(self) -> api.PodSandbox | None:
        ready = [s for s in self.sandboxes if s.state == api.SANDBOX_READY]
        return max(ready, key=lambda s: (s.metadata.attempt, s.created_at)) if ready else None

    def by_name(self, name: str, sandbox_id: str | None = None) -> list[CState]:
        """Containers named ``name`` (in one sandbox, or all), latest attempt first."""
        cs = [c for c in self.containers if c.name == name and (sandbox_id is None or c.sandbox_id == sandbox_id)]
        return sorted(cs, key=lambda c: (c.attempt, c.created_at), reverse=True)

    def latest(self, name: str, sandbox_id: str | None = None) -> CState | None:
        cs = self.by_name(name, sandbox_id)
        return cs[0] if cs else None

    def previous(self, name: str) -> CState | None:
        cs = self.by_name(name)
        return cs[1] if len(cs) > 1 else None

    def start_ns(self) -> int:
        return min((s.created_at for s in self.sandboxes), default=0)

    def dir_names(self) -> set[str]:
        out = set()
        for s in self.sandboxes:
            md = s.metadata
            out.add(f"{md.namespace}_{md.name}_{md.uid}")
        return out


def pod_labels_of(sandbox: api.PodSandbox) -> tuple[str, str, str]:
    lb = sandbox.labels
    return lb.get(LABEL_POD_NAMESPACE, ""), lb.get(LABEL_POD_NAME, ""), lb.get(LABEL_POD_UID, "")


class RuntimeView:
    def __init__(self, cri: CriClient, node: str) -> None:
        self.cri = cri
        self.node = node
        self._cache: dict[str, tuple[int, CState]] = {}

    def forget(self, container_id: str) -> None:
        self._cache.pop(container_id, None)

    def prune(self, live_ids: set[str]) -> None:
        for cid in list(self._cache):
            if cid not in live_ids:
                del self._cache[cid]

    async def observe(self, uid: str) -> Observed:
        sel = {LABEL_NODE: self.node, LABEL_POD_UID: uid}
        boxes = await self.cri.list_pod_sandbox(sel)
        cs = await self.cri.list_containers(sel)
        out = Observed(sandboxes=list(boxes))
        for c in cs:
            st = await self.cstate(c)
            if st is not None:
                out.containers.append(st)
        return out

    async def cstate(self, c: api.Container) -> CState | None:
        hit = self._cache.get(c.id)
        if hit is not None and hit[0] == c.state:
            return hit[1]
        state = _STATE.get(c.state, UNKNOWN)
        base = CState(
            id=c.id,
            name=c.metadata.name,
            attempt=int(c.metadata.attempt),
            state=state,
            sandbox_id=c.pod_sandbox_id,
            created_at=int(c.created_at),
            image=c.image.image,
            image_ref=c.image_ref,
            hash=c.annotations.get(ANN_HASH, ""),
        )
        if state == CREATED:
            self._cache[c.id] = (c.state, base)
            return base
        try:
            s = await self.cri.container_status(c.id)
        except CriNotFound:
            return None
        st = CState(
            id=base.id,
            name=base.name,
            attempt=base.attempt,
            state=_STATE.get(s.state, UNKNOWN),
            sandbox_id=base.sandbox_id,
            created_at=int(s.created_at),
            started_at=int(s.started_at),
            finished_at=int(s.finished_at),
            exit_code=int(s.exit_code),
            reason=s.reason,
            message=s.message,
            image=s.image.image or base.image,
            image_ref=s.image_ref or base.image_ref,
            hash=base.hash,
        )
        if st.state == UNKNOWN and st.finished_at:
            st = replace(st, state=EXITED)
        self._cache[c.id] = (s.state, st)
        return st
