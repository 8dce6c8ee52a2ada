"""The device user story in the lab, through the real CLI: apply the thermostat example for
the lab's simulated Modbus device, see live values in `edgebus get devices`, set a desired
value with `edgebus device set`, and watch the reported value follow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from edgebus.testing.labrun import LabCli
from edgebus.testing.waiting import eventually

from .conftest import BOTH_MODES, RunningLab

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "thermostat.yaml"


@BOTH_MODES
async def test_thermostat_in_the_lab(plain_lab: RunningLab) -> None:
    plan = plain_lab.lab.plan
    cli = LabCli(Path(plan.data_dir))
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    docs[1]["spec"]["protocol"]["configData"]["port"] = plan.sim_modbus_port("edge-1")
    out = await asyncio.to_thread(cli.run, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    assert "devicemodel/thermostat-model created" in out.stdout and "device/thermostat created" in out.stdout

    def table() -> str | None:
        text = cli.run("get", "devices").stdout
        return text if "online" in text and "temperature=" in text else None

    text = await eventually(lambda: asyncio.to_thread(table), timeout=30, interval=0.5, msg="live values in `edgebus get devices`")
    assert text.splitlines()[0].split()[:5] == ["NAME", "NODE", "MODEL", "STATE", "VALUES"]

    await asyncio.to_thread(cli.run, "device", "set", "thermostat", "setpoint=22.5")

    def followed() -> dict | None:
        dev = json.loads(cli.run("get", "device", "thermostat", "-o", "json").stdout)
        tw = {t["propertyName"]: t for t in dev.get("status", {}).get("twins", [])}
        ok = tw.get("setpoint", {}).get("reported", {}).get("value") == "22.5" and tw["setpoint"].get("observedDesired", {}).get("value") == "22.5"
        return dev if ok else None

    dev = await eventually(lambda: asyncio.to_thread(followed), timeout=30, interval=0.5, msg="setpoint written and reported")
    assert dev["status"]["state"] == "online" and dev["status"]["lastOnlineTime"]
    bad = await asyncio.to_thread(cli.run, "device", "set", "thermostat", "setpoint=99", check=False)
    assert bad.returncode != 0 and "above the maximum" in bad.stderr
