"""The web console in a real headless browser (Debian's chromium driven by Selenium through
the system chromedriver) against a real lab with devices: sign in with the lab's admin
token; the fleet lists the lab's real node Ready; the node page shows its pod and events;
the fleet shows its outbox backlog, kept (with its age) while it is offline; the device
page shows the simulated thermostat's live twin values, and its temperature
(which the simulator changes by itself) moves on the page without a reload; a desired value
set from the page is written to the device (read back over Modbus); a user whose RBAC only
lets them read sees the set refused with 403; the devices and events pages; an open fleet
page follows edge-1 stopping (NotReady, link down) and starting again without a reload, and
the node's link history shows both. Screenshots are kept in
``test-artifacts/console/`` (gitignored; ``EDGEBUS_TEST_ARTIFACTS`` moves it)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edgebus import names
from edgebus.objects import NODES
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver are not installed (./dev setup installs them as root)")
WAIT = 60.0


def artifacts_dir(name: str) -> Path:
    d = Path(os.environ.get("EDGEBUS_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "console" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


class Browser:
    """One headless chromium session (its own profile, so its own cookies)."""

    def __init__(self, shots: Path, name: str) -> None:
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000", "--ignore-certificate-errors", "--no-first-run"):
            opts.add_argument(a)
        self.driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
        self.shots = shots
        self.name = name

    def close(self) -> None:
        self.driver.quit()

    def shot(self, what: str) -> Path:
        p = self.shots / f"{self.name}-{what}.png"
        self.driver.save_screenshot(str(p))
        return p

    def wait(self, cond: Any, timeout: float = WAIT, msg: str = "") -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        # a live page swaps its fragment in at any time: an element can go stale under a read
        ignored = (NoSuchElementException, StaleElementReferenceException, IndexError)
        return WebDriverWait(self.driver, timeout, poll_frequency=0.25, ignored_exceptions=ignored).until(cond, msg)

    def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By

        return str(self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css).text or True, msg=css))

    def sign_in(self, base: str, token: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{base}/console/")
        self.wait(lambda d: d.find_elements(By.ID, "token"), msg="the login page")
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.ID, "signin").click()
        self.wait(lambda d: d.current_url.rstrip("/").endswith("/console"), msg="signed in")


@pytest.fixture
async def device_lab(tmp_path: Path) -> Any:
    rl = await start_lab(tmp_path, proxy=False)
    try:
        yield rl
    finally:
        await stop_lab(rl)


def _client(rl: RunningLab, token: str | None = None) -> httpx.AsyncClient:
    kw = rl.lab.plan.http_kwargs()
    if token:
        kw["headers"] = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=rl.lab.plan.apiserver_url, timeout=15, **kw)


async def _setup(rl: RunningLab) -> str:
    """The thermostat (a rule that fires at once, so the node has an Event), the hello pod,
    and a ServiceAccount that may only read; returns its token."""
    plan = rl.lab.plan
    model, device = list(yaml.safe_load_all((EXAMPLES / "thermostat.yaml").read_text()))
    device["spec"]["protocol"]["configData"]["port"] = plan.sim_modbus_port("edge-1")
    device["spec"]["rules"] = [{"name": "fan-on", "when": "temperature > -100", "set": {"fan": "true"}}]
    cm, pod = list(yaml.safe_load_all((EXAMPLES / "hello.yaml").read_text()))
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "console-viewer"},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes", "pods", "pods/log", "events"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["devices.kubeedge.io"], "resources": ["devices", "devicemodels"], "verbs": ["get", "list", "watch"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "console-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "console-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}],
    }
    async with _client(rl) as c:
        for path, obj in (
            ("/apis/devices.kubeedge.io/v1beta1/namespaces/default/devicemodels", model),
            ("/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices", device),
            ("/api/v1/namespaces/default/configmaps", cm),
            ("/api/v1/namespaces/default/pods", pod),
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", role),
            ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding),
            ("/api/v1/namespaces/default/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer"}}),
        ):
            r = await c.post(path, json=obj)
            assert r.status_code == 201, (path, r.text)
        r = await c.post("/api/v1/namespaces/default/serviceaccounts/viewer/token", json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
        assert r.status_code == 201, r.text
        token = str(r.json()["status"]["token"])
    async with _client(rl, token) as v:

        async def viewer_reads() -> bool:
            return (await v.get("/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/thermostat")).status_code == 200

        await eventually(viewer_reads, timeout=20, msg="the viewer's binding in force")
    return token


async def _setpoint(port: int) -> float:
    """The thermostat's setpoint, read over Modbus TCP (holding register 0, int16, ×0.1)."""
    from pymodbus.client import AsyncModbusTcpClient

    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2)
    await c.connect()
    try:
        rr = await c.read_holding_registers(0, count=1, device_id=1)
        assert not rr.isError(), rr
        raw = rr.registers[0]
        return (raw - 0x10000 if raw & 0x8000 else raw) / 10
    finally:
        c.close()


@pytest.fixture
def browsers() -> Iterator[list[Browser]]:
    made: list[Browser] = []
    yield made
    for b in made:
        try:
            b.shot("last")
        finally:
            b.close()


@needs_browser
@pytest.mark.timeout(420)
async def test_console_in_a_browser(device_lab: RunningLab, browsers: list[Browser]) -> None:
    from selenium.webdriver.common.by import By

    rl = device_lab
    plan = rl.lab.plan
    base = plan.apiserver_url
    viewer_token = await _setup(rl)
    shots = artifacts_dir("lab")

    def admin_story() -> None:
        b = Browser(shots, "admin")
        browsers.append(b)
        b.sign_in(base, str(plan.admin_token()))
        # the fleet: the lab's real node, Ready, with its pod and device counted
        b.wait(lambda d: d.find_elements(By.ID, "node-edge-1"), msg="edge-1 on the fleet page")
        b.wait(lambda d: d.find_element(By.ID, "node-edge-1").get_attribute("data-ready") == "True", msg="edge-1 Ready")
        row = b.text("#node-edge-1")
        assert "Ready" in row and "up" in row, row
        b.wait(lambda d: "/1" in d.find_element(By.ID, "node-edge-1").find_elements(By.TAG_NAME, "td")[7].text, msg="the thermostat counted")
        # the node's outbox backlog, as its edgehub reported it (nothing pending on a linked node)
        b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#node-edge-1 td.backlog").get_attribute("data-messages") == "0", msg="edge-1's outbox backlog")
        b.shot("fleet")
        # filtering as one types (the page and its stream follow the filter)
        b.driver.find_element(By.ID, "filter-q").send_keys("no-such-node")
        b.wait(lambda d: not d.find_elements(By.ID, "node-edge-1") and "q=no-such-node" in d.current_url, msg="edge-1 filtered out")
        b.driver.find_element(By.ID, "filter-q").clear()
        b.driver.find_element(By.ID, "filter-q").send_keys("edge")
        b.wait(lambda d: d.find_elements(By.ID, "node-edge-1"), msg="edge-1 matches 'edge'")

        # one node: its pod and the rule's event
        href = b.wait(lambda d: d.find_element(By.LINK_TEXT, "edge-1").get_attribute("href"), msg="the node's link")
        b.driver.get(href)  # (a click could land on a row the stream just replaced)
        b.wait(lambda d: d.find_elements(By.ID, "pod-default-hello"), msg="the hello pod on edge-1's page")
        b.wait(lambda d: "RuleFired" in d.find_element(By.TAG_NAME, "main").text, msg="the rule's event on edge-1's page")
        assert "Ready" in b.text("#node-ready")
        b.shot("node")
        if plan.use_containerd:  # the pod runs: its log, fetched from edge-1 through the API
            b.wait(lambda d: "Running" in d.find_element(By.ID, "pod-default-hello").text, msg="hello Running")
            href = b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#pod-default-hello a").get_attribute("href"), msg="the pod's log link")

            def logged(d: Any) -> bool:
                d.get(href)  # the log page is not live: load it again until the first line is out
                return "hello from the cloud" in d.find_element(By.ID, "log").text

            b.wait(logged, msg="the pod's log")
            b.shot("pod-log")

        # the device: live twin values that change without a reload
        b.driver.get(f"{base}/console/devices/default/thermostat")
        b.wait(lambda d: d.find_element(By.ID, "device-state").text == "online", msg="thermostat online")

        def temperature(d: Any) -> str:
            return str(d.find_element(By.CSS_SELECTOR, "#prop-temperature .reported").get_attribute("data-value") or "")

        b.wait(temperature, msg="a reported temperature")
        first = temperature(b.driver)
        b.driver.execute_script("window.__notReloaded = true;")
        b.wait(lambda d: temperature(d) not in ("", first), msg=f"the temperature moves on from {first} on the page")
        assert b.driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
        b.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#prop-temperature svg.spark"), msg="the temperature's history chart")
        b.shot("device-live")

        # set a desired value from the page
        from selenium.webdriver.support.ui import Select

        Select(b.driver.find_element(By.ID, "desired-property")).select_by_value("setpoint")
        b.driver.find_element(By.ID, "desired-value").send_keys("25.5")
        b.driver.find_element(By.ID, "desired-submit").click()
        b.wait(lambda d: "setpoint desired = 25.5" in d.find_element(By.ID, "desired-result").text, msg="the set accepted")
        b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#prop-setpoint .desired").text == "25.5", msg="the desired value on the page")
        b.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#prop-setpoint .reported").get_attribute("data-value") == "25.5", msg="the reported setpoint follows")
        assert b.driver.execute_script("return window.__notReloaded === true;")
        b.shot("device-set")

    await asyncio.to_thread(admin_story)
    assert await _setpoint(int(plan.sim_modbus_port("edge-1") or 0)) == 25.5, "the device holds the value set from the page"

    def viewer_story() -> None:
        b = Browser(shots, "viewer")
        browsers.append(b)
        b.sign_in(base, viewer_token)
        b.wait(lambda d: d.find_elements(By.ID, "node-edge-1"), msg="the viewer sees the fleet")
        b.driver.get(f"{base}/console/devices/default/thermostat")
        b.wait(lambda d: d.find_element(By.ID, "device-state").text == "online", msg="the viewer sees the device")
        from selenium.webdriver.support.ui import Select

        Select(b.driver.find_element(By.ID, "desired-property")).select_by_value("setpoint")
        b.driver.find_element(By.ID, "desired-value").send_keys("30")
        b.driver.find_element(By.ID, "desired-submit").click()
        b.wait(lambda d: "403" in d.find_element(By.ID, "desired-result").text, msg="403 shown to the viewer")
        assert "forbidden" in b.text("#desired-result").lower()
        b.shot("viewer-403")

    await asyncio.to_thread(viewer_story)
    assert await _setpoint(int(plan.sim_modbus_port("edge-1") or 0)) == 25.5, "the viewer's value never reached the device"
    async with _client(rl) as c:
        dev = (await c.get("/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/thermostat")).json()
    assert {p["name"]: p.get("desired", {}).get("value") for p in dev["spec"]["properties"]}["setpoint"] == "25.5"

    # the devices and events pages; then the fleet page, left open, follows edge-1 going
    # away and coming back (link down, then up) without a reload
    b = browsers[0]

    def open_pages() -> None:
        b.driver.get(f"{base}/console/devices")
        b.wait(lambda d: "online" in d.find_element(By.ID, "device-default-thermostat").text, msg="the devices page")
        b.driver.get(f"{base}/console/events")
        b.wait(lambda d: "RuleFired" in d.find_element(By.ID, "live").text, msg="the events page")
        b.driver.get(f"{base}/console/")
        b.wait(lambda d: d.find_element(By.ID, "node-edge-1").get_attribute("data-ready") == "True", msg="edge-1 Ready")
        b.driver.execute_script("window.__notReloaded = true;")

    def link_is(ready: bool) -> None:
        b.wait(lambda d: (d.find_element(By.ID, "node-edge-1").get_attribute("data-ready") == "True") == ready, timeout=90, msg=f"edge-1 {'Ready' if ready else 'NotReady'} on the open fleet page")
        assert b.driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
        b.shot("fleet-" + ("up" if ready else "down"))

    await asyncio.to_thread(open_pages)
    await rl.lab.stop_group("edge-1")
    await asyncio.to_thread(link_is, False)
    assert "down" in await asyncio.to_thread(b.text, "#node-edge-1")
    # offline: the cloud keeps the last backlog report (whatever it was when the node went
    # away), shown with its age
    cell = await asyncio.to_thread(b.text, "#node-edge-1 td.backlog")
    node = await rl.store.get(NODES, None, "edge-1")
    kept = json.loads(node["metadata"]["annotations"][names.ANN_OUTBOX_BACKLOG])
    assert cell.startswith("0" if kept["messages"] == 0 else f"{kept['messages']:,} msgs") and "as of" in cell, (cell, kept)
    await rl.lab.start_group("edge-1")
    await asyncio.to_thread(link_is, True)

    def link_history() -> None:
        b.driver.get(f"{base}/console/nodes/edge-1")
        b.wait(lambda d: "down (" in d.find_element(By.ID, "link-history").text and "up (Ready)" in d.find_element(By.ID, "link-history").text, msg="edge-1's link history")
        b.shot("node-link-history")

    await asyncio.to_thread(link_history)
