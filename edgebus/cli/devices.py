"""``edgebus device``: set desired values, run simulated devices."""

from __future__ import annotations

import asyncio
import copy
import signal
from typing import Annotated, Any

import typer

from edgebus.cli.client import Api, ApiError, api_client
from edgebus.cli.output import echo, fail
from edgebus.cli.resources import api_path
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.objects.devices import device_model_name, model_props

app = typer.Typer(help="Devices: set desired values, simulate devices.", no_args_is_help=True)
simulate_app = typer.Typer(help="Run a simulated device in the foreground (Ctrl-C stops it).", no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")


def _api(ctx: typer.Context) -> Api:
    opts = ctx.obj
    return api_client(getattr(opts, "server", None), getattr(opts, "data_dir", None))


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        name, sep, value = p.partition("=")
        if not sep or not name.strip():
            fail(f"{p!r}: give PROPERTY=VALUE")
        out[name.strip()] = value.strip()
    return out


def with_desired(device: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The device with ``values`` as desired values (a property not listed yet is added)."""
    out = copy.deepcopy(device)
    props = out.setdefault("spec", {}).setdefault("properties", [])
    for name, value in values.items():
        entry = next((p for p in props if isinstance(p, dict) and p.get("name") == name), None)
        if entry is None:
            entry = {"name": name}
            props.append(entry)
        entry["desired"] = {**(entry.get("desired") or {}), "value": value}
    return out


def check_desired(api: Api, namespace: str, device: dict[str, Any], values: dict[str, str]) -> None:
    """Refuse values the device's model refuses (the API accepts them, as KubeEdge does, with
    a warning: a desired value the edge would never write)."""
    model_name = device_model_name(device)
    if not model_name:
        return
    try:
        model = api.request("GET", api_path(DEVICEMODELS, namespace, model_name))
    except ApiError:
        return
    props = model_props(model)
    for name, value in values.items():
        mp = props.get(name)
        if mp is None:
            fail(f"the model {model_name} has no property {name}")
        if not mp.writable:
            fail(f"property {name} is ReadOnly")
        try:
            mp.check(value)
        except ValueError as exc:
            fail(f"{name}={value}: {exc}")


@app.command("set")
def set_desired(
    ctx: typer.Context,
    device: str,
    assignments: Annotated[list[str], typer.Argument(metavar="PROPERTY=VALUE...")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
) -> None:
    """Set desired values of a device (the mapper writes them; status.twins shows them)."""
    values = parse_assignments(assignments)
    api = _api(ctx)
    path = api_path(DEVICES, namespace, device)
    for _ in range(5):
        try:
            cur = api.request("GET", path)
            check_desired(api, namespace, cur, values)
            api.request("PUT", path, json_body=with_desired(cur, values))
        except ApiError as exc:
            if exc.code == 409:
                continue
            fail(str(exc))
        echo(f"device/{device} desired: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        return
    fail(f"device/{device} kept changing; try again")


def _run_forever(start: Any, stop: Any, banner: str) -> None:
    async def main() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await start()
        echo(banner)
        try:
            await done.wait()
        finally:
            await stop()

    asyncio.run(main())


@simulate_app.command("modbus")
def simulate_modbus(
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port to listen on")] = 5020,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    device_id: Annotated[int, typer.Option(help="Modbus unit / device id")] = 1,
    temperature: Annotated[float, typer.Option(help="initial temperature (°C)")] = 24.0,
    setpoint: Annotated[float, typer.Option(help="initial setpoint (°C)")] = 22.0,
    drift: Annotated[bool, typer.Option("--drift/--no-drift", help="temperature rises while the fan is off, falls while on")] = True,
) -> None:
    """A Modbus TCP thermostat: IR0 temperature (int16, x0.1), IR1-2 humidity (float32),
    HR0 setpoint (int16, x0.1), coil 0 fan, discrete input 0 alarm (> 35 °C)."""
    from edgebus.devices.simulators import ModbusThermostat

    sim = ModbusThermostat(host, port, device_id=device_id, temperature=temperature, setpoint=setpoint, drift=drift)
    _run_forever(sim.start, sim.stop, f"Modbus thermostat on {host}:{port} (device id {device_id}); Ctrl-C stops it")


@simulate_app.command("opcua")
def simulate_opcua(
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port to listen on")] = 4840,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    temperature: Annotated[float, typer.Option(help="initial temperature (°C)")] = 24.0,
    drift: Annotated[bool, typer.Option("--drift/--no-drift")] = True,
) -> None:
    """An OPC-UA thermostat: ns=2;s=Temperature (Double), ns=2;s=Setpoint (Double, writable),
    ns=2;s=Fan (Boolean, writable)."""
    from edgebus.devices.simulators import OpcuaThermostat

    sim = OpcuaThermostat(host, port, temperature=temperature, drift=drift)
    _run_forever(sim.start, sim.stop, f"OPC-UA thermostat at {sim.url}; Ctrl-C stops it")
