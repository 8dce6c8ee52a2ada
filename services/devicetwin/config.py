from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class DeviceTwinSettings(BaseModel):
    data_dir: str = Field("./data/devicetwin", description="LMDB environment directory (twins, pending rule events).")
    resync_interval: float = Field(10.0, description="Seconds between full re-lists of Devices and DeviceModels from metamanager.")
    report_min_interval: float = Field(0.0, description="Minimum seconds between two upstream flushes (0: as soon as something changed; changes coalesce per device while a flush runs).")
    dmi: bool = Field(True, description="Serve KubeEdge's DMI (gRPC DeviceManagerService) for DMI mappers.")
    dmi_socket: str = Field("", description="The DMI unix socket (default: <data_dir>/dmi.sock; KubeEdge's is /etc/kubeedge/dmi.sock).")
    dmi_resync: float = Field(10.0, description="Seconds between passes that bring DMI mappers level with the node (also on every change).")


class Settings(ServiceSettings):
    devicetwin: DeviceTwinSettings = DeviceTwinSettings()
