"""edgebus.store: typed LMDB tables, atomic writes, map growth, one writer, no fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgebus.errors import RetryLater
from edgebus.store import Store, StoreError, StoreFull, StoreLocked, Table, Txn

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db", map_size=64 * KIB, sync=False)
    try:
        yield s
    finally:
        s.close()


def put_all(store: Store, table: Table[Any], items: dict[str, Any]) -> None:
    def fn(txn: Txn) -> None:
        for k, v in items.items():
            table.put(txn, k, v)

    store.write(fn)


def run_python(code: str, timeout: float = 20) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON line as its result."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def test_put_get_delete(store: Store) -> None:
    t = store.table("objects")
    assert store.table("objects") is t
    value = {"metadata": {"name": "web"}, "n": 3, "blob": b"\x00\xff", "list": [1, "a", None]}
    put_all(store, t, {"a": value})
    assert t.get("a") == value
    assert t.get("missing") is None
    assert t.count() == 1
    assert store.write(lambda txn: t.delete(txn, "a")) is True
    assert store.write(lambda txn: t.delete(txn, "a")) is False
    assert t.get("a") is None
    assert t.count() == 0


def test_tables_are_separate(store: Store) -> None:
    a, b = store.table("a"), store.table("b")
    put_all(store, a, {"k": 1})
    put_all(store, b, {"k": 2})
    assert (a.get("k"), b.get("k")) == (1, 2)
    assert list(a.items()) == [("k", 1)]


def test_write_returns_and_reads_own_writes(store: Store) -> None:
    t = store.table("t")

    def fn(txn: Txn) -> Any:
        t.put(txn, "k", "v1")
        seen = t.get("k", txn)
        inside = list(t.items("", txn))
        return seen, inside

    assert store.write(fn) == ("v1", [("k", "v1")])


def test_items_ordering_and_prefix_boundaries(store: Store) -> None:
    t = store.table("objects")
    keys = [
        "/core/v1/pods/default/web",
        "/core/v1/pods/default/api",
        "/core/v1/pods/default-2/x",
        "/core/v1/pods/defaul/y",
        "/core/v1/pods/kube-system/dns",
        "/core/v1/podsx/default/z",
        "/core/v1/configmaps/default/cfg",
    ]
    put_all(store, t, {k: i for i, k in enumerate(keys)})
    all_keys = [k for k, _ in t.items()]
    assert all_keys == sorted(keys)
    assert [k for k, _ in t.items("/core/v1/pods/default/")] == [
        "/core/v1/pods/default/api",
        "/core/v1/pods/default/web",
    ]
    assert [k for k, _ in t.items("/core/v1/pods/")] == sorted(k for k in keys if k.startswith("/core/v1/pods/"))
    assert list(t.items("/core/v1/secrets/")) == []
    assert list(t.items("~")) == []  # past the last key
    assert dict(t.items("/core/v1/configmaps/")) == {"/core/v1/configmaps/default/cfg": 6}


def test_items_is_a_snapshot(store: Store) -> None:
    t = store.table("t")
    put_all(store, t, {"a": 1, "b": 2})
    it = iter(t.items())
    assert next(it) == ("a", 1)
    put_all(store, t, {"b": 20, "c": 3})
    assert list(it) == [("b", 2)]
    assert list(t.items()) == [("a", 1), ("b", 20), ("c", 3)]


def test_failed_write_commits_nothing(store: Store) -> None:
    t = store.table("t")
    put_all(store, t, {"keep": 1})

    def fn(txn: Txn) -> None:
        t.put(txn, "new", 1)
        t.put(txn, "keep", 2)
        t.delete(txn, "keep")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        store.write(fn)
    assert t.get("new") is None
    assert t.get("keep") == 1
    assert list(t.items()) == [("keep", 1)]
    # The store is still usable.
    put_all(store, t, {"after": 1})
    assert t.get("after") == 1


def test_unpackable_value_aborts(store: Store) -> None:
    t = store.table("t")
    with pytest.raises(TypeError):
        store.write(lambda txn: (t.put(txn, "a", 1), t.put(txn, "b", object())))
    assert t.get("a") is None


# ---------------------------------------------------------------------------------------
# Map growth
# ---------------------------------------------------------------------------------------


def test_map_grows_within_one_transaction(store: Store) -> None:
    t = store.table("t")
    assert store.map_size() == 64 * KIB
    calls = 0
    blob = os.urandom(64 * KIB)

    def fn(txn: Txn) -> int:
        nonlocal calls
        calls += 1
        for i in range(64):  # 4 MiB
            t.put(txn, f"k{i:03d}", blob)
        return calls

    assert store.write(fn) > 1  # re-run after growing
    assert store.map_size() >= 4 * MIB
    assert t.count() == 64
    assert t.get("k063") == blob
    assert store.used_bytes() >= 4 * MIB


def test_map_grows_across_transactions(store: Store) -> None:
    t = store.table("t")
    blob = b"x" * (256 * KIB)
    for i in range(16):  # 4 MiB, a quarter MiB at a time
        put_all(store, t, {f"k{i:02d}": blob})
    assert store.map_size() >= 4 * MIB
    assert [k for k, _ in t.items()] == [f"k{i:02d}" for i in range(16)]


def test_grown_map_survives_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "db", map_size=64 * KIB, sync=False)
    t = s.table("t")
    put_all(s, t, {f"k{i}": b"x" * (100 * KIB) for i in range(20)})
    grown = s.map_size()
    s.close()
    s2 = Store(tmp_path / "db", map_size=64 * KIB, sync=False)
    try:
        # LMDB maps at least the committed data; the next write grows again as needed.
        assert s2.map_size() >= 20 * 100 * KIB
        t2 = s2.table("t")
        assert t2.count() == 20
        put_all(s2, t2, {f"more{i}": b"y" * (100 * KIB) for i in range(20)})
        assert t2.count() == 40 and t2.get("k0") == b"x" * (100 * KIB)
        assert s2.map_size() >= grown
    finally:
        s2.close()


def test_max_map_size_raises_store_full(tmp_path: Path) -> None:
    s = Store(tmp_path / "db", map_size=64 * KIB, max_map_size=256 * KIB, sync=False)
    try:
        t = s.table("t")
        put_all(s, t, {"small": 1})
        with pytest.raises(StoreFull) as ei:
            put_all(s, t, {f"k{i}": b"x" * (64 * KIB) for i in range(16)})
        err = ei.value
        assert isinstance(err, RetryLater) and isinstance(err, StoreError)
        assert err.delay > 0
        assert "256" in str(err) or str(256 * KIB) in str(err)
        assert s.map_size() <= 256 * KIB
        # Nothing of the failed write was committed; what was there is intact and writable.
        assert [k for k, _ in t.items()] == ["small"]
        put_all(s, t, {"again": 2})
        assert t.get("again") == 2
    finally:
        s.close()


def test_store_full_is_retry_later() -> None:
    assert issubclass(StoreFull, RetryLater)
    assert issubclass(StoreFull, StoreError)
    e = StoreFull("full")
    assert str(e) == "full"


# ---------------------------------------------------------------------------------------
# One writer process, read-only readers
# ---------------------------------------------------------------------------------------

_OPEN_WRITER = """
    import json, sys
    from edgebus.store import Store, StoreLocked
    try:
        Store({path!r}).close()
        print(json.dumps("opened"))
    except StoreLocked as e:
        print(json.dumps(["locked", str(e)]))
"""


def test_second_writer_process_gets_store_locked(store: Store) -> None:
    result = run_python(_OPEN_WRITER.format(path=str(store.path)))
    assert result[0] == "locked"
    assert str(store.path) in result[1]


def test_writer_lock_is_released_on_close(tmp_path: Path) -> None:
    s = Store(tmp_path / "db", map_size=64 * KIB)
    s.close()
    assert run_python(_OPEN_WRITER.format(path=str(tmp_path / "db"))) == "opened"


def test_second_writer_in_same_process_gets_store_locked(store: Store) -> None:
    with pytest.raises(StoreLocked):
        Store(store.path)


def test_read_only_opener_can_read(store: Store) -> None:
    t = store.table("objects")
    put_all(store, t, {"/core/v1/pods/default/a": {"n": 1}, "/core/v1/pods/default/b": {"n": 2}})
    code = f"""
        import json
        from edgebus.store import Store, StoreError
        r = Store({str(store.path)!r}, readonly=True)
        t = r.table("objects")
        out = {{"a": t.get("/core/v1/pods/default/a"), "items": [k for k, _ in t.items("/core/v1/pods/")]}}
        try:
            r.write(lambda txn: None)
        except StoreError as e:
            out["write"] = str(e)
        print(json.dumps(out))
    """
    out = run_python(code)
    assert out == {
        "a": {"n": 1},
        "items": ["/core/v1/pods/default/a", "/core/v1/pods/default/b"],
        "write": "store is read-only",
    }


def test_read_only_opener_survives_writer_map_growth(store: Store) -> None:
    t = store.table("t")
    put_all(store, t, {"first": 1})
    code = f"""
        import json, sys
        from edgebus.store import Store
        r = Store({str(store.path)!r}, readonly=True, map_size=64 * 1024)  # as configured for the writer
        t = r.table("t")
        print(json.dumps(t.get("first")), flush=True)
        sys.stdin.readline()
        try:
            out = [t.get("first"), t.get("big63") is not None]
        except Exception as e:
            out = ["error", type(e).__name__]
        print(json.dumps(out), flush=True)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert json.loads(proc.stdout.readline()) == 1
        put_all(store, t, {f"big{i}": b"x" * (64 * KIB) for i in range(64)})  # grows the map to >= 4 MiB
        proc.stdin.write("\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(5)
    assert result == [1, True]


def test_items_snapshot_survives_map_growth(store: Store) -> None:
    t = store.table("t")
    put_all(store, t, {"a": 1, "b": 2, "c": 3})
    it = iter(t.items())
    assert next(it) == ("a", 1)
    put_all(store, t, {f"big{i}": b"x" * (64 * KIB) for i in range(32)})
    assert list(it) == [("b", 2), ("c", 3)]


# ---------------------------------------------------------------------------------------
# fork()
# ---------------------------------------------------------------------------------------


def in_child(fn: Callable[[], Any]) -> str:
    """Run ``fn`` in a forked child; return 'ok:<repr>' or '<ExceptionType>:<message>'."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            try:
                out = f"ok:{fn()!r}"
            except BaseException as e:  # noqa: BLE001 - report anything
                out = f"{type(e).__name__}:{e}"
            os.write(w, out.encode())
            os.close(w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


@pytest.fixture
def forkable_store(store: Store) -> Store:
    t = store.table("t")
    put_all(store, t, {"k": "v"})
    return store


def test_write_after_fork_raises(forkable_store: Store) -> None:
    t = forkable_store.table("t")
    out = in_child(lambda: forkable_store.write(lambda txn: t.put(txn, "child", 1)))
    assert out.startswith("StoreError:") and "fork" in out
    assert t.get("child") is None
    assert t.get("k") == "v"  # the parent is unaffected


def test_table_after_fork_raises(forkable_store: Store) -> None:
    out = in_child(lambda: forkable_store.table("other"))
    assert out.startswith("StoreError:") and "fork" in out


@pytest.mark.parametrize("op", ["get", "items", "count"])
def test_table_reads_after_fork_raise(forkable_store: Store, op: str) -> None:
    t = forkable_store.table("t")
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: t.get("k"),
        "items": lambda: list(t.items()),
        "count": lambda: t.count(),
    }
    out = in_child(calls[op])
    assert out.startswith("StoreError:"), out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_a_full_disk_is_store_full_and_the_store_works_again_after(tmp_path: Path) -> None:
    """LMDB answers a commit on a full disk with EIO: that is StoreFull (retry later), not a
    crash that would count towards dead-lettering the message."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        s = Store(mnt / "db", map_size=64 * MIB)
        t = s.table("x")
        with pytest.raises(StoreFull, match="could not commit"):
            for i in range(1000):
                s.write(lambda txn, i=i: t.put(txn, f"k{i}", "v" * 50_000))
        s.write(lambda txn: [t.delete(txn, k) for k, _ in t.items()])  # space again
        s.write(lambda txn: t.put(txn, "after", "ok"))
        assert t.get("after") == "ok"
        s.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
