from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class SchedulerSettings(BaseModel):
    name: str = Field("default-scheduler", description="The schedulerName of the pods this scheduler binds.")
    kv_replicas: int = Field(1, description="Replicas of the objects KV bucket (3 in a NATS cluster).")
    lease_ttl: float = Field(6.0, description="Seconds a standby replica waits for a dead leader's lease to expire.")
    bind_concurrency: int = Field(64, description="Bindings written at once (scheduling decisions do not wait for them).")
    event_concurrency: int = Field(16, description="Events and status updates written at once (best effort, never slowing bindings).")
    initial_backoff: float = Field(1.0, description="Seconds before a pod that failed to schedule is retried (doubling), as kube-scheduler.")
    max_backoff: float = Field(10.0, description="Longest back-off between attempts of one pod.")
    flush_unschedulable: float = Field(300.0, description="Seconds after which an unschedulable pod is retried even if nothing changed.")


class Settings(ServiceSettings):
    scheduler: SchedulerSettings = SchedulerSettings()
