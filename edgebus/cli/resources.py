"""``edgebus get | apply | delete``: Kubernetes-style object commands against the apiserver."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import typer
import yaml

from edgebus.cli.client import Api, ApiError
from edgebus.cli.output import dump, echo, fail, table
from edgebus.objects import Resource, by_kind, resolve
from edgebus.objects.resources import UnknownResource
from edgebus.objects.tables import rows


def api_path(r: Resource, namespace: str | None, name: str | None = None) -> str:
    base = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
    if r.namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{r.plural}"
    return f"{base}/{name}" if name else base


def resource_or_fail(name: str) -> Resource:
    try:
        return resolve(name)
    except UnknownResource as exc:
        fail(str(exc))
        raise


def get(api: Api, resource: str, name: str | None, namespace: str, all_namespaces: bool, output: str | None, selector: str | None, field_selector: str | None) -> None:
    r = resource_or_fail(resource)
    ns = None if (all_namespaces and not name) else namespace
    params = {}
    if selector:
        params["labelSelector"] = selector
    if field_selector:
        params["fieldSelector"] = field_selector
    try:
        body = api.request("GET", api_path(r, ns, name), params=params or None)
    except ApiError as exc:
        fail(str(exc))
    items = [body] if name else body.get("items", [])
    if output in ("json", "yaml"):
        echo(dump(body, output))
        return
    if not items:
        where = "" if not r.namespaced or all_namespaces else f" in {namespace} namespace"
        echo(f"No resources found{where}.")
        return
    headers, data = rows(r.plural, items, wide=output == "wide", with_namespace=r.namespaced and all_namespaces and not name)
    echo(table(headers, data))


def load_manifests(path: str) -> list[dict[str, Any]]:
    text = typer.get_text_stream("stdin").read() if path == "-" else Path(path).read_text()
    docs: list[Any] = []
    try:
        for d in yaml.safe_load_all(text):
            if d is None:
                continue
            if isinstance(d, dict) and d.get("kind") == "List":
                docs.extend(d.get("items") or [])
            else:
                docs.append(d)
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML: {exc}")
    for d in docs:
        if not isinstance(d, dict) or not d.get("kind") or not d.get("apiVersion"):
            fail(f"{path}: every document needs apiVersion and kind")
    return docs


def _same(manifest: dict[str, Any], current: dict[str, Any]) -> bool:
    for k, v in manifest.items():
        if k in ("metadata", "status"):
            continue
        if current.get(k) != v:
            return False
    md, cmd = manifest.get("metadata") or {}, current.get("metadata") or {}
    return all((md.get(k) or {}) == (cmd.get(k) or {}) for k in ("labels", "annotations"))


def apply(api: Api, path: str, namespace: str) -> None:
    """Create each object, or replace it with the manifest when it changed."""
    failed = False
    for doc in load_manifests(path):
        try:
            r = by_kind(doc["apiVersion"], doc["kind"])
        except UnknownResource as exc:
            echo(f"error: {exc}")
            failed = True
            continue
        md = doc.setdefault("metadata", {})
        ns = (md.get("namespace") or namespace) if r.namespaced else None
        if r.namespaced:
            md["namespace"] = ns
        name = md.get("name")
        label = f"{r.singular}/{name}"
        try:
            for _ in range(5):
                try:
                    cur = api.request("GET", api_path(r, ns, name))
                except ApiError as exc:
                    if exc.code != 404:
                        raise
                    api.request("POST", api_path(r, ns), json_body=doc)
                    echo(f"{label} created")
                    break
                if _same(doc, cur):
                    echo(f"{label} unchanged")
                    break
                new = copy.deepcopy(doc)
                new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                try:
                    api.request("PUT", api_path(r, ns, name), json_body=new)
                except ApiError as exc:
                    if exc.code == 409:
                        continue  # changed under us: read again
                    raise
                echo(f"{label} configured")
                break
        except ApiError as exc:
            echo(f"error: {label}: {exc}")
            failed = True
    if failed:
        raise typer.Exit(1)


def delete(api: Api, resource: str | None, names_: list[str], path: str | None, namespace: str, ignore_not_found: bool, *, grace_period: int | None = None) -> None:
    targets: list[tuple[Resource, str | None, str]] = []
    if path:
        for doc in load_manifests(path):
            try:
                r = by_kind(doc["apiVersion"], doc["kind"])
            except UnknownResource as exc:
                fail(str(exc))
            md = doc.get("metadata") or {}
            targets.append((r, (md.get("namespace") or namespace) if r.namespaced else None, md.get("name", "")))
    elif resource:
        r = resource_or_fail(resource)
        if not names_:
            fail("give a name, or -f FILE")
        targets = [(r, namespace if r.namespaced else None, n) for n in names_]
    else:
        fail("give RESOURCE NAME, or -f FILE")
    failed = False
    for r, ns, n in targets:
        try:
            opts = None if grace_period is None else {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": grace_period}
            api.request("DELETE", api_path(r, ns, n), json_body=opts)
            echo(f'{r.singular} "{n}" deleted')
        except ApiError as exc:
            if exc.code == 404 and ignore_not_found:
                continue
            echo(f"error: {exc}")
            failed = True
    if failed:
        raise typer.Exit(1)
