"""Tests for pickledb: both backends, sync and async, files, faults and bad input."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import datetime
import enum
import errno
import gc
import inspect
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
import uuid
import warnings
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import pickledb
from pickledb import MISSING, CorruptFileError, PickleDB, PickleDBSQLite

HERE = Path(__file__).resolve().parent


def run_python(code: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter that imports this checkout's pickledb."""
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,  # type: ignore[arg-type]
    )


def temp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# --- the backends, for tests that hold for both -----------------------------


@pytest.fixture(params=["json", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "json":
        yield PickleDB(tmp_path / "db.json")
    else:
        with PickleDBSQLite(tmp_path / "db.sqlite3") as kv:
            yield kv


def reopen(db):
    """A fresh instance over the same storage, after persisting `db`."""
    if isinstance(db, PickleDB):
        db.save()
        fresh = PickleDB(db.location)
        fresh.load()
        return fresh
    return PickleDBSQLite(db.path, db.table_name)


def test_common_api_sync(store) -> None:
    assert store.set("a", 1) in (True, "a")
    store.set(2, {"nested": [1, 2.5, None, "x"]})
    assert store.get("a") == 1
    assert store.get("2") == {"nested": [1, 2.5, None, "x"]}
    assert store.get(2) == {"nested": [1, 2.5, None, "x"]}  # keys are str(key)
    assert sorted(store.all()) == ["2", "a"]
    assert store.remove("a") is True
    assert store.remove("a") is False
    store.set_many({"x": 1, "y": [2]})
    store.set_many([("z", None)])
    fresh = reopen(store)
    try:
        assert sorted(fresh.all()) == ["2", "x", "y", "z"]
        assert fresh.get("y") == [2]
        assert fresh.get("z") is None
    finally:
        if isinstance(fresh, PickleDBSQLite):
            fresh.close()
    assert store.purge() is True
    assert store.all() == []


def test_common_api_async(store) -> None:
    async def main() -> None:
        assert await store.set("a", 1) in (True, "a")
        assert await store.get("a") == 1
        assert await store.all() == ["a"]
        await store.set_many({"b": 2, "c": 3})
        assert await store.remove("b") is True
        assert await store.remove("b") is False
        assert sorted(await store.all()) == ["a", "c"]
        if isinstance(store, PickleDB):
            assert await store.save() is True
        assert await store.purge() is True
        assert await store.all() == []

    asyncio.run(main())


def test_remove_reports_existing_key_holding_none(store) -> None:
    store.set("k", None)
    assert store.remove("k") is True
    assert store.remove("k") is False


def test_unencodable_value_is_refused_naming_the_key(store, tmp_path: Path) -> None:
    store.set("good", 1)
    if isinstance(store, PickleDB):
        store.save()
        before = Path(store.location).read_bytes()
        store.set("bad key", {1, 2})
        with pytest.raises(TypeError, match="'bad key'"):
            store.save()
        assert Path(store.location).read_bytes() == before
        assert store.get("bad key") == {1, 2}  # memory untouched
    else:
        with pytest.raises(TypeError, match="'bad key'"):
            store.set("bad key", {1, 2})
        assert store.all() == ["good"]
    assert temp_files(tmp_path) == []


def test_one_instance_across_several_event_loops(store) -> None:
    async def put(i: int) -> None:
        await store.set(f"k{i}", i)

    for i in range(3):
        asyncio.run(put(i))
        store.set(f"s{i}", i)
    assert sorted(store.all()) == ["k0", "k1", "k2", "s0", "s1", "s2"]

    async def read() -> list:
        return [await store.get(f"k{i}") for i in range(3)]

    assert asyncio.run(read()) == [0, 1, 2]


def test_gather_over_a_generator_expression(store) -> None:
    store.set_many({f"k{i}": i for i in range(10)})

    async def main() -> list:
        return await asyncio.gather(*(store.get(f"k{i}") for i in range(10)))

    assert asyncio.run(main()) == list(range(10))


def test_methods_keep_their_names_and_docstrings() -> None:
    for cls in (PickleDB, PickleDBSQLite):
        for name in ("set", "get", "remove", "all", "purge", "set_many"):
            method = getattr(cls, name)
            assert method.__name__ == name
            assert method.__doc__ and "async" in method.__doc__
    for method in (PickleDB.load, PickleDB.save, PickleDBSQLite.close):
        assert method.__name__ in ("load", "save", "close")
        assert "wait" in method.__doc__
        assert method.__qualname__.endswith(method.__name__)


# --- PickleDB: the seed API -------------------------------------------------


def test_constructor_touches_no_disk(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "sub" / "db.json")
    db.set("a", 1)
    assert os.listdir(tmp_path) == []
    assert PickleDB(str(tmp_path / "x.json")).location == str(tmp_path / "x.json")


def test_location_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    db = PickleDB("~/db.json")
    assert db.location == str(tmp_path / "db.json")
    db.set("a", 1)
    db.save()
    assert orjson.loads((tmp_path / "db.json").read_bytes()) == {"a": 1}


def test_location_must_be_text(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="location"):
        PickleDB(b"/tmp/db.json")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PickleDB(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [None, b""])
def test_load_missing_or_empty_file_gives_empty_db(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "db.json"
    if content is not None:
        path.write_bytes(content)
    db = PickleDB(path)
    db.set("stale", 1)
    assert db.load() is True
    assert db.all() == []
    assert path.exists() == (content is not None)


def test_load_replaces_memory(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(b'{"a": 1, "b": [1, 2]}')
    db = PickleDB(path)
    db.set("zzz", 0)
    db.load()
    assert db.all() == ["a", "b"]
    assert db.get("b") == [1, 2]
    assert db.get("zzz", "gone") == "gone"


def test_sync_return_values(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "db.json")
    assert db.load() is True
    assert db.set("a", 1) is True
    assert db.get("a") == 1
    assert db.get("missing") is None
    assert db.get("missing", "dflt") == "dflt"
    assert db.get("missing", default=0) == 0
    assert db.all() == ["a"]
    assert db.remove("a") is True
    assert db.remove("a") is False
    assert db.purge() is True
    assert db.set_many({"x": 1}) is True
    assert db.save() is True


def test_save_writes_compact_json_by_default_and_pretty_on_request(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "a.json")
    db.set("a", {"b": 1})
    db.save()
    assert (tmp_path / "a.json").read_bytes() == b'{"a":{"b":1}}'
    pretty = PickleDB(tmp_path / "b.json", pretty=True)
    pretty.set("a", {"b": 1})
    pretty.save()
    assert (tmp_path / "b.json").read_bytes() == b'{\n  "a": {\n    "b": 1\n  }\n}'


def test_context_manager_loads_and_saves(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(b'{"old": 1}')
    with PickleDB(path) as db:
        assert db.get("old") == 1
        db.set("new", 2)
    assert orjson.loads(path.read_bytes()) == {"old": 1, "new": 2}


def test_context_manager_does_not_save_on_error(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(b'{"old": 1}')
    with pytest.raises(KeyError, match="boom"):
        with PickleDB(path) as db:
            db.set("new", 2)
            raise KeyError("boom")
    assert path.read_bytes() == b'{"old": 1}'


def test_async_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "db.json"

    async def main() -> None:
        async with PickleDB(path) as db:
            await db.set("a", 1)
        with pytest.raises(RuntimeError):
            async with PickleDB(path) as db:
                await db.set("b", 2)
                raise RuntimeError

    asyncio.run(main())
    assert orjson.loads(path.read_bytes()) == {"a": 1}


def test_context_manager_whose_load_fails_does_not_save(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(b"[1, 2]")
    with pytest.raises(CorruptFileError):
        with PickleDB(path):
            pass  # pragma: no cover - never entered

    async def main() -> None:
        async with PickleDB(path):
            pass  # pragma: no cover - never entered

    with pytest.raises(CorruptFileError):
        asyncio.run(main())
    assert path.read_bytes() == b"[1, 2]"


# --- one name, both worlds --------------------------------------------------


def test_async_return_values_and_forgotten_await_still_writes(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "db.json")

    async def main() -> None:
        assert await db.load() is True
        assert await db.set("a", 1) is True
        db.set("forgotten", 2)  # no await: still written, and no warning
        db.remove("nothing")
        assert await db.get("forgotten") == 2
        assert await db.get("missing", "d") == "d"
        assert await db.remove("a") is True
        assert await db.all() == ["forgotten"]
        assert await db.set_many([("b", 3)]) is True
        assert await db.save() is True

    asyncio.run(main())
    assert orjson.loads(Path(db.location).read_bytes()) == {"forgotten": 2, "b": 3}


def test_async_calls_return_awaitables_and_sync_calls_values(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "db.json")
    assert db.set("a", 1) is True

    async def main() -> None:
        pending = db.get("a")
        assert pending != 1 and inspect.isawaitable(pending)
        assert await pending == 1
        save = db.save()
        assert asyncio.iscoroutine(save)
        await save

    asyncio.run(main())


def test_async_file_io_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real_write, real_read = pickledb._atomic_write, pickledb._read_json

    def write(*args: object) -> None:
        threads.append(threading.get_ident())
        real_write(*args)

    def read(path: str) -> tuple:
        threads.append(threading.get_ident())
        return real_read(path)

    monkeypatch.setattr(pickledb, "_atomic_write", write)
    monkeypatch.setattr(pickledb, "_read_json", read)
    db = PickleDB(tmp_path / "db.json")

    async def main() -> int:
        await db.save()
        await db.load()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(threads) == 2 and loop_thread not in threads


def test_sync_calls_never_start_an_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("sync call used asyncio")

    monkeypatch.setattr(asyncio, "run", forbidden)
    monkeypatch.setattr(asyncio, "new_event_loop", forbidden)
    db = PickleDB(tmp_path / "db.json")
    db.load()
    db.set("a", 1)
    db.save()
    with PickleDB(tmp_path / "db.json") as again:
        assert again.get("a") == 1


def test_plain_script(tmp_path: Path) -> None:
    result = run_python(
        f"""
        from pickledb import PickleDB
        db = PickleDB({str(tmp_path / "db.json")!r})
        db.load()
        db.set("a", [1, 2])
        assert db.get("a") == [1, 2]
        db.save()
        print(open(db.location).read())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '{"a":[1,2]}'


def test_sync_helper_and_sync_with_block_inside_async_code(tmp_path: Path) -> None:
    path = tmp_path / "db.json"

    def helper(db: PickleDB) -> int:
        db.set("helper", 1)
        db.save()
        return db.get("helper")

    def sync_block() -> None:
        with PickleDB(path) as db:
            db.set("block", 2)

    async def main() -> None:
        db = PickleDB(path)
        assert helper(db) == 1
        sync_block()
        with PickleDB(path) as db:  # a sync `with` written in async code
            assert await db.get("block") == 2
            db.set("inline", 3)  # returns an awaitable here; the write is done anyway

    asyncio.run(main())
    assert orjson.loads(path.read_bytes()) == {"helper": 1, "block": 2, "inline": 3}


def test_comprehensions_follow_the_function_they_are_written_in(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "db.json")
    db.set_many({"a": 1, "b": 2})
    assert [db.get(k) for k in "ab"] == [1, 2]
    assert list(db.get(k) for k in "ab") == [1, 2]

    async def main() -> None:
        assert [await db.get(k) for k in "ab"] == [1, 2]
        awaitables = [db.get(k) for k in "ab"]
        assert [await a for a in awaitables] == [1, 2]

    asyncio.run(main())


def test_worker_threads(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "db.json")

    async def main() -> None:
        await asyncio.gather(*(asyncio.to_thread(db.set, f"k{i}", i) for i in range(20)))
        values = await asyncio.to_thread(lambda: [db.get(f"k{i}") for i in range(20)])
        assert values == list(range(20))
        await asyncio.to_thread(db.save)

    asyncio.run(main())
    assert len(orjson.loads(Path(db.location).read_bytes())) == 20


def _ipython_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell(config=config)
    return shell


def test_ipython_cells_with_and_without_top_level_await(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shell = _ipython_shell(tmp_path, monkeypatch)
    db = PickleDB(tmp_path / "db.json")
    shell.user_ns["db"] = db

    async def cell(code: str):
        result = await shell.run_cell_async(code, transformed_cell=shell.transform_cell(code))
        result.raise_error()
        return result.result

    async def kernel() -> None:  # a loop is running for every cell, as in Jupyter
        assert await cell("db.set('plain', 1)") is True
        assert await cell("db.get('plain')") == 1
        assert await cell("x = await db.get('plain')\nx") == 1
        assert await cell("await db.set('awaited', 2)") is True
        assert await cell("await db.save()") is True
        assert await cell("db.save()") is True  # no await in the cell: a plain sync save
        assert await cell("sorted(db.all())") == ["awaited", "plain"]
        # the corner the README names: a top-level list comprehension in an await cell is plain code
        assert await cell("import asyncio\nawait asyncio.sleep(0)\n[db.get(k) for k in ['plain']]") == [1]
        assert await cell("await asyncio.gather(*(db.get(k) for k in ['plain', 'awaited']))") == [1, 2]

    try:
        asyncio.run(kernel())
    finally:
        shell.clear_instance()
    assert orjson.loads(Path(db.location).read_bytes()) == {"plain": 1, "awaited": 2}


# --- threads ----------------------------------------------------------------


def test_threads_writing_while_another_saves(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "db.json")
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                i += 1
                db.set(f"w{n}-{i % 50}", i)
                db.remove(f"w{n}-{(i + 25) % 50}")
                db.set_many({"pair_a": i, "pair_b": i})  # one atomic update
        except BaseException as err:  # pragma: no cover - the failure being tested for
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(10):
            db.save()
            snapshot = orjson.loads(Path(db.location).read_bytes())
            assert snapshot.get("pair_a") == snapshot.get("pair_b")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert temp_files(tmp_path) == []


# --- save(): atomic, durable, faults ----------------------------------------


@pytest.mark.parametrize(
    "value",
    [{1, 2}, b"bytes", object(), 2**64, {"nested": {1: "int key"}}, complex(1, 2)],
    ids=["set", "bytes", "object", "int>64bit", "nested-int-key", "complex"],
)
def test_save_refuses_unencodable_values_and_changes_nothing(tmp_path: Path, value: object) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(b'{"keep": true}')
    db = PickleDB(path)
    db.load()
    db.set("culprit", value)
    with pytest.raises(TypeError, match=r"key 'culprit'.*the file was not changed") as info:
        db.save()
    assert str(path) in str(info.value)
    assert path.read_bytes() == b'{"keep": true}'
    assert temp_files(tmp_path) == []
    assert db.get("culprit") is value and db.get("keep") is True
    db.remove("culprit")
    assert db.save() is True


def test_happy_path_serializes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = orjson.dumps

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    db = PickleDB(tmp_path / "db.json")
    db.set_many({f"k{i}": i for i in range(100)})
    monkeypatch.setattr(pickledb.orjson, "dumps", counting)
    db.save()
    assert len(calls) == 1


def test_save_fsyncs_file_and_directory_and_uses_unique_temp_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    replaced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        assert os.path.dirname(src) == str(tmp_path)  # same directory: rename is atomic
        replaced.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(pickledb.os, "fsync", fsync)
    monkeypatch.setattr(pickledb.os, "replace", replace)
    db = PickleDB(tmp_path / "db.json")
    threads = [threading.Thread(target=db.save) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.save()
    # A save that finds a later snapshot already renamed drops its own (nothing older replaces newer).
    assert synced.count("file") == 9 and synced.count("dir") == len(replaced)
    assert 2 <= len(replaced) == len(set(replaced)) <= 9


def test_saved_file_keeps_its_mode_and_new_files_follow_umask(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    db = PickleDB(path)
    old_umask = os.umask(0o027)
    try:
        db.save()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        os.chmod(path, 0o604)
        db.set("a", 1)
        db.save()
        assert stat.S_IMODE(path.stat().st_mode) == 0o604
    finally:
        os.umask(old_umask)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_failed_save_keeps_old_file_and_next_save_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(b'{"old": 1}')
    db = PickleDB(path)
    db.load()
    db.set("new", 2)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = {"write": (pickledb.os, "write"), "fsync": (pickledb.os, "fsync"), "replace": (pickledb.os, "replace")}
    with monkeypatch.context() as patch:
        patch.setattr(*target[where], fail)
        with pytest.raises(OSError, match="No space left") as info:
            db.save()
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(path)
    assert path.read_bytes() == b'{"old": 1}'
    assert temp_files(tmp_path) == []
    assert db.save() is True
    assert orjson.loads(path.read_bytes()) == {"old": 1, "new": 2}


def test_save_follows_a_symbolic_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "db.json"
    real.write_bytes(b"{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    db = PickleDB(link)
    db.load()
    db.set("a", 1)
    db.save()
    assert link.is_symlink()
    assert orjson.loads(real.read_bytes()) == {"a": 1}
    assert temp_files(tmp_path) == [] and temp_files(tmp_path / "real") == []


def test_save_onto_a_directory_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "db.json").mkdir()
    db = PickleDB(tmp_path / "db.json")
    db.set("a", 1)
    with pytest.raises(IsADirectoryError) as info:
        db.save()
    assert info.value.filename == str(tmp_path / "db.json")
    assert temp_files(tmp_path) == []


# --- load(): clear errors, nothing destroyed --------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"a": 1', "not valid JSON"),
        (b"\x00\xff\xfe garbage", "not valid JSON"),
        (b"[1, 2, 3]", "top level is a JSON array"),
        (b'"text"', "top level is a JSON string"),
        (b"12", "top level is a JSON number"),
        (b"null", "top level is a JSON null"),
    ],
)
def test_load_refuses_a_bad_file_and_changes_nothing(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(content)
    db = PickleDB(path)
    db.set("kept", 1)
    with pytest.raises(ValueError, match=problem) as info:
        db.load()
    assert isinstance(info.value, CorruptFileError)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert db.all() == ["kept"]
    assert path.read_bytes() == content

    async def main() -> None:
        await db.load()

    with pytest.raises(CorruptFileError):
        asyncio.run(main())
    assert db.all() == ["kept"]


def test_load_restores_the_garbage_collector(tmp_path: Path) -> None:
    import gc

    path = tmp_path / "db.json"
    path.write_bytes(b"{not json")
    assert gc.isenabled()
    with pytest.raises(CorruptFileError):
        PickleDB(path).load()
    assert gc.isenabled()
    path.write_bytes(b'{"a": {"b": [1]}}')
    PickleDB(path).load()
    assert gc.isenabled()


# --- PickleDBSQLite ---------------------------------------------------------


def test_sqlite_seed_api(tmp_path: Path) -> None:
    with PickleDBSQLite(tmp_path / "kv.sqlite3") as kv:
        assert kv.set("b", {"x": 1}) == "b"
        assert kv.set(1, [1]) == "1"
        generated = kv.set(None, "v")
        assert str(__import__("uuid").UUID(generated, version=4)) == generated
        assert kv.get(generated) == "v"
        assert kv.all() == sorted(["b", "1", generated])
        with pytest.raises(KeyError) as info:
            kv.get("missing")
        assert info.value.args == ("missing",)
        assert kv.get("missing", None) is None
        assert kv.get("missing", default=5) == 5
        assert kv.remove("b") is True and kv.remove("b") is False
        assert kv.purge() is True and kv.all() == []
        assert kv.close() is None


def test_sqlite_async_seed_api(tmp_path: Path) -> None:
    async def main() -> None:
        async with PickleDBSQLite(tmp_path / "kv.sqlite3") as kv:
            assert await kv.set("a", 1) == "a"
            key = await kv.set(None, 2)
            assert await kv.get(key) == 2
            with pytest.raises(KeyError):
                await kv.get("missing")
            assert await kv.get("missing", None) is None
            assert await kv.all() == sorted(["a", key])
            assert await kv.remove("a") is True
            keys = await kv.set_many({"x": 1, None: 2})
            assert keys[0] == "x" and len(keys[1]) == 36 and await kv.get(keys[1]) == 2
            assert await kv.purge() is True
            assert await kv.all() == []

    asyncio.run(main())


def test_sqlite_defaults_and_pathlike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with PickleDBSQLite() as kv:
        kv.set("a", 1)
    assert (tmp_path / "pickledb.sqlite3").exists()
    monkeypatch.setenv("HOME", str(tmp_path))
    with PickleDBSQLite("~/home.sqlite3", "t") as kv:
        kv.set("a", 1)
        assert kv.path == str(tmp_path / "home.sqlite3")


@pytest.mark.parametrize(
    "name",
    ["kv; DROP TABLE kv", 'kv"', "1kv", "", "k v", "kv--", "tablé", "sqlite_master", "x\n"],
)
def test_sqlite_rejects_bad_table_names_before_any_sql(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="table_name"):
        PickleDBSQLite(tmp_path / "kv.sqlite3", name)
    assert os.listdir(tmp_path) == []


def test_sqlite_tables_in_one_file_are_independent(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    with PickleDBSQLite(path, "one") as one, PickleDBSQLite(path, "two") as two:
        one.set("k", 1)
        two.set("k", 2)
        two.set("only_two", 3)
        assert one.get("k") == 1 and two.get("k") == 2
        one.purge()
        assert one.all() == [] and two.all() == ["k", "only_two"]


def test_sqlite_data_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    with PickleDBSQLite(path) as kv:
        kv.set("a", {"deep": [1, {"x": None}]})
    with PickleDBSQLite(path) as kv:
        assert kv.get("a") == {"deep": [1, {"x": None}]}


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with PickleDBSQLite(tmp_path / "a.sqlite3") as kv:
        kv.all()
        assert kv._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert kv._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert kv._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    with PickleDBSQLite(tmp_path / "b.sqlite3", durable=False) as kv:
        kv.all()
        assert kv._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_sqlite_six_threads_share_one_instance(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with PickleDBSQLite(tmp_path / "kv.sqlite3", durable=False) as kv:

        def work(n: int) -> None:
            try:
                for i in range(200):
                    kv.set(f"t{n}-{i}", i)
                    assert kv.get(f"t{n}-{i}") == i
            except BaseException as err:  # pragma: no cover - the failure being tested for
                errors.append(err)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(kv.all()) == 1200


def test_sqlite_four_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite3"
    code = f"""
        import sys
        from pickledb import PickleDBSQLite
        n = int(sys.argv[1])
        with PickleDBSQLite({str(path)!r}) as kv:
            for i in range(300):
                kv.set(f"p{{n}}-{{i}}", [n, i])
    """
    env = dict(os.environ, PYTHONPATH=str(HERE))
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "error", "-c", textwrap.dedent(code), str(n)], env=env, stderr=subprocess.PIPE
        )
        for n in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    with PickleDBSQLite(path) as kv:
        keys = kv.all()
        assert len(keys) == 1200
        assert kv.get("p3-299") == [3, 299]


def test_sqlite_sync_and_async_on_one_instance(tmp_path: Path) -> None:
    kv = PickleDBSQLite(tmp_path / "kv.sqlite3")
    kv.set("sync", 1)

    async def main() -> None:
        assert await kv.get("sync") == 1
        await kv.set("async", 2)
        pending = kv.get("async")  # I/O: a coroutine here, which must be awaited
        assert asyncio.iscoroutine(pending)
        assert await pending == 2

    asyncio.run(main())
    asyncio.run(main())
    assert kv.get("async") == 2
    kv.close()


def test_sqlite_closed_store_refuses_work(tmp_path: Path) -> None:
    kv = PickleDBSQLite(tmp_path / "kv.sqlite3")
    kv.set("a", 1)
    kv.close()
    kv.close()
    for call in (lambda: kv.get("a"), lambda: kv.set("a", 1), kv.all, kv.purge):
        with pytest.raises(ValueError, match="is closed"):
            call()

    async def main() -> None:
        with pytest.raises(ValueError, match="is closed"):
            await kv.get("a")
        await kv.close()

    asyncio.run(main())


def test_sqlite_set_many_is_all_or_nothing(tmp_path: Path) -> None:
    with PickleDBSQLite(tmp_path / "kv.sqlite3") as kv:
        kv.set("keep", 1)
        with pytest.raises(TypeError, match="'bad'"):
            kv.set_many([("a", 1), ("bad", object()), ("c", 3)])
        assert kv.all() == ["keep"]
        assert kv.set_many(({"k1": 1, "k2": 2}).items()) == ["k1", "k2"]

        async def main() -> None:
            with pytest.raises(TypeError, match="'bad'"):
                await kv.set_many({"x": 1, "bad": {1}})
            assert await kv.set_many([("y", [1])]) == ["y"]

        asyncio.run(main())
        assert kv.all() == ["k1", "k2", "keep", "y"]


def test_sqlite_concurrent_tasks_do_not_enter_a_set_many_transaction(tmp_path: Path) -> None:
    async def main() -> None:
        async with PickleDBSQLite(tmp_path / "kv.sqlite3", durable=False) as kv:
            batches = [kv.set_many({f"b{n}-{i}": i for i in range(50)}) for n in range(5)]
            singles = [kv.set(f"s{n}", n) for n in range(20)]
            await asyncio.gather(*batches, *singles)
            assert len(await kv.all()) == 270

    asyncio.run(main())


def test_sqlite_non_database_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text" * 100)
    kv = PickleDBSQLite(path)
    with pytest.raises(ValueError, match="notes.txt.*not a usable SQLite database"):
        kv.all()
    kv.close()
    assert path.read_bytes() == b"this is not a database, just some text" * 100


def test_sqlite_empty_file_is_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    path.write_bytes(b"")
    with PickleDBSQLite(path) as kv:
        assert kv.all() == []
        kv.set("a", 1)
        assert kv.get("a") == 1


def test_sqlite_forgotten_close_does_not_hang_exit(tmp_path: Path) -> None:
    code = f"""
        import asyncio
        from pickledb import PickleDBSQLite
        kv = PickleDBSQLite({str(tmp_path / "kv.sqlite3")!r})
        async def main():
            await kv.set("a", 1)
            assert await kv.get("a") == 1
        asyncio.run(main())
        kv.set("b", 2)
        print("done")
    """
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(HERE)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert time.monotonic() - start < 15


def test_sqlite_leak_warns(tmp_path: Path) -> None:
    kv = PickleDBSQLite(tmp_path / "kv.sqlite3")
    kv.set("a", 1)
    with pytest.warns(ResourceWarning, match="unclosed PickleDBSQLite"):
        del kv
        import gc

        gc.collect()


def test_import_does_not_import_aiosqlite_or_sqlite3() -> None:
    result = run_python(
        """
        import sys, pickledb
        print(sorted(m for m in ("aiosqlite", "sqlite3", "aiofiles") if m in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_sqlite_sync_works_without_aiosqlite_and_async_names_the_extra(tmp_path: Path) -> None:
    result = run_python(
        f"""
        import asyncio, sys
        sys.modules["aiosqlite"] = None  # make it unimportable
        from pickledb import PickleDBSQLite
        with PickleDBSQLite({str(tmp_path / "kv.sqlite3")!r}) as kv:
            kv.set("a", 1)
            assert kv.get("a") == 1
            async def main():
                try:
                    kv.get("a")  # raises at the call, before any await
                except ImportError as err:
                    return str(err)
            print(asyncio.run(main()))
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "pickledb[sqlite]"' in result.stdout


def test_sqlite_threads_end_after_close(tmp_path: Path) -> None:
    before = threading.active_count()
    kv = PickleDBSQLite(tmp_path / "kv.sqlite3")

    async def use() -> None:
        await kv.set("a", 1)

    asyncio.run(use())
    asyncio.run(use())
    kv.close()
    assert wait_for_thread_count(before) == before


def wait_for_thread_count(count: int) -> int:
    deadline = time.monotonic() + 5
    while threading.active_count() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


def test_sqlite_close_releases_connections_of_loops_still_open(tmp_path: Path) -> None:
    before = threading.active_count()
    kv = PickleDBSQLite(tmp_path / "kv.sqlite3")

    async def use() -> None:
        await kv.set("a", 1)

    idle = asyncio.new_event_loop()  # a loop that is not running when close() is called
    idle.run_until_complete(use())
    ready, finish = threading.Event(), threading.Event()

    def other_thread() -> None:  # a loop that is running in another thread
        async def main() -> None:
            await use()
            ready.set()
            while not finish.is_set():
                await asyncio.sleep(0.01)

        asyncio.run(main())

    thread = threading.Thread(target=other_thread)
    thread.start()
    ready.wait(10)
    kv.close()
    finish.set()
    thread.join()
    idle.close()
    assert wait_for_thread_count(before) == before


def test_missing_sentinel_repr() -> None:
    assert repr(MISSING) == "MISSING"
    assert pickledb.__all__ == ("PickleDB", "PickleDBSQLite", "CorruptFileError", "ConflictError", "MISSING")


# =============================================================================
# Reliability suite: shared helpers (module-level names start with _rel_, _Rel or _REL_)
# =============================================================================

# orjson stores integers in this closed range and refuses anything outside it.
_REL_INT_MIN = -(2**63)
_REL_INT_MAX = 2**64 - 1

_REL_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
_REL_MODEL_STD = {"max_examples": 40, "stateful_step_count": 20}
_REL_MODEL_HEAVY = {"max_examples": 300, "stateful_step_count": 60}

_rel_text = st.text(max_size=12)  # hypothesis never draws lone surrogates here
_rel_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(_REL_INT_MIN, _REL_INT_MAX),
    st.sampled_from([_REL_INT_MIN, _REL_INT_MAX, 2**63, 2**63 - 1, -1, 0]),
    st.floats(allow_nan=False, allow_infinity=False),
    _rel_text,
)
_rel_json = st.recursive(
    _rel_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_rel_text, inner, max_size=4)),
    max_leaves=12,
)
_rel_keys = st.one_of(
    st.sampled_from(["", "a", "b", "key", "None", "ключ", "🙂", "a\x00b", " ", "\u2028"]),
    st.text(max_size=16),
)
_rel_odd_keys = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([1.5, -0.0, 1e20, True]),
    st.tuples(st.integers(0, 2), st.sampled_from(["a", "b"])),
)


def _rel_same(a, b):
    """Deep equality that also requires equal types, dict order and sign of zero."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_rel_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_rel_same(a[k], b[k]) for k in a)
    return a == b


def _rel_names(directory):
    return sorted(os.listdir(directory))


def _rel_env():
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(pickledb.__file__))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _rel_run(coro_fn, *args):
    """Run `await coro_fn(*args)` on a fresh event loop (asyncio.run)."""
    return asyncio.run(coro_fn(*args))


async def _rel_await_call(obj, name, *args):
    # Written as an `async def` so that pickledb sees an async caller.
    return await getattr(obj, name)(*args)


def _rel_save(db, mode):
    if mode == "sync":
        return db.save()
    return _rel_run(_rel_await_call, db, "save")


def _rel_load(db, mode):
    if mode == "sync":
        return db.load()
    return _rel_run(_rel_await_call, db, "load")


def _rel_wait_threads(start, timeout=2.0):
    """Poll until threading.active_count() is back to `start`; return the final count."""
    deadline = time.monotonic() + timeout
    while threading.active_count() > start and time.monotonic() < deadline:
        time.sleep(0.01)
    return threading.active_count()


@contextlib.contextmanager
def _rel_thread_errors():
    """Record exceptions that escape any thread while the block runs (and shortly after)."""
    start = threading.active_count()
    errors = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(f"{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}")
    try:
        yield errors
    finally:
        _rel_wait_threads(start)
        threading.excepthook = previous


def _rel_settings(**kwargs):
    return settings(deadline=None, database=None, suppress_health_check=_REL_HEALTH, **kwargs)


def _rel_key_named(message, key):
    return repr(key)[:40] in message


# =============================================================================
# 1. Model-based tests (hypothesis state machines against a plain dict)
# =============================================================================


class _RelStoreMachine(RuleBasedStateMachine):
    """Rules that mean the same for both classes; `call` drives one operation."""

    def start(self):  # the async driver opens its loop here
        pass

    def stop(self):
        pass

    def call(self, name, *args):
        return getattr(self.db, name)(*args)

    def snapshot(self):
        return {key: self.db.get(key) for key in self.db.all()}

    @rule(key=_rel_keys)
    def remove(self, key):
        assert self.call("remove", key) is (key in self.model)
        self.model.pop(key, None)

    @rule(data=st.data())
    def remove_existing(self, data):
        if self.model:
            key = list(self.model)[data.draw(st.integers(0, len(self.model) - 1))]
            assert self.call("remove", key) is True
            del self.model[key]

    @rule()
    def purge(self):
        assert self.call("purge") is True
        self.model.clear()


class _RelPickleDBMachine(_RelStoreMachine):
    """PickleDB against a dict model, driven through the sync API."""

    def __init__(self, base):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pdb-", dir=base)
        self.path = os.path.join(self.dir, "db.json")
        self.model = {}
        self.saved = {}  # what the file holds (no file == empty)
        self.pretty = False
        self.db = None
        self.start()

    def teardown(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- rules --

    @initialize(pretty=st.booleans())
    def open_db(self, pretty):
        self.pretty = pretty
        self.db = PickleDB(self.path, pretty=pretty)

    @rule(key=_rel_keys, value=_rel_json)
    def set(self, key, value):
        assert self.call("set", key, value) is True
        self.model[key] = value

    @rule(key=_rel_odd_keys, value=_rel_json)
    def set_coerced_key(self, key, value):
        assert self.call("set", key, value) is True
        self.model[str(key)] = value
        assert _rel_same(self.call("get", key), value)

    @rule(key=_rel_keys)
    def get(self, key):
        marker = ["absent"]
        got = self.call("get", key, marker)
        if key in self.model:
            assert _rel_same(got, self.model[key])
        else:
            assert got is marker
            assert self.call("get", key) is None

    @rule(data=st.data())
    def get_existing(self, data):
        if self.model:
            key = list(self.model)[data.draw(st.integers(0, len(self.model) - 1))]
            assert _rel_same(self.call("get", key), self.model[key])

    @rule()
    def all(self):
        assert self.call("all") == list(self.model)

    @rule(pairs=st.lists(st.tuples(_rel_keys, _rel_json), max_size=5), as_mapping=st.booleans())
    def set_many(self, pairs, as_mapping):
        items = dict(pairs) if as_mapping else pairs
        assert self.call("set_many", items) is True
        self.model.update(dict(pairs))

    @rule()
    def save(self):
        assert self.call("save") is True
        self.saved = dict(self.model)
        with open(self.path, "rb") as file:
            on_disk = orjson.loads(file.read())
        assert _rel_same(on_disk, self.model)
        assert _rel_names(self.dir) == ["db.json"]  # no temp files left behind

    @rule()
    def load(self):
        assert self.call("load") is True
        self.model = dict(self.saved)

    @rule()
    def reopen(self):
        self.db = PickleDB(self.path, pretty=self.pretty)
        assert self.call("all") == []  # the constructor touches no disk
        assert self.call("load") is True
        self.model = dict(self.saved)

    @rule(value=st.sampled_from([{1, 2}, b"raw", 2**64, {"n": {1: 2}}, "\ud800"]))
    def refused_save_leaves_file(self, value):
        before = None
        if os.path.exists(self.path):
            with open(self.path, "rb") as file:
                before = file.read()
        self.call("set", "\x7fbad", value)
        with pytest.raises(TypeError, match=re.escape(repr("\x7fbad"))):
            self.call("save")
        assert self.call("remove", "\x7fbad") is True
        if before is None:
            assert not os.path.exists(self.path)
        else:
            with open(self.path, "rb") as file:
                assert file.read() == before
        assert _rel_names(self.dir) == ([] if before is None else ["db.json"])

    @invariant()
    def agrees_with_model(self):
        if self.db is None:
            return
        snap = self.snapshot()
        assert list(snap) == list(self.model)
        for key, value in self.model.items():
            assert _rel_same(snap[key], value), key


class _RelAsyncDriver:
    """Drives a machine's operations awaited inside an `async def`, on one loop."""

    def start(self):
        self.loop = asyncio.new_event_loop()

    def stop(self):
        try:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    def call(self, name, *args):
        return self.loop.run_until_complete(_rel_await_call(self.db, name, *args))

    async def _snapshot(self):
        keys = await self.db.all()
        return {key: await self.db.get(key) for key in keys}

    def snapshot(self):
        return self.loop.run_until_complete(self._snapshot())


class _RelPickleDBAsyncMachine(_RelAsyncDriver, _RelPickleDBMachine):
    """The same model, every operation awaited inside an `async def` on one loop."""


class _RelSQLiteMachine(_RelStoreMachine):
    """PickleDBSQLite against a dict model, driven through the sync API."""

    def __init__(self, base):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="sql-", dir=base)
        self.path = os.path.join(self.dir, "db.sqlite3")
        self.model = {}
        # A second table in the same file must never be touched by this one.
        with PickleDBSQLite(self.path, "other") as other:
            other.set("sentinel", [1, "two", None])
        self.start()
        self.db = PickleDBSQLite(self.path)

    def close_db(self):
        self.db.close()

    def teardown(self):
        try:
            try:
                self.close_db()
            finally:
                self.stop()
            with PickleDBSQLite(self.path, "other") as other:
                assert other.all() == ["sentinel"]
                assert other.get("sentinel") == [1, "two", None]
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(key=_rel_keys, value=_rel_json)
    def set(self, key, value):
        assert self.call("set", key, value) == key
        self.model[key] = value

    @rule(key=_rel_odd_keys, value=_rel_json)
    def set_coerced_key(self, key, value):
        assert self.call("set", key, value) == str(key)
        self.model[str(key)] = value

    @rule(value=_rel_json)
    def set_new_uuid_key(self, value):
        key = self.call("set", None, value)
        assert str(uuid.UUID(key)) == key and key not in self.model
        self.model[key] = value

    @rule(key=_rel_keys)
    def get(self, key):
        marker = ["absent"]
        if key in self.model:
            assert _rel_same(self.call("get", key), self.model[key])
            assert _rel_same(self.call("get", key, marker), self.model[key])
        else:
            assert self.call("get", key, marker) is marker
            with pytest.raises(KeyError) as excinfo:
                self.call("get", key)
            assert excinfo.value.args == (key,)

    @rule()
    def all(self):
        assert self.call("all") == sorted(self.model)

    @rule(pairs=st.lists(st.tuples(_rel_keys, _rel_json), max_size=5), as_mapping=st.booleans())
    def set_many(self, pairs, as_mapping):
        items = dict(pairs) if as_mapping else pairs
        assert self.call("set_many", items) == [key for key, _ in (items.items() if as_mapping else pairs)]
        self.model.update(dict(pairs))

    @rule(key=_rel_keys, value=st.sampled_from([{1, 2}, b"raw", 2**64, -(2**63) - 1, {"n": {1: 2}}, "\udfff"]))
    def refused_set_keeps_old_value(self, key, value):
        with pytest.raises(TypeError, match=re.escape(repr(key)[:40])):
            self.call("set", key, value)
        with pytest.raises(TypeError):
            self.call("set_many", [("\x7ffresh", 1), (key, value)])

    @rule()
    def reopen(self):
        self.close_db()
        self.db = PickleDBSQLite(self.path)

    @rule()
    def peer_sees_same_rows(self):
        with PickleDBSQLite(self.path) as peer:
            assert peer.all() == sorted(self.model)

    @invariant()
    def agrees_with_model(self):
        snap = self.snapshot()
        assert list(snap) == sorted(self.model)
        for key, value in self.model.items():
            assert _rel_same(snap[key], value), key


class _RelSQLiteAsyncMachine(_RelAsyncDriver, _RelSQLiteMachine):
    """The SQLite model, every operation awaited inside an `async def` on one loop."""

    def close_db(self):
        self.loop.run_until_complete(_rel_await_call(self.db, "close"))


_REL_MACHINES = {
    "pickledb-sync": _RelPickleDBMachine,
    "pickledb-async": _RelPickleDBAsyncMachine,
    "sqlite-sync": _RelSQLiteMachine,
    "sqlite-async": _RelSQLiteAsyncMachine,
}


# The long variant of a randomized test: same code, a bigger budget, run with -m heavy.
_REL_BUDGETS = [pytest.param(False, id="std"), pytest.param(True, id="heavy", marks=pytest.mark.heavy)]


@pytest.mark.parametrize("heavy", _REL_BUDGETS)
@pytest.mark.parametrize("name", list(_REL_MACHINES))
def test_rel_model(tmp_path, name, heavy):
    start = threading.active_count()
    machine = _REL_MACHINES[name]
    budget = _REL_MODEL_HEAVY if heavy else _REL_MODEL_STD
    run_state_machine_as_test(lambda: machine(str(tmp_path)), settings=_rel_settings(**budget))
    assert _rel_wait_threads(start) == start


# =============================================================================
# 2. Round-trip contract: what goes in comes out, or is refused with a clear error
# =============================================================================

_REL_KINDS = ["pickledb", "sqlite"]


def _rel_round_trip(kind, directory, key, value):
    """Store value under key, persist, reopen from disk and return what comes back."""
    if kind == "pickledb":
        path = os.path.join(directory, "rt.json")
        db = PickleDB(path)
        db.set(key, value)
        db.save(force=True)  # a new store each call: replace what an earlier call saved
        again = PickleDB(path)
        again.load()
        return again.get(key, ["absent"])
    path = os.path.join(directory, "rt.sqlite3")
    with PickleDBSQLite(path) as db:
        db.set(key, value)
    with PickleDBSQLite(path) as again:
        return again.get(key, ["absent"])


def _rel_refused(kind, directory, key, value):
    """Assert storing value under key is refused with a TypeError naming the key.

    PickleDB refuses at save() and keeps the old file; PickleDBSQLite refuses
    at set() and keeps the old row. Returns the error message.
    """
    if kind == "pickledb":
        path = os.path.join(directory, "refuse.json")
        db = PickleDB(path)
        db.set("fine", [1, 2])
        db.save()
        with open(path, "rb") as file:
            before = file.read()
        db.set(key, value)
        with pytest.raises(TypeError) as excinfo:
            db.save()
        with open(path, "rb") as file:
            assert file.read() == before
        assert _rel_names(directory) == ["refuse.json"]
        assert db.get("fine") == [1, 2]
        message = str(excinfo.value)
        assert db.location in message
    else:
        path = os.path.join(directory, "refuse.sqlite3")
        encodable = not re.search("[\ud800-\udfff]", key)
        with PickleDBSQLite(path) as db:
            if encodable:
                db.set(key, "old")
            with pytest.raises(TypeError) as excinfo:
                db.set(key, value)
            with pytest.raises(TypeError):
                db.set_many({"\x7fnew": 1, key: value})
            assert db.get("\x7fnew", None) is None
            assert db.all() == ([key] if encodable else [])
            if encodable:
                assert db.get(key) == "old"
            message = str(excinfo.value)
    assert _rel_key_named(message, key), message
    return message


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_contract_tuples_become_lists(tmp_path, kind):
    value = (1, (2, "x"), [3, (4,)], {"t": ()})
    assert _rel_same(_rel_round_trip(kind, tmp_path, "t", value), [1, [2, "x"], [3, [4]], {"t": []}])


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_contract_dates_become_iso_strings(tmp_path, kind):
    naive = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456)
    utc = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    offset = datetime.datetime(1999, 12, 31, 8, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30)))
    day = datetime.date(1970, 1, 1)
    value = {"naive": naive, "utc": utc, "offset": offset, "day": day, "nested": [day]}
    got = _rel_round_trip(kind, tmp_path, "when", value)
    assert got == {
        "naive": naive.isoformat(),
        "utc": utc.isoformat(),
        "offset": offset.isoformat(),
        "day": day.isoformat(),
        "nested": [day.isoformat()],
    }
    for text, original in [(got["naive"], naive), (got["utc"], utc), (got["offset"], offset)]:
        assert datetime.datetime.fromisoformat(text) == original
    assert datetime.date.fromisoformat(got["day"]) == day


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_contract_nan_and_inf_become_null(tmp_path, kind):
    value = [math.nan, math.inf, -math.inf, {"x": math.nan}, 1.5]
    assert _rel_same(_rel_round_trip(kind, tmp_path, "f", value), [None, None, None, {"x": None}, 1.5])
    assert _rel_round_trip(kind, tmp_path, "g", math.inf) is None


@pytest.mark.parametrize("kind", _REL_KINDS)
@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"ok": {2: "b"}}, [{None: 1}], {"x": [{(1, 2): 3}]}, {"n": {1.5: 0}}],
    ids=["int", "nested", "in-list", "tuple", "float"],
)
def test_rel_contract_nested_non_str_dict_key_refused(tmp_path, kind, value):
    message = _rel_refused(kind, tmp_path, "top", value)
    assert "str" in message


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_contract_64_bit_integer_bounds_round_trip(tmp_path, kind):
    value = [_REL_INT_MIN, _REL_INT_MAX, 2**63, 2**63 - 1, -1, 0]
    assert _rel_same(_rel_round_trip(kind, tmp_path, "ints", value), value)


@pytest.mark.parametrize("kind", _REL_KINDS)
@pytest.mark.parametrize(
    "value",
    [2**64, _REL_INT_MIN - 1, 10**30, -(10**30), [1, 2**64], {"deep": {"x": 2**70}}],
    ids=["max+1", "min-1", "huge", "-huge", "in-list", "in-dict"],
)
def test_rel_contract_out_of_range_integer_refused(tmp_path, kind, value):
    message = _rel_refused(kind, tmp_path, "big", value)
    assert "64-bit" in message


@pytest.mark.parametrize("kind", _REL_KINDS)
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("\ud800", 1),
        ("a\udfffb", "v"),
        ("k", "\udc00"),
        ("k", ["fine", "x\ud800"]),
        ("k", {"\udbff": 1}),
    ],
    ids=["key", "key-inner", "value", "value-in-list", "nested-key"],
)
def test_rel_contract_lone_surrogates_refused(tmp_path, kind, key, value):
    _rel_refused(kind, tmp_path, key, value)


def test_rel_contract_surrogate_key_refused_by_sqlite_before_sql(tmp_path):
    with PickleDBSQLite(tmp_path / "s.sqlite3") as db:
        for call in (lambda: db.set("\ud800", 1), lambda: db.get("\ud800"), lambda: db.remove("\ud800")):
            with pytest.raises(TypeError, match=re.escape(repr("\ud800"))):
                call()
        assert db.all() == []


async def _rel_sqlite_async_refusals(path):
    async with PickleDBSQLite(path) as db:
        await db.set("k", "old")
        for bad in ({1, 2}, 2**64, {"n": {1: 2}}, "\ud800"):
            with pytest.raises(TypeError, match=re.escape(repr("k"))):
                await db.set("k", bad)
        with pytest.raises(TypeError, match=re.escape(repr("\udfff"))):
            await db.set("\udfff", 1)
        assert await db.get("k") == "old"
        assert await db.all() == ["k"]


def test_rel_contract_sqlite_async_refusals(tmp_path):
    _rel_run(_rel_sqlite_async_refusals, tmp_path / "a.sqlite3")


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_contract_time_of_day_becomes_iso_string(tmp_path, kind):
    moment = datetime.time(13, 14, 15, 16)
    assert _rel_round_trip(kind, tmp_path, "t", moment) == moment.isoformat()


_RelColor = enum.Enum("_RelColor", {"RED": 1})
_RelPoint = dataclasses.make_dataclass("_RelPoint", [("x", int), ("y", int)])


@pytest.mark.parametrize("kind", _REL_KINDS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (uuid.UUID(int=12345), "00000000-0000-0000-0000-000000003039"),
        (_RelColor.RED, 1),
        ([_RelPoint(1, 2)], [{"x": 1, "y": 2}]),
    ],
    ids=["uuid", "enum", "dataclass-in-list"],
)
def test_rel_contract_documented_conversions(tmp_path, kind, value, expected):
    # The README's table: a UUID comes back as its string, an Enum member as
    # its value, a dataclass as a dict of its fields.
    assert _rel_round_trip(kind, tmp_path, "odd", value) == expected


_REL_CONTRACT_STD = {"max_examples": 40}
_REL_CONTRACT_HEAVY = {"max_examples": 1000}


def _rel_check_json_round_trip(directory, key, value):
    for kind in _REL_KINDS:
        assert _rel_same(_rel_round_trip(kind, directory, key, value), value), kind
    shutil.rmtree(directory)
    os.mkdir(directory)


@pytest.mark.parametrize("heavy", _REL_BUDGETS)
def test_rel_contract_json_values_round_trip_exactly(tmp_path, heavy):
    directory = tmp_path / "w"
    directory.mkdir()

    @given(key=st.text(max_size=30), value=_rel_json)
    @_rel_settings(**(_REL_CONTRACT_HEAVY if heavy else _REL_CONTRACT_STD))
    def check(key, value):
        _rel_check_json_round_trip(directory, key, value)

    check()


# =============================================================================
# 3. Crashes: SIGKILL a child process at random moments
# =============================================================================

_REL_CRASH_TRIALS = 20
_REL_CRASH_TRIALS_HEAVY = 200

# Saves snapshots in a loop; every key of a snapshot holds the same generation.
_REL_SAVER_CHILD = textwrap.dedent(
    """
    import sys
    import pickledb

    path, nkeys = sys.argv[1], int(sys.argv[2])
    db = pickledb.PickleDB(path, pretty=len(sys.argv) > 3)
    db.load()
    gen = max((db.get(key)["gen"] for key in db.all()), default=0)
    print("ready", gen, flush=True)
    pad = "p" * 300
    while True:
        gen += 1
        db.set_many({f"k{i:04d}": {"gen": gen, "pad": pad} for i in range(nkeys)})
        db.save()
        print("saved", gen, flush=True)
    """
)

# Writes keys one by one (and some in batches); prints each key after the call returned.
_REL_WRITER_CHILD = textwrap.dedent(
    """
    import asyncio
    import sys
    import pickledb

    path, trial, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    db = pickledb.PickleDBSQLite(path)

    def value(i):
        return {"trial": trial, "i": i, "pad": "w" * (i % 64)}

    def sync_call(name, *args):
        return getattr(db, name)(*args)

    async def async_call(name, *args):
        return await getattr(db, name)(*args)

    async def main(call):
        await call("set", f"{trial}-boot", value(-1))
        print("ready", flush=True)
        i = 0
        while True:
            if i % 10 == 9:
                batch = {f"{trial}-{i + j}": value(i + j) for j in range(3)}
                await call("set_many", batch)
                print("\\n".join(batch), flush=True)
                i += 3
            else:
                await call("set", f"{trial}-{i}", value(i))
                print(f"{trial}-{i}", flush=True)
                i += 1

    if mode == "sync":
        async def call(name, *args):
            return sync_call(name, *args)
    else:
        call = async_call
    asyncio.run(main(call))
    """
)

_REL_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}\.tmp$")


def _rel_kill_after_ready(args, rng):
    """Start a child, wait for its "ready" line, SIGKILL it after 20-200 ms; return its lines."""
    # Unbuffered pipes: readline() must not read ahead of the first line, or
    # communicate() (which reads the raw pipe) would never see those bytes.
    proc = subprocess.Popen(
        [sys.executable, "-c", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_rel_env(), bufsize=0
    )
    try:
        first = proc.stdout.readline()
        if not first.startswith(b"ready"):
            proc.kill()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"child did not start: {first!r} {out!r} {err.decode(errors='replace')}")
        time.sleep(rng.uniform(0.02, 0.2))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
    # Only complete lines count: the kill may cut the last one short.
    return first.decode(), [line.decode() for line in out.split(b"\n")[:-1]]


def _rel_crash_pickledb(tmp_path, trials, seed):
    rng = random.Random(seed)
    path = tmp_path / "snap.json"
    nkeys = 300
    known = 0  # newest generation the file is known to hold
    leftovers = set()
    for trial in range(trials):
        extra = ["pretty"] if trial % 2 else []
        ready, lines = _rel_kill_after_ready([_REL_SAVER_CHILD, str(path), str(nkeys), *extra], rng)
        assert int(ready.split()[1]) == known
        saved = [int(line.split()[1]) for line in lines if line.startswith("saved ")]
        if saved:
            assert saved == list(range(known + 1, known + 1 + len(saved)))
            known = saved[-1]
        db = PickleDB(path)
        db.load()  # must not raise: the file is always a whole snapshot
        keys = db.all()
        if not keys:
            assert known == 0, "a saved snapshot vanished"
            continue
        assert keys == [f"k{i:04d}" for i in range(nkeys)]
        gens = {db.get(key)["gen"] for key in keys}
        assert len(gens) == 1, f"torn snapshot: generations {sorted(gens)}"
        gen = gens.pop()
        # The save in flight may have been renamed into place before its line was printed.
        assert known <= gen <= known + 1, (known, gen)
        assert all(db.get(key)["pad"] == "p" * 300 for key in keys)
        known = gen
        for name in _rel_names(tmp_path):
            if name != "snap.json":
                match = _REL_TMP_NAME.match(name)
                assert match and match.group("name") == "snap.json", name
                leftovers.add(name)
    # Leftover temp files from killed saves never disturb later saves or loads.
    db = PickleDB(path)
    db.load()
    db.set("after", True)
    db.save()
    again = PickleDB(path)
    again.load()
    assert again.get("after") is True
    assert set(_rel_names(tmp_path)) - {"snap.json"} == leftovers


def test_rel_crash_pickledb_save_loop(tmp_path):
    _rel_crash_pickledb(tmp_path, _REL_CRASH_TRIALS, seed=1)


@pytest.mark.heavy
def test_rel_crash_pickledb_save_loop_heavy(tmp_path):
    _rel_crash_pickledb(tmp_path, _REL_CRASH_TRIALS_HEAVY, seed=2)


def _rel_crash_sqlite(tmp_path, mode, trials, seed):
    rng = random.Random(seed)
    path = tmp_path / "crash.sqlite3"
    expected = {}
    for trial in range(trials):
        _, lines = _rel_kill_after_ready([_REL_WRITER_CHILD, str(path), f"t{trial}", mode], rng)
        for key in lines:
            number = int(key.rsplit("-", 1)[1])
            expected[key] = {"trial": f"t{trial}", "i": number, "pad": "w" * (number % 64)}
        with PickleDBSQLite(path) as db:
            for key, value in expected.items():
                assert db.get(key, None) == value, f"trial {trial}: acknowledged key {key!r} lost"
            for key in db.all():  # rows that were committed but not yet reported are whole too
                trial_name, number = key.rsplit("-", 1)
                number = -1 if number == "boot" else int(number)
                assert db.get(key) == {"trial": trial_name, "i": number, "pad": "w" * (number % 64)}
    assert len(expected) > trials  # the children did get work done


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_crash_sqlite_writes(tmp_path, mode):
    _rel_crash_sqlite(tmp_path, mode, _REL_CRASH_TRIALS, seed=3)


@pytest.mark.heavy
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_crash_sqlite_writes_heavy(tmp_path, mode):
    _rel_crash_sqlite(tmp_path, mode, _REL_CRASH_TRIALS_HEAVY, seed=4)


# =============================================================================
# 4. Injected faults on the save path
# =============================================================================


def _rel_oserror(code):
    return OSError(code, os.strerror(code))


@contextlib.contextmanager
def _rel_failing_file(real, code):
    """Stand-in for the temp file object: writes half the payload, then fails."""

    def write(data):
        real.write(bytes(data[: len(data) // 2]))
        real.flush()
        raise _rel_oserror(code)

    with real:
        yield types.SimpleNamespace(write=write, flush=real.flush, fileno=real.fileno)


def _rel_fd_in(fd, directory):
    """True when fd is a regular file directly inside `directory`."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    try:
        return os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) == directory
    except OSError:  # no /proc: any regular file written during the save
        return True


def _rel_inject(monkeypatch, where, code, target):
    """Make one step of saving `target` fail with errno `code`."""
    target = os.path.realpath(target)
    directory = os.path.dirname(target)
    if where == "write":
        # The temp file may be written through a file object or with os.write:
        # cover both, writing half of the first chunk before failing.
        real_open = builtins.open
        real_write = os.write

        def fake_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            return _rel_failing_file(handle, code) if "w" in mode else handle

        def fake_write(fd, data):
            if _rel_fd_in(fd, directory):
                real_write(fd, bytes(data[: len(data) // 2]))
                raise _rel_oserror(code)
            return real_write(fd, data)

        monkeypatch.setattr(pickledb, "open", fake_open, raising=False)
        monkeypatch.setattr(pickledb.os, "write", fake_write)
    elif where in ("fsync", "dir-fsync"):
        real_fsync = os.fsync
        want_dir = where == "dir-fsync"

        def fake_fsync(fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode) == want_dir:
                raise _rel_oserror(code)
            return real_fsync(fd)

        monkeypatch.setattr(pickledb.os, "fsync", fake_fsync)
    elif where in ("open", "dir-open"):
        real_os_open = os.open

        def fake_os_open(path, flags, *args, **kwargs):
            path = os.fspath(path)
            hit = (
                path == directory
                if where == "dir-open"
                else (os.path.dirname(path) == directory and flags & os.O_CREAT)
            )
            if hit:
                raise _rel_oserror(code)
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(pickledb.os, "open", fake_os_open)
    elif where == "replace":
        real_replace = os.replace

        def fake_replace(src, dst, *args, **kwargs):
            if os.path.realpath(dst) == target:
                raise _rel_oserror(code)
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(pickledb.os, "replace", fake_replace)
    elif where == "chmod":
        real_chmod = os.chmod

        def fake_chmod(path, mode, *args, **kwargs):
            if os.path.dirname(os.fspath(path)) == directory:
                raise _rel_oserror(code)
            return real_chmod(path, mode, *args, **kwargs)

        monkeypatch.setattr(pickledb.os, "chmod", fake_chmod)
    else:  # pragma: no cover - a typo in the table below
        raise AssertionError(where)


def _rel_saved_db(tmp_path):
    path = tmp_path / "db.json"
    db = PickleDB(path)
    db.set_many({"old": 1, "list": [1, 2, 3]})
    db.save()
    os.chmod(path, 0o640)
    db.set("new", {"n": 2})
    db.remove("list")
    return db, path


_REL_FAULTS = [
    ("write", errno.ENOSPC),
    ("write", errno.EIO),
    ("fsync", errno.EIO),
    ("fsync", errno.ENOSPC),
    ("replace", errno.EIO),
    ("replace", errno.ENOSPC),
    ("open", errno.EROFS),
    ("open", errno.EACCES),
    ("open", errno.ENOSPC),
    ("chmod", errno.EPERM),
    ("dir-open", errno.EACCES),  # the directory is opened for the save lock, before the rename
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("where", "code"), _REL_FAULTS, ids=[f"{w}-{errno.errorcode[c]}" for w, c in _REL_FAULTS])
def test_rel_fault_before_rename_keeps_old_file(tmp_path, monkeypatch, mode, where, code):
    db, path = _rel_saved_db(tmp_path)
    before = path.read_bytes()
    _rel_inject(monkeypatch, where, code, str(path))
    with pytest.raises(OSError) as excinfo:
        _rel_save(db, mode)
    err = excinfo.value
    assert err.errno == code
    assert err.filename == db.location and db.location in str(err)
    assert os.strerror(code) in str(err)
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _rel_names(tmp_path) == ["db.json"], "temp file left behind"
    assert db.all() == ["old", "new"] and db.get("new") == {"n": 2}  # memory untouched
    monkeypatch.undo()
    assert _rel_save(db, mode) is True
    again = PickleDB(path)
    again.load()
    assert again.all() == ["old", "new"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the file keeps its mode
    assert _rel_names(tmp_path) == ["db.json"]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("where", "code"),
    [("dir-fsync", errno.EIO), ("dir-fsync", errno.ENOSPC)],
    ids=["dir-fsync-EIO", "dir-fsync-ENOSPC"],
)
def test_rel_fault_after_rename_reports_and_file_is_whole(tmp_path, monkeypatch, mode, where, code):
    db, path = _rel_saved_db(tmp_path)
    _rel_inject(monkeypatch, where, code, str(path))
    with pytest.raises(OSError) as excinfo:
        _rel_save(db, mode)
    err = excinfo.value
    assert err.errno == code
    assert err.filename == db.location and db.location in str(err)
    # The rename already happened: the file holds the complete new snapshot.
    assert orjson.loads(path.read_bytes()) == {"old": 1, "new": {"n": 2}}
    assert _rel_names(tmp_path) == ["db.json"]
    monkeypatch.undo()
    db.set("later", 3)
    assert _rel_save(db, mode) is True
    assert orjson.loads(path.read_bytes()) == {"old": 1, "new": {"n": 2}, "later": 3}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_fault_dir_fsync_unsupported_is_ignored(tmp_path, monkeypatch, mode):
    db, path = _rel_saved_db(tmp_path)
    _rel_inject(monkeypatch, "dir-fsync", errno.EINVAL, str(path))
    assert _rel_save(db, mode) is True
    assert orjson.loads(path.read_bytes()) == {"old": 1, "new": {"n": 2}}
    assert _rel_names(tmp_path) == ["db.json"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_fault_target_is_a_directory(tmp_path, mode):
    target = tmp_path / "db.json"
    target.mkdir()
    (target / "inside.txt").write_text("keep me")
    db = PickleDB(target)
    db.set("a", 1)
    with pytest.raises(IsADirectoryError) as excinfo:
        _rel_save(db, mode)
    assert excinfo.value.filename == db.location and db.location in str(excinfo.value)
    assert _rel_names(tmp_path) == ["db.json"] and target.is_dir()
    assert (target / "inside.txt").read_text() == "keep me"
    with pytest.raises(IsADirectoryError) as excinfo:
        _rel_load(db, mode)
    assert db.location in str(excinfo.value)
    assert db.all() == ["a"]  # a failed load leaves memory alone
    shutil.rmtree(target)
    assert _rel_save(db, mode) is True  # fault gone: the next save works
    assert orjson.loads(target.read_bytes()) == {"a": 1}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_fault_missing_directory(tmp_path, mode):
    db = PickleDB(tmp_path / "nope" / "db.json")
    db.set("a", 1)
    with pytest.raises(FileNotFoundError) as excinfo:
        _rel_save(db, mode)
    assert excinfo.value.filename == db.location and db.location in str(excinfo.value)
    assert _rel_names(tmp_path) == []
    (tmp_path / "nope").mkdir()
    assert _rel_save(db, mode) is True
    assert _rel_names(tmp_path / "nope") == ["db.json"]


def _rel_permissions_enforced(directory):
    probe = directory / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "x").touch()
    except PermissionError:
        return True
    else:
        (probe / "x").unlink()
        return False
    finally:
        probe.chmod(0o755)
        probe.rmdir()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_fault_real_read_only_directory(tmp_path, mode):
    if not _rel_permissions_enforced(tmp_path):
        pytest.skip("this user may write into read-only directories (root); see the injected EROFS/EACCES cases")
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "db.json"
    db = PickleDB(path)
    db.set("a", 1)
    db.save()
    before = path.read_bytes()
    db.set("b", 2)
    directory.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as excinfo:
            _rel_save(db, mode)
        assert excinfo.value.filename == db.location and db.location in str(excinfo.value)
        assert path.read_bytes() == before
        assert _rel_names(directory) == ["db.json"]
    finally:
        directory.chmod(0o755)
    assert _rel_save(db, mode) is True
    assert orjson.loads(path.read_bytes()) == {"a": 1, "b": 2}


def test_rel_fault_save_through_symlink_keeps_link(tmp_path):
    real = tmp_path / "real.json"
    link = tmp_path / "link.json"
    db = PickleDB(real)
    db.set("a", 1)
    db.save()
    link.symlink_to(real)
    via_link = PickleDB(link)
    via_link.load()
    via_link.set("b", 2)
    via_link.save()
    assert link.is_symlink()
    assert orjson.loads(real.read_bytes()) == {"a": 1, "b": 2}
    assert _rel_names(tmp_path) == ["link.json", "real.json"]


# =============================================================================
# 5. Bad input table
# =============================================================================

_RelNamedKey = type("_RelNamedKey", (), {"__str__": lambda self: "named-key"})
_RelBrokenKey = type("_RelBrokenKey", (), {"__str__": lambda self: 1 / 0})


@pytest.mark.parametrize("kind", _REL_KINDS)
@pytest.mark.parametrize(
    ("key", "text"),
    [
        (7, "7"),
        (-2.5, "-2.5"),
        (True, "True"),
        ((1, "a"), "(1, 'a')"),
        (_RelNamedKey(), "named-key"),
        (None, "None"),
    ],
    ids=["int", "float", "bool", "tuple", "str-method", "None"],
)
def test_rel_bad_key_is_coerced_with_str(tmp_path, kind, key, text):
    if kind == "pickledb":
        db = PickleDB(tmp_path / "k.json")
        assert db.set(key, "v") is True
        assert db.all() == [text]
        assert db.get(key) == "v" and db.get(text) == "v"
        db.save()
        again = PickleDB(tmp_path / "k.json")
        again.load()
        assert again.get(text) == "v"
        assert again.remove(key) is True
        return
    with PickleDBSQLite(tmp_path / "k.sqlite3") as db:
        stored = db.set(key, "v")
        if key is None:  # documented: a None key gets a new uuid4 key
            assert str(uuid.UUID(stored)) == stored
            text = stored
        else:
            assert stored == text
            assert db.get(key) == "v"
        assert db.all() == [text] and db.get(text) == "v"
    with PickleDBSQLite(tmp_path / "k.sqlite3") as again:
        assert again.get(text) == "v"
        assert again.remove(text) is True


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_bad_key_whose_str_raises_propagates(tmp_path, kind):
    bad = _RelBrokenKey()
    if kind == "pickledb":
        db = PickleDB(tmp_path / "k.json")
    else:
        db = PickleDBSQLite(tmp_path / "k.sqlite3")
    try:
        db.set("keep", 1)
        for call in (
            lambda: db.set(bad, 1),
            lambda: db.get(bad),
            lambda: db.remove(bad),
            lambda: db.set_many([("first", 1), (bad, 2)]),
            lambda: db.set_many({"first": 1, bad: 2}),
        ):
            with pytest.raises(ZeroDivisionError):
                call()
        assert db.all() == ["keep"]  # set_many stored nothing
    finally:
        if kind == "sqlite":
            db.close()


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_bad_key_very_long_round_trips(tmp_path, kind):
    key = "長" * 50_000 + "k" * 50_000
    assert _rel_round_trip(kind, tmp_path, key, {"long": True}) == {"long": True}


@pytest.mark.parametrize("kind", _REL_KINDS)
def test_rel_bad_key_very_long_error_message_is_bounded(tmp_path, kind):
    key = "x" * 100_000
    message = _rel_refused(kind, tmp_path, key, {1, 2})
    assert len(message) < 1000


_rel_circular = []
_rel_circular.append(_rel_circular)
_rel_deep = []
for _ in range(300):
    _rel_deep = [_rel_deep]
del _

# (id, value, text the error message must contain besides the key)
_REL_BAD_VALUES = [
    ("set", {1, 2}, "set"),
    ("frozenset", frozenset({1}), "frozenset"),
    ("bytes", b"raw", "bytes"),
    ("bytearray", bytearray(b"raw"), "bytearray"),
    ("object", object(), "object"),
    ("complex", 1 + 2j, "complex"),
    ("int-2**64", 2**64, "64-bit"),
    ("int-below", _REL_INT_MIN - 1, "64-bit"),
    ("nested-int-key", {"a": {1: 2}}, "str"),
    ("circular-list", _rel_circular, "ecursion"),
    ("too-deep", _rel_deep, "ecursion"),
    ("surrogate", "\ud800", "surrogates"),
    ("function", len, "builtin_function_or_method"),
]


@pytest.mark.parametrize("kind", _REL_KINDS)
@pytest.mark.parametrize(
    ("value", "reason"), [row[1:] for row in _REL_BAD_VALUES], ids=[row[0] for row in _REL_BAD_VALUES]
)
def test_rel_bad_value_is_refused_naming_key(tmp_path, kind, value, reason):
    message = _rel_refused(kind, tmp_path, "the-key", value)
    assert reason in message, message


# (id, file bytes, pattern the problem must match)
_REL_BAD_FILES = [
    ("truncated", orjson.dumps({"a": [1, 2, 3], "b": "text"})[:15], "not valid JSON"),
    ("corrupt", b'{"a": 1,, "b": 2}', "not valid JSON"),
    ("unterminated", b'{"a": "no end', "not valid JSON"),
    ("trailing-garbage", b'{"a": 1} x', "not valid JSON"),
    ("nul-after", b'{"a": 1}\x00', "not valid JSON"),
    ("list", b"[1, 2, 3]", "top level is a JSON array"),
    ("string", b'"text"', "top level is a JSON string"),
    ("number", b"42", "top level is a JSON number"),
    ("float", b"-1.5e3", "top level is a JSON number"),
    ("true", b"true", "top level is a JSON boolean"),
    ("null", b"null", "top level is a JSON null"),
    ("binary", bytes(range(256)) * 4, "not valid JSON"),
    ("bad-utf8", b'{"a": "\xff\xfe"}', "not valid JSON"),
    ("bom", b'\xef\xbb\xbf{"a": 1}', "not valid JSON"),
    ("whitespace", b" \n\t ", "not valid JSON"),
    ("lone-surrogate-escape", b'{"a": "\\ud800"}', "not valid JSON"),
    ("too-deep", b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}", "nested too deeply"),
    ("huge-exponent", b'{"a": 1e400}', "not valid JSON"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("raw", "problem"), [row[1:] for row in _REL_BAD_FILES], ids=[row[0] for row in _REL_BAD_FILES]
)
def test_rel_bad_json_file_is_refused_and_nothing_changes(tmp_path, mode, raw, problem):
    path = tmp_path / "bad.json"
    path.write_bytes(raw)
    db = PickleDB(path)
    db.set_many({"mem": [1, 2], "other": None})
    with pytest.raises(CorruptFileError) as excinfo:
        _rel_load(db, mode)
    err = excinfo.value
    assert isinstance(err, ValueError)
    assert err.path == db.location and db.location in str(err)
    assert re.search(problem, str(err)), str(err)
    assert path.read_bytes() == raw
    assert db.all() == ["mem", "other"] and db.get("mem") == [1, 2]
    assert _rel_names(tmp_path) == ["bad.json"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_bad_json_file_empty_means_empty_db(tmp_path, mode):
    (tmp_path / "empty.json").write_bytes(b"")
    db = PickleDB(tmp_path / "empty.json")
    db.set("mem", 1)
    assert _rel_load(db, mode) is True
    assert db.all() == []


async def _rel_sqlite_ops(db):
    assert await db.all() == []
    assert await db.set("k", [1]) == "k"
    return await db.get("k")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rel_bad_sqlite_zero_byte_file_is_an_empty_db(tmp_path, mode):
    path = tmp_path / "zero.sqlite3"
    path.write_bytes(b"")
    db = PickleDBSQLite(path)
    try:
        if mode == "sync":
            assert db.all() == []
            assert db.set("k", [1]) == "k"
            assert db.get("k") == [1]
        else:
            assert _rel_run(_rel_sqlite_ops, db) == [1]
    finally:
        db.close()
    with PickleDBSQLite(path) as again:
        assert again.get("k") == [1]


_REL_NOT_SQLITE = [
    ("text", b"hello, this is not a database\n" * 40),
    ("json", orjson.dumps({"a": 1, "b": [1, 2, 3]})),
    ("short", b"xx"),
    ("binary", bytes(random.Random(7).getrandbits(8) for _ in range(4096))),
    ("header-only", b"SQLite format 3\x00" + b"\xff" * 200),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("raw", [row[1] for row in _REL_NOT_SQLITE], ids=[row[0] for row in _REL_NOT_SQLITE])
def test_rel_bad_sqlite_file_is_refused_naming_it(tmp_path, mode, raw):
    start = threading.active_count()
    path = tmp_path / "not.sqlite3"
    path.write_bytes(raw)
    db = PickleDBSQLite(path)
    try:
        with pytest.raises(ValueError) as excinfo:
            if mode == "sync":
                db.set("k", 1)
            else:
                _rel_run(_rel_await_call, db, "set", "k", 1)
        assert db.path in str(excinfo.value)
        with pytest.raises(ValueError):  # and again: nothing was cached
            db.all()
    finally:
        db.close()
    assert path.read_bytes() == raw
    assert _rel_names(tmp_path) == ["not.sqlite3"]
    assert _rel_wait_threads(start) == start


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("where", ["missing-directory", "is-a-directory"])
def test_rel_bad_sqlite_path_that_cannot_be_opened_is_named(tmp_path, mode, where):
    path = tmp_path / "nope" / "db.sqlite3" if where == "missing-directory" else tmp_path
    db = PickleDBSQLite(path)
    # Stray worker-thread errors of a failed async connect are checked by
    # test_rel_hygiene_failed_async_connect_leaves_no_thread_error.
    with _rel_thread_errors():
        try:
            with pytest.raises(sqlite3.OperationalError) as excinfo:
                if mode == "sync":
                    db.set("k", 1)
                else:
                    _rel_run(_rel_await_call, db, "set", "k", 1)
        finally:
            db.close()
    assert db.path in str(excinfo.value), f"error does not name the file: {excinfo.value}"


@pytest.mark.parametrize(
    "name",
    [
        'kv"; DROP TABLE kv; --',
        "kv; DELETE FROM kv",
        "kv--",
        "a b",
        "",
        "1kv",
        "kv-1",
        "ключ",
        "kv\x00",
        "sqlite_master",
        "SQLITE_temp",
        "kv'",
    ],
)
def test_rel_bad_table_name_is_refused_before_any_sql(tmp_path, monkeypatch, name):
    def no_sql(*args, **kwargs):
        raise AssertionError("SQL ran for an invalid table name")

    monkeypatch.setattr(sqlite3, "connect", no_sql)
    path = tmp_path / "t.sqlite3"
    with pytest.raises(ValueError) as excinfo:
        PickleDBSQLite(path, name)
    assert repr(name) in str(excinfo.value)
    assert not path.exists() and _rel_names(tmp_path) == []


@pytest.mark.parametrize("name", [123, None, b"kv"])
def test_rel_bad_table_name_type_is_refused(tmp_path, name):
    with pytest.raises(TypeError, match="table_name"):
        PickleDBSQLite(tmp_path / "t.sqlite3", name)
    assert _rel_names(tmp_path) == []


def test_rel_odd_but_valid_table_names_are_isolated(tmp_path):
    path = tmp_path / "t.sqlite3"
    names = ["select", "_", "Table_2", "kv"]
    for name in names:
        with PickleDBSQLite(path, name) as db:
            db.set("who", name)
    with PickleDBSQLite(path, "select") as db:
        db.purge()
    for name in names:
        with PickleDBSQLite(path, name) as db:
            assert db.all() == ([] if name == "select" else ["who"])


# =============================================================================
# 6. Fuzzing load()
# =============================================================================


@st.composite
def _rel_mutated_json(draw):
    doc = draw(st.dictionaries(_rel_text, _rel_json, max_size=5))
    raw = bytearray(orjson.dumps(doc, option=draw(st.sampled_from([0, orjson.OPT_INDENT_2]))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate", "duplicate"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and raw:
            raw[pos] = draw(st.sampled_from(b'{}[]":,\\0-9eE+-. \x00\xff\xc3tfn'))
        elif op == "delete":
            del raw[pos : pos + draw(st.integers(1, 8))]
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "truncate":
            del raw[pos:]
        elif op == "duplicate":
            raw[pos:pos] = raw[pos : pos + draw(st.integers(1, 16))]
    return bytes(raw)


_rel_fuzz_bytes = st.one_of(
    st.binary(max_size=300),
    _rel_mutated_json(),
    st.sampled_from([b"", b"{}", b" {} ", b"\n"]),
)


def _rel_fuzz_one(directory, raw):
    path = os.path.join(directory, "fuzz.json")
    with open(path, "wb") as file:
        file.write(raw)
    db = PickleDB(path)
    db.set_many({"keep": [1, {"x": None}], "also": "kept"})
    try:
        outcome = db.load()
    except CorruptFileError as err:  # the one documented failure, a ValueError
        assert err.path == db.location and db.location in str(err)
        assert db.all() == ["keep", "also"] and db.get("keep") == [1, {"x": None}]
    else:
        assert outcome is True
        expected = orjson.loads(raw) if raw.strip() else {}
        assert type(expected) is dict
        assert db.all() == list(expected)
    with open(path, "rb") as file:
        assert file.read() == raw
    assert _rel_names(directory) == ["fuzz.json"]


@pytest.mark.parametrize("heavy", _REL_BUDGETS)
def test_rel_fuzz_load(tmp_path, heavy):
    @given(raw=_rel_fuzz_bytes)
    @_rel_settings(max_examples=10_000 if heavy else 300)
    def check(raw):
        _rel_fuzz_one(str(tmp_path), raw)

    check()


def test_rel_fuzz_load_async_and_sync_agree(tmp_path):
    rng = random.Random(11)
    base = orjson.dumps({"a": [1, 2, {"b": "ü"}], "c": None})
    for _ in range(30):
        raw = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        path = tmp_path / "f.json"
        path.write_bytes(bytes(raw))
        outcomes = []
        for mode in ("sync", "async"):
            db = PickleDB(path)
            db.set("mem", 1)
            try:
                _rel_load(db, mode)
                outcomes.append(("ok", db.all()))
            except CorruptFileError as err:
                assert db.all() == ["mem"]
                outcomes.append(("corrupt", str(err)))
        assert outcomes[0] == outcomes[1]
        assert path.read_bytes() == bytes(raw)


# =============================================================================
# 7. Concurrency
# =============================================================================


def _rel_run_threads(targets, timeout=120):
    """Run each target in its own thread; return the exceptions they raised."""
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as err:  # reported to the test, not lost in the thread
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return errors


def _rel_pickledb_threads(tmp_path, workers, ops, min_saves):
    path = tmp_path / "threads.json"
    db = PickleDB(path)
    models = [{} for _ in range(workers)]
    done = threading.Event()
    snapshots = []

    def worker(n):
        rng = random.Random(n)
        model = models[n]
        mine = [f"w{n}-{i}" for i in range(25)]
        group = [f"g{n}-{i}" for i in range(6)]
        deadline = time.monotonic() + 30
        step = 0
        # At least `ops` operations, and keep going until the saver has written enough snapshots.
        while step < ops or (len(snapshots) < min_saves and time.monotonic() < deadline):
            step += 1
            op = rng.random()
            key = rng.choice(mine)
            if op < 0.35:
                value = {"w": n, "step": step}
                assert db.set(key, value) is True
                model[key] = value
            elif op < 0.55:
                assert db.get(key) == model.get(key)
            elif op < 0.7:
                assert db.remove(key) is (key in model)
                model.pop(key, None)
            elif op < 0.9:
                batch = {name: step for name in group}  # a group always moves together
                assert db.set_many(batch) is True
                model.update(batch)
            else:
                keys = db.all()
                assert {k for k in keys if k.startswith(f"w{n}-")} == {k for k in model if k.startswith("w")}

    def saver():
        while not done.is_set():
            assert db.save() is True
            with open(path, "rb") as file:
                snap = orjson.loads(file.read())
            assert type(snap) is dict
            for n in range(workers):
                values = {v for k, v in snap.items() if k.startswith(f"g{n}-")}
                assert len(values) <= 1, f"set_many group {n} torn in a snapshot: {values}"
            snapshots.append(len(snap))

    errors = []

    def run_workers():
        try:
            errors.extend(_rel_run_threads([lambda n=n: worker(n) for n in range(workers)]))
        finally:
            done.set()

    errors.extend(_rel_run_threads([saver, run_workers]))
    assert not errors, errors
    assert snapshots, "the saver never ran"
    expected = {}
    for model in models:
        expected.update(model)
    assert {k: db.get(k) for k in db.all()} == expected
    db.save()
    again = PickleDB(path)
    again.load()
    assert {k: again.get(k) for k in again.all()} == expected
    assert _rel_names(tmp_path) == ["threads.json"]
    return len(snapshots)


def test_rel_concurrency_pickledb_threads_with_saver(tmp_path):
    assert _rel_pickledb_threads(tmp_path, workers=4, ops=20_000, min_saves=20) >= 20


@pytest.mark.heavy
def test_rel_concurrency_pickledb_threads_with_saver_heavy(tmp_path):
    assert _rel_pickledb_threads(tmp_path, workers=6, ops=100_000, min_saves=30) >= 30


def _rel_sqlite_threads(tmp_path, workers, ops):
    path = tmp_path / "threads.sqlite3"
    models = [{} for _ in range(workers)]
    with PickleDBSQLite(path) as db:

        def worker(n):
            rng = random.Random(100 + n)
            model = models[n]
            mine = [f"w{n}-{i}" for i in range(20)]
            for step in range(ops):
                op = rng.random()
                key = rng.choice(mine)
                if op < 0.35:
                    assert db.set(key, [n, step]) == key
                    model[key] = [n, step]
                elif op < 0.6:
                    assert db.get(key, None) == model.get(key)
                elif op < 0.75:
                    assert db.remove(key) is (key in model)
                    model.pop(key, None)
                elif op < 0.92:
                    batch = {k: [n, step, "b"] for k in rng.sample(mine, 4)}
                    assert db.set_many(batch) == list(batch)
                    model.update(batch)
                else:
                    assert [k for k in db.all() if k.startswith(f"w{n}-")] == sorted(model)

        errors = _rel_run_threads([lambda n=n: worker(n) for n in range(workers)])
        assert not errors, errors
        expected = {}
        for model in models:
            expected.update(model)
        assert db.all() == sorted(expected)
        assert all(db.get(k) == v for k, v in expected.items())


def test_rel_concurrency_sqlite_threads(tmp_path):
    _rel_sqlite_threads(tmp_path, workers=4, ops=400)


@pytest.mark.heavy
def test_rel_concurrency_sqlite_threads_heavy(tmp_path):
    _rel_sqlite_threads(tmp_path, workers=8, ops=5000)


async def _rel_sqlite_tasks(path, tasks, ops):
    models = [{} for _ in range(tasks)]
    async with PickleDBSQLite(path) as db:

        async def task(n):
            rng = random.Random(200 + n)
            model = models[n]
            mine = [f"t{n}-{i}" for i in range(15)]
            for step in range(ops):
                op = rng.random()
                key = rng.choice(mine)
                if op < 0.4:
                    assert await db.set(key, step) == key
                    model[key] = step
                elif op < 0.6:
                    assert await db.get(key, None) == model.get(key)
                elif op < 0.75:
                    assert await db.remove(key) is (key in model)
                    model.pop(key, None)
                elif op < 0.95:
                    batch = {k: -step for k in rng.sample(mine, 3)}
                    assert await db.set_many(batch) == list(batch)
                    model.update(batch)
                else:
                    assert [k for k in await db.all() if k.startswith(f"t{n}-")] == sorted(model)

        await asyncio.gather(*(task(n) for n in range(tasks)))
        expected = {}
        for model in models:
            expected.update(model)
        assert await db.all() == sorted(expected)
        assert [await db.get(k) for k in sorted(expected)] == [expected[k] for k in sorted(expected)]


def test_rel_concurrency_sqlite_async_tasks(tmp_path):
    start = threading.active_count()
    # The file exists beforehand: first use of a new file by concurrent tasks is
    # covered by test_rel_concurrency_sqlite_async_first_use_of_new_file.
    with PickleDBSQLite(tmp_path / "tasks.sqlite3") as db:
        db.set("pre", 0)
        db.remove("pre")
    _rel_run(_rel_sqlite_tasks, tmp_path / "tasks.sqlite3", 6, 150)
    assert _rel_wait_threads(start) == start


async def _rel_first_use_together(path, tasks):
    async with PickleDBSQLite(path) as db:
        results = await asyncio.gather(*(db.set(f"k{n}", n) for n in range(tasks)), return_exceptions=True)
    return [repr(r) for r in results if isinstance(r, BaseException)]


def test_rel_concurrency_sqlite_async_first_use_of_new_file(tmp_path):
    # Several tasks whose first operation on a brand-new file runs at the same time.
    failures = []
    for attempt in range(60):
        failures += _rel_run(_rel_first_use_together, tmp_path / f"new{attempt}.sqlite3", 6)
    assert not failures, f"{len(failures)} of 360 first writes failed, e.g. {failures[0]}"


# One process of the multi-process test: mixed operations on its own key space,
# every read checked against its own model; prints that model at the end.
_REL_PROCESS_CHILD = textwrap.dedent(
    """
    import asyncio
    import json
    import random
    import sys
    import pickledb

    path, number, ops, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = random.Random(number)
    mine = [f"p{number}-{i}" for i in range(40)]
    model = {}
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    db = pickledb.PickleDBSQLite(path, durable=False)

    def sync_call(name, *args):
        return getattr(db, name)(*args)

    async def main(call):
        for step in range(ops):
            op = rng.random()
            key = rng.choice(mine)
            if op < 0.4:
                value = {"p": number, "step": step}
                assert await call("set", key, value) == key
                model[key] = value
            elif op < 0.65:
                got = await call("get", key, None)
                assert got == model.get(key), (key, got, model.get(key))
            elif op < 0.8:
                assert await call("remove", key) is (key in model)
                model.pop(key, None)
            elif op < 0.95:
                batch = {k: {"p": number, "step": step, "batch": True} for k in rng.sample(mine, 3)}
                assert await call("set_many", batch) == list(batch)
                model.update(batch)
            else:
                shared = await call("all")
                assert [k for k in shared if k.startswith(f"p{number}-")] == sorted(model)
        if mode == "async":
            await db.close()

    if mode == "sync":
        async def call(name, *args):
            return sync_call(name, *args)
    else:
        async def call(name, *args):
            return await getattr(db, name)(*args)
    asyncio.run(main(call))
    db.close()
    print(json.dumps(model), flush=True)
    """
)


def _rel_processes(tmp_path, count, ops):
    path = tmp_path / "shared.sqlite3"
    procs = []
    try:
        for number in range(count):
            mode = "async" if number % 2 else "sync"
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _REL_PROCESS_CHILD, str(path), str(number), str(ops), mode],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=_rel_env(),
                    bufsize=0,
                )
            )
        for proc in procs:
            assert proc.stdout.readline() == b"ready\n"
        for proc in procs:  # release them all at once onto a file that does not exist yet
            proc.stdin.write(b"go\n")
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    expected = {}
    for proc, (out, err) in zip(procs, results, strict=True):
        text = err.decode(errors="replace")
        assert "locked" not in text and proc.returncode == 0, text
        expected.update(json.loads(out))
    with PickleDBSQLite(path) as db:
        assert db.all() == sorted(expected)
        for key, value in expected.items():
            assert db.get(key) == value


def test_rel_concurrency_sqlite_processes(tmp_path):
    # durable=False in the children: 8,000 fsynced commits would dominate the runtime.
    _rel_processes(tmp_path, count=4, ops=2000)


@pytest.mark.heavy
def test_rel_concurrency_sqlite_processes_heavy(tmp_path):
    _rel_processes(tmp_path, count=8, ops=10_000)


# =============================================================================
# 8. Resource hygiene: threads, warnings, loops
# =============================================================================


def _rel_wal_gone(path, timeout=2.0):
    """The -wal file disappears once the last connection to the database closed."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"{path}-wal") and time.monotonic() < deadline:
        time.sleep(0.01)
    return not os.path.exists(f"{path}-wal")


def test_rel_hygiene_sqlite_sync_use_then_close(tmp_path):
    start = threading.active_count()
    path = tmp_path / "h.sqlite3"
    db = PickleDBSQLite(path)
    db.set_many({"a": 1, "b": 2})
    assert db.get("a") == 1
    db.close()
    db.close()  # closing twice does nothing
    with pytest.raises(ValueError, match="closed"):
        db.get("a")
    assert _rel_wait_threads(start) == start
    assert _rel_wal_gone(path)


async def _rel_async_session(db, key):
    await db.set(key, [key])
    assert await db.get(key) == [key]
    return await db.all()


async def _rel_async_with(path):
    async with PickleDBSQLite(path) as db:
        await db.set("x", 1)
        return await db.get("x")


def test_rel_hygiene_sqlite_async_with(tmp_path):
    start = threading.active_count()
    assert _rel_run(_rel_async_with, tmp_path / "h.sqlite3") == 1
    assert _rel_wait_threads(start) == start
    assert _rel_wal_gone(tmp_path / "h.sqlite3")


def test_rel_hygiene_sqlite_several_asyncio_runs_then_sync_close(tmp_path):
    start = threading.active_count()
    path = tmp_path / "h.sqlite3"
    with _rel_thread_errors() as errors:
        db = PickleDBSQLite(path)
        db.set("sync", 0)  # the sync connection as well
        for n in range(4):
            assert f"k{n}" in _rel_run(_rel_async_session, db, f"k{n}")
        db.close()
        with pytest.raises(ValueError, match="closed"):
            _rel_run(_rel_async_session, db, "late")
    assert errors == []
    assert _rel_wait_threads(start) == start
    assert _rel_wal_gone(path)


@contextlib.contextmanager
def _rel_private_loop():
    """A loop the test drives itself (not asyncio.run), shut down and closed afterwards."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def test_rel_hygiene_sqlite_loop_per_owner_closed_inside_loop(tmp_path):
    start = threading.active_count()
    path = tmp_path / "h.sqlite3"
    with _rel_private_loop() as loop:
        db = PickleDBSQLite(path)
        loop.run_until_complete(_rel_async_session(db, "a"))
        loop.run_until_complete(_rel_await_call(db, "close"))
    assert _rel_wait_threads(start) == start
    assert _rel_wal_gone(path)


def test_rel_hygiene_sqlite_sync_close_with_open_idle_loop(tmp_path):
    start = threading.active_count()
    path = tmp_path / "h.sqlite3"
    with _rel_thread_errors() as errors, _rel_private_loop() as loop:
        db = PickleDBSQLite(path)
        loop.run_until_complete(_rel_async_session(db, "a"))
        db.close()  # from sync code while the loop is open but idle
    assert errors == []
    assert _rel_wait_threads(start) == start
    assert _rel_wal_gone(path)


def test_rel_hygiene_sqlite_async_close_in_a_later_loop(tmp_path):
    # Used in one asyncio.run, closed with `await db.close()` in the next one.
    start = threading.active_count()
    with _rel_thread_errors() as errors:
        for n in range(10):
            path = tmp_path / f"h{n}.sqlite3"
            db = PickleDBSQLite(path)
            _rel_run(_rel_async_session, db, "a")
            _rel_run(_rel_await_call, db, "close")
            assert _rel_wal_gone(path)
    assert errors == [], errors[0]
    assert _rel_wait_threads(start) == start


async def _rel_serve_then_linger(db, finished, gate):
    await _rel_async_session(db, "served")
    # An executor job that outlives the coroutine keeps asyncio.run's shutdown
    # (and so the loop) running until `gate` is set.
    asyncio.get_running_loop().run_in_executor(None, gate.wait)
    finished.set()


def test_rel_hygiene_sqlite_sync_close_while_other_thread_loop_shuts_down(tmp_path):
    # close() from the main thread while the event loop that opened an async
    # connection (in a worker thread) is still running but about to close.
    start = threading.active_count()
    with _rel_thread_errors() as errors:
        for n in range(5):
            path = tmp_path / f"h{n}.sqlite3"
            db = PickleDBSQLite(path)
            finished, gate = threading.Event(), threading.Event()
            server = threading.Thread(target=_rel_run, args=(_rel_serve_then_linger, db, finished, gate))
            server.start()
            try:
                assert finished.wait(10)
                time.sleep(0.01)
                db.close()  # must have closed that connection when it returns
            finally:
                gate.set()
                server.join(10)
            assert _rel_wal_gone(path), "the other loop's connection was never closed"
    assert errors == [], errors[0]
    assert _rel_wait_threads(start) == start


async def _rel_failing_connect(db):
    with pytest.raises((ValueError, sqlite3.OperationalError)):
        await db.set("k", 1)


@pytest.mark.parametrize("where", ["not-sqlite", "missing-directory"])
def test_rel_hygiene_failed_async_connect_leaves_no_thread_error(tmp_path, where):
    start = threading.active_count()
    if where == "not-sqlite":
        path = tmp_path / "bad.sqlite3"
        path.write_bytes(b"not a database" * 100)
    else:
        path = tmp_path / "nope" / "db.sqlite3"
    with _rel_thread_errors() as errors:
        for _ in range(30):
            db = PickleDBSQLite(path)
            _rel_run(_rel_failing_connect, db)
            db.close()
    assert errors == [], errors[0]
    assert _rel_wait_threads(start) == start


def test_rel_hygiene_unclosed_sqlite_warns_and_closed_one_is_silent(tmp_path):
    start = threading.active_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = PickleDBSQLite(tmp_path / "a.sqlite3")
        db.set("k", 1)
        db.close()
        del db
        gc.collect()
        assert caught == []
        leaked = PickleDBSQLite(tmp_path / "b.sqlite3")
        leaked.set("k", 1)
        del leaked
        gc.collect()
    assert [w.category for w in caught] == [ResourceWarning]
    assert "b.sqlite3" in str(caught[0].message)
    assert _rel_wait_threads(start) == start


async def _rel_pickledb_async_usage(path):
    db = PickleDB(path)
    db.set("not-awaited", 1)  # done at call time; dropping the awaitable is harmless
    db.get("not-awaited")
    await db.set("a", 1)
    await asyncio.gather(*(db.set(f"g{n}", n) for n in range(3)))
    assert [await c for c in [db.get(f"g{n}") for n in range(3)]] == [0, 1, 2]
    await db.save()
    await db.load()
    return await db.all()


def test_rel_hygiene_pickledb_async_no_warnings_no_threads(tmp_path):
    start = threading.active_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = _rel_run(_rel_pickledb_async_usage, tmp_path / "p.json")
        gc.collect()
    assert caught == []
    assert keys == ["not-awaited", "a", "g0", "g1", "g2"]
    assert _rel_wait_threads(start) == start


def _rel_sync_helper(db):
    return db.get("k")  # plain function: always the value, even when called from async code


async def _rel_dispatch_checks(pdb, sdb):
    await pdb.set("k", "p")
    await sdb.set("k", "s")
    assert _rel_sync_helper(pdb) == "p"
    assert (lambda: pdb.get("k"))() == "p"
    assert await asyncio.gather(*(sdb.get(k) for k in ["k", "k"])) == ["s", "s"]
    assert {k: await sdb.get(k) for k in await sdb.all()} == {"k": "s", "warm": 0}


def test_rel_hygiene_dispatch_from_helpers_and_comprehensions(tmp_path):
    pdb = PickleDB(tmp_path / "p.json")
    with PickleDBSQLite(tmp_path / "s.sqlite3") as sdb:
        sdb.set("warm", 0)  # a sync connection next to the async one
        _rel_run(_rel_dispatch_checks, pdb, sdb)


# A script run in a fresh interpreter, so that event-loop policy state and
# implicitly created loops cannot leak into other tests.
_REL_CLOSE_AFTER_LOOP_CHILD = textwrap.dedent(
    """
    import asyncio
    import gc
    import json
    import sys
    import threading
    import time
    import warnings
    import pickledb

    problems = []
    sys.unraisablehook = lambda u: problems.append(f"unraisable: {u.exc_value!r}")
    threading.excepthook = lambda a: problems.append(f"thread {a.thread.name}: {a.exc_value!r}")
    path, variant = sys.argv[1], sys.argv[2]
    start = threading.active_count()

    async def use(db):
        await db.set("k", 1)
        assert await db.get("k") == 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = pickledb.PickleDBSQLite(path)
        if variant == "asyncio-run":
            asyncio.run(use(db))
            asyncio.run(use(db))
        else:
            loop = asyncio.new_event_loop()
            if variant == "current-loop":
                asyncio.set_event_loop(loop)
            loop.run_until_complete(use(db))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
        db.close()  # sync close after the loop is gone
        deadline = time.monotonic() + 2
        while threading.active_count() > start and time.monotonic() < deadline:
            time.sleep(0.01)
        threads = threading.active_count() - start
        asyncio.set_event_loop(None)  # drop whatever loop the policy holds now
        gc.collect()
    problems += [f"{w.category.__name__}: {w.message}" for w in caught]
    print(json.dumps({"threads": threads, "problems": problems}))
    """
)


@pytest.mark.parametrize("variant", ["asyncio-run", "private-loop", "current-loop"])
def test_rel_hygiene_sync_close_after_event_loop_closed(tmp_path, variant):
    result = subprocess.run(
        [sys.executable, "-c", _REL_CLOSE_AFTER_LOOP_CHILD, str(tmp_path / "h.sqlite3"), variant],
        capture_output=True,
        env=_rel_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    report = json.loads(result.stdout)
    assert report["threads"] == 0
    assert report["problems"] == []
    assert _rel_wal_gone(tmp_path / "h.sqlite3")


# =============================================================================
# Further edges: file modes, malformed set_many items, foreign rows, overlapping saves
# =============================================================================


def test_rel_fault_new_file_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        db = PickleDB(tmp_path / "new.json")
        db.set("a", 1)
        db.save()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640


@pytest.mark.parametrize("kind", _REL_KINDS)
@pytest.mark.parametrize("items", [[("a", 1), ("b",)], [("a", 1), "xyz"], [("a", 1), 5]], ids=["short", "long", "int"])
def test_rel_bad_set_many_items_store_nothing(tmp_path, kind, items):
    db = PickleDB(tmp_path / "m.json") if kind == "pickledb" else PickleDBSQLite(tmp_path / "m.sqlite3")
    try:
        with pytest.raises((TypeError, ValueError)):
            db.set_many(items)
        assert db.all() == []
    finally:
        if kind == "sqlite":
            db.close()


def test_rel_bad_sqlite_row_written_by_another_program(tmp_path):
    path = tmp_path / "x.sqlite3"
    with PickleDBSQLite(path) as db:
        db.set("good", 1)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?)", ("broken", b"{not json"))
    finally:
        conn.close()
    with PickleDBSQLite(path) as db:
        with pytest.raises(ValueError) as excinfo:
            db.get("broken")
        assert db.path in str(excinfo.value) and repr("broken") in str(excinfo.value)
        assert db.get("good") == 1


async def _rel_parallel_saves(db, rounds):
    for n in range(rounds):
        await db.set(f"r{n}", n)
        assert await asyncio.gather(*(db.save() for _ in range(4))) == [True] * 4


def test_rel_concurrency_pickledb_async_saves_overlap(tmp_path):
    db = PickleDB(tmp_path / "s.json")
    _rel_run(_rel_parallel_saves, db, 20)
    assert orjson.loads((tmp_path / "s.json").read_bytes()) == {f"r{n}": n for n in range(20)}
    assert _rel_names(tmp_path) == ["s.json"]


# =============================================================================
# Topic sections below this banner are kept in the order the suite is read.
# =============================================================================


# --- one file, several writers: conflicts, the save lock, interruptions, odd paths ---


_NEEDS_FLOCK = pytest.mark.skipif(sys.platform == "win32", reason="no flock: Windows saves check without the lock")


def _json_file(path: Path, data: dict) -> bytes:
    raw = orjson.dumps(data)
    path.write_bytes(raw)
    return raw


def test_save_without_load_over_an_existing_file_conflicts_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    raw = _json_file(path, {f"user{i}": i for i in range(5)})
    db = PickleDB(path)
    db.set("new", 1)
    with pytest.raises(pickledb.ConflictError) as info:
        db.save()
    err = info.value
    assert isinstance(err, RuntimeError) and err.path == str(path)
    assert f"{path} exists and this PickleDB never loaded it" in str(err)
    assert "load()" in str(err) and "save(force=True)" in str(err)
    assert path.read_bytes() == raw and _rel_names(tmp_path) == ["users.json"]
    assert db.all() == ["new"]  # memory as it was

    async def main() -> None:
        with pytest.raises(pickledb.ConflictError):
            await db.save()
        await db.load()
        await db.set("new", 1)
        assert await db.save() is True

    asyncio.run(main())
    assert orjson.loads(path.read_bytes()) == {**{f"user{i}": i for i in range(5)}, "new": 1}


def test_save_of_a_missing_or_empty_file_needs_no_load(tmp_path: Path) -> None:
    db = PickleDB(tmp_path / "new.json")
    db.set("a", 1)
    assert db.save() is True
    (tmp_path / "empty.json").write_bytes(b"")
    empty = PickleDB(tmp_path / "empty.json")
    empty.set("b", 2)
    assert empty.save() is True  # an empty file holds nothing to lose
    assert orjson.loads((tmp_path / "empty.json").read_bytes()) == {"b": 2}


def test_two_instances_one_save_wins_the_other_reloads_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    _json_file(path, {"start": 0})
    first, second = PickleDB(path), PickleDB(path)
    first.load()
    second.load()
    first.set("first", 1)
    second.set("second", 2)
    assert first.save() is True
    with pytest.raises(pickledb.ConflictError, match="was changed on disk since this PickleDB last loaded or saved it"):
        second.save()
    assert orjson.loads(path.read_bytes()) == {"start": 0, "first": 1}
    second.load()  # the retry loop: load, redo the change, save
    second.set("second", 2)
    assert second.save() is True
    assert orjson.loads(path.read_bytes()) == {"start": 0, "first": 1, "second": 2}
    with pytest.raises(pickledb.ConflictError):
        first.save()


def test_two_processes_exactly_one_of_a_conflicting_pair_saves(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    _json_file(path, {"start": 0})
    child = subprocess.Popen(
        [sys.executable, "-W", "error", "-c", _TWO_WRITERS_CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_rel_env(),
    )
    try:
        assert child.stdout.readline() == "loaded\n"
        db = PickleDB(path)
        db.load()
        db.set("parent", 1)
        assert db.save() is True  # the parent saves first: the child's save must conflict
        out, err = child.communicate("go\n", timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert out == "conflict\nsaved\n"
    assert orjson.loads(path.read_bytes()) == {"start": 0, "parent": 1, "child": 1}
    with pytest.raises(pickledb.ConflictError):  # now the parent is the one behind
        db.save()


_TWO_WRITERS_CHILD = textwrap.dedent(
    """
    import sys
    import pickledb

    db = pickledb.PickleDB(sys.argv[1])
    db.load()
    db.set("child", 1)
    print("loaded", flush=True)
    sys.stdin.readline()
    try:
        db.save()
    except pickledb.ConflictError:
        print("conflict", flush=True)
        db.load()
        db.set("child", 1)
        db.save()
    print("saved", flush=True)
    """
)

_STRESS_WRITER = textwrap.dedent(
    """
    import sys
    import pickledb

    path, me, cycles = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = pickledb.PickleDB(path)
    conflicts = 0
    for n in range(1, cycles + 1):
        while True:
            db.load()
            db.set(me, n)
            try:
                db.save()
                break
            except pickledb.ConflictError:
                conflicts += 1
    print(conflicts)
    """
)


def _stress_writers(tmp_path: Path, procs: int, cycles: int) -> None:
    path = tmp_path / "shared.json"
    names = [f"p{i}" for i in range(procs)]
    stop = threading.Event()
    seen: dict[str, int] = {}
    versions: list[int] = [0]
    problems: list[str] = []

    def watch() -> None:  # every version of the file that can be read must be a whole snapshot
        last = b""
        while not stop.is_set():
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            if raw == last:
                continue
            last = raw
            versions[0] += 1
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as err:
                problems.append(f"torn file: {err}")
                return
            for name, value in data.items():
                if value < seen.get(name, 0):
                    problems.append(f"lost update: {name} went back from {seen[name]} to {value}")
                seen[name] = max(seen.get(name, 0), value)

    watcher = threading.Thread(target=watch)
    watcher.start()
    children = [
        subprocess.Popen(
            [sys.executable, "-W", "error", "-c", _STRESS_WRITER, str(path), name, str(cycles)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_rel_env(),
        )
        for name in names
    ]
    try:
        results = [child.communicate(timeout=300) for child in children]
    finally:
        stop.set()
        watcher.join()
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    for child, (_out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    assert problems == []
    assert orjson.loads(path.read_bytes()) == {name: cycles for name in names}  # no update lost
    assert versions[0] > 1
    assert _rel_names(tmp_path) == ["shared.json"]  # no lock file, no temp file


@_NEEDS_FLOCK
def test_four_processes_load_set_save_retry_lose_no_update(tmp_path: Path) -> None:
    _stress_writers(tmp_path, procs=4, cycles=200)


@pytest.mark.heavy
@_NEEDS_FLOCK
def test_four_processes_load_set_save_retry_lose_no_update_heavy(tmp_path: Path) -> None:
    _stress_writers(tmp_path, procs=4, cycles=1000)


@pytest.mark.parametrize("edit", ["rewrite", "same-size-in-place", "append"])
def test_hand_edit_between_load_and_save_conflicts(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "db.json"
    raw = _json_file(path, {"a": 1})
    db = PickleDB(path)
    db.load()
    db.set("b", 2)
    if edit == "rewrite":  # an editor that writes a new file and renames it
        (tmp_path / "edit.tmp").write_bytes(b'{"a": 100}')
        os.replace(tmp_path / "edit.tmp", path)
    elif edit == "same-size-in-place":  # within the same second, keeping size and inode
        with open(path, "r+b") as file:
            file.write(raw.replace(b"1", b"7"))
    else:
        with open(path, "ab") as file:
            file.write(b" ")
    edited = path.read_bytes()
    with pytest.raises(pickledb.ConflictError, match="changed on disk"):
        db.save()
    assert path.read_bytes() == edited
    assert db.save(force=True) is True  # replaces the file anyway ...
    assert orjson.loads(path.read_bytes()) == {"a": 1, "b": 2}
    db.set("c", 3)
    assert db.save() is True  # ... and remembers the file it wrote


def test_force_save_is_remembered_and_other_instances_then_conflict(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    _json_file(path, {"old": 1})
    other = PickleDB(path)
    other.load()
    db = PickleDB(path)
    db.set("mine", 1)
    assert db.save(force=True) is True

    async def main() -> None:
        await db.set("async", 2)
        assert await db.save() is True
        assert await db.save(force=True) is True

    asyncio.run(main())
    assert orjson.loads(path.read_bytes()) == {"mine": 1, "async": 2}
    with pytest.raises(pickledb.ConflictError):
        other.save()


def test_context_managers_load_first_and_conflict_only_when_someone_saved_in_between(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    _json_file(path, {"visits": 1})
    with PickleDB(path) as db:
        db.set("visits", db.get("visits") + 1)
    with pytest.raises(pickledb.ConflictError):
        with PickleDB(path) as db:
            db.set("visits", db.get("visits") + 1)
            with PickleDB(path) as meanwhile:
                meanwhile.set("other", True)
    assert orjson.loads(path.read_bytes()) == {"visits": 2, "other": True}


@_NEEDS_FLOCK
def test_save_waits_for_the_directory_lock_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        db = PickleDB(path)
        db.set("a", 1)
        saver = threading.Thread(target=db.save)
        saver.start()
        saver.join(0.5)
        assert saver.is_alive() and not path.exists()  # the check and the rename wait for the other process
        holder.communicate("release\n", timeout=30)
        saver.join(30)
        assert not saver.is_alive()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate()
    assert orjson.loads(path.read_bytes()) == {"a": 1}


_LOCK_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys

    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.readline()
    """
)

_STUCK_SAVER = textwrap.dedent(
    """
    import sys, time
    import pickledb

    def stuck(src, dst):  # inside the locked check-and-rename
        print("locked", flush=True)
        time.sleep(600)

    db = pickledb.PickleDB(sys.argv[1])
    db.load()
    db.set("killed", True)
    pickledb.os.replace = stuck
    db.save()
    """
)


@_NEEDS_FLOCK
def test_a_process_killed_while_holding_the_save_lock_never_blocks_the_next_save(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    _json_file(path, {"a": 1})
    saver = subprocess.Popen([sys.executable, "-c", _STUCK_SAVER, str(path)], stdout=subprocess.PIPE, env=_rel_env())
    try:
        assert saver.stdout.readline() == b"locked\n"
        saver.kill()
        saver.communicate(timeout=30)
    finally:
        if saver.poll() is None:
            saver.kill()
            saver.communicate()
    db = PickleDB(path)
    db.load()
    db.set("b", 2)
    start = time.monotonic()
    assert db.save() is True
    assert time.monotonic() - start < 5
    assert orjson.loads(path.read_bytes()) == {"a": 1, "b": 2}
    leftovers = [name for name in _rel_names(tmp_path) if name != "db.json"]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the killed save's temp file, never read


_HANDLER_SAVES_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys, threading
    import orjson, pickledb

    if OTHER_THREAD:  # it lets the signal in, so the handler runs inside the save's locked section too
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    db = pickledb.PickleDB(sys.argv[1])
    db.load()
    handled = []

    def on_signal(signum, frame):  # "save on SIGTERM", run while the main thread is inside save()
        db.set("handler", len(handled) + 1)
        db.save()
        with open(db.location, "rb") as file:
            handled.append(orjson.loads(file.read()))

    signal.signal(signal.SIGTERM, on_signal)
    names = ("stat", "open", "write", "fsync", "fstat", "replace", "chmod")
    real = {name: getattr(os, name) for name in names}
    state = {"calls": 0, "at": -1}

    def hooked(name):
        def call(*args, **kwargs):
            state["calls"] += 1
            if state["calls"] == state["at"] and not state["before"]:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the call
            result = real[name](*args, **kwargs)
            if state["calls"] == state["at"] and state["before"]:
                os.kill(os.getpid(), signal.SIGTERM)  # ... or right after it
            return result
        return call

    for name in names:
        setattr(pickledb.os, name, hooked(name))
    points = 0
    for before in (False, True):
        at = 1
        while True:
            db.set("main", at)
            state.update(calls=0, at=at, before=before)
            count = len(handled)
            db.save()
            state["at"] = -1
            if len(handled) == count:  # the save made fewer calls than `at`: every point was tried
                break
            with open(db.location, "rb") as file:
                on_disk = orjson.loads(file.read())
            memory = {key: db.get(key) for key in db.all()}
            assert handled[-1] == memory, (before, at, handled[-1], memory)  # the handler saved all of it
            assert on_disk == memory, (before, at, on_disk, memory)  # and nothing older replaced it
            assert db.save() is True  # no false conflict afterwards
            points += 1
            at += 1
    for name in os.listdir(os.path.dirname(db.location)):
        assert not name.endswith(".tmp"), name
    print("points", points)
    """
)


@pytest.mark.parametrize("other_thread", [False, True], ids=["one-thread", "with-another-thread"])
def test_signal_handler_saving_during_a_save_completes_and_is_not_undone(tmp_path: Path, other_thread: bool) -> None:
    path = tmp_path / "db.json"
    _json_file(path, {"start": 0})
    code = _HANDLER_SAVES_DURING_SAVE.replace("sys.argv[1]", repr(str(path)))
    result = run_python(code.replace("OTHER_THREAD", str(other_thread)), timeout=60)
    assert result.returncode == 0, result.stderr
    points = int(result.stdout.split()[1])
    assert points >= 16, result.stdout  # a signal before and after each system call of a save


_INTERRUPT_STORM = textwrap.dedent(
    """
    import gc, os, random, signal, sys
    import orjson, pickledb

    class Interrupted(Exception):
        pass

    def on_alarm(signum, frame):
        raise Interrupted

    path, wanted = sys.argv[1], int(sys.argv[2])
    db = pickledb.PickleDB(path)
    db.set_many({f"k{i}": "x" * 40 for i in range(300)})
    db.save()
    fds = len(os.listdir("/proc/self/fd"))
    signal.signal(signal.SIGALRM, on_alarm)
    rng = random.Random(int(sys.argv[3]))
    interrupted = done = 0
    while interrupted < wanted:
        db.set("n", interrupted + done)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.00001, 0.002))
                db.save()
                signal.setitimer(signal.ITIMER_REAL, 0)
                done += 1
            except Interrupted:
                signal.setitimer(signal.ITIMER_REAL, 0)
                interrupted += 1
        except Interrupted:  # the alarm went off between the two handlers
            signal.setitimer(signal.ITIMER_REAL, 0)
            interrupted += 1
    signal.setitimer(signal.ITIMER_REAL, 0)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == fds, ("descriptor leak", os.listdir("/proc/self/fd"))
    leftovers = [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")]
    assert leftovers == [], leftovers
    with open(path, "rb") as file:
        assert len(orjson.loads(file.read())) == 301  # always a whole snapshot
    db.set("after", True)
    assert db.save() is True  # no false conflict: the instance knows which file it wrote
    print(interrupted, done)
    """
)


def _interrupt_storm(tmp_path: Path, interrupts: int, seed: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_STORM, str(tmp_path / "db.json"), str(interrupts), str(seed)],
        capture_output=True,
        text=True,
        timeout=600,
        env=_rel_env(),
    )
    assert result.returncode == 0, result.stderr
    interrupted, done = map(int, result.stdout.split())
    assert interrupted == interrupts


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_signal_handler_raising_anywhere_in_save_leaks_no_descriptor_or_temp_file(tmp_path: Path) -> None:
    _interrupt_storm(tmp_path, 300, seed=1)


@pytest.mark.heavy
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_signal_handler_raising_anywhere_in_save_leaks_no_descriptor_or_temp_file_heavy(tmp_path: Path) -> None:
    _interrupt_storm(tmp_path, 2000, seed=2)


_FORK_WHILE_A_THREAD_SAVES = textwrap.dedent(
    """
    import os, sys, threading, time, warnings
    import orjson, pickledb

    warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
    path = sys.argv[1]
    db = pickledb.PickleDB(path)
    db.load()
    db.set("parent", 0)
    db.save()
    inside, release = threading.Event(), threading.Event()
    real_replace = os.replace

    def slow_replace(src, dst):  # the background saver holds the save locks here
        if threading.current_thread().name == "saver":
            inside.set()
            release.wait(30)
        real_replace(src, dst)

    pickledb.os.replace = slow_replace
    db.set("thread", 1)
    saver = threading.Thread(target=db.save, name="saver")
    saver.start()
    assert inside.wait(30)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            db.set("child", 1)
            try:
                db.save()
            except pickledb.ConflictError:  # the parent's thread saved after the fork
                db.load()
                db.set("child", 1)
                db.save()
            code = 0
        finally:
            os._exit(code)
    time.sleep(0.3)
    release.set()
    saver.join(30)
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.exit("the child hung on the lock its parent's thread held at the fork")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0, status
    with open(path, "rb") as file:
        print(" ".join(sorted(orjson.loads(file.read()))))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_while_another_thread_holds_the_save_lock_does_not_deadlock_the_child(tmp_path: Path) -> None:
    result = run_python(_FORK_WHILE_A_THREAD_SAVES.replace("sys.argv[1]", repr(str(tmp_path / "db.json"))))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "parent", "thread"]  # nothing lost on either side
    assert _rel_names(tmp_path) == ["db.json"]


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
def test_cancelled_load_changes_nothing_in_memory(tmp_path: Path, how: str) -> None:
    path = tmp_path / "big.json"
    _json_file(path, {f"k{i}": i for i in range(300_000)})
    db = PickleDB(path)
    db.set("mine", 1)

    async def main() -> None:
        if how == "wait_for":
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(db.load(), 0.001)
        else:
            task = asyncio.ensure_future(db.load())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await db.set("after", 2)

    asyncio.run(main())  # returns once the worker thread has finished its read
    assert db.all() == ["mine", "after"]
    with pytest.raises(pickledb.ConflictError):  # the cancelled load did not count as seeing the file
        db.save()


def test_save_refuses_a_file_too_large_to_load_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pickledb._MAX_FILE_BYTES == 2**31 - 1
    path = tmp_path / "db.json"
    raw = _json_file(path, {"a": 1})
    db = PickleDB(path)
    db.load()
    monkeypatch.setattr(pickledb, "_MAX_FILE_BYTES", 100)
    db.set("big", "x" * 200)
    with pytest.raises(ValueError, match=r"more than the 100 bytes orjson can load back.*PickleDBSQLite") as info:
        db.save()
    assert str(path) in str(info.value)
    assert path.read_bytes() == raw and _rel_names(tmp_path) == ["db.json"]
    db.remove("big")
    assert db.save() is True
    path.write_bytes(b'{"b": "' + b"y" * 200 + b'"}')
    with pytest.raises(CorruptFileError, match="more than the 100 bytes orjson can parse"):
        db.load()
    assert db.all() == ["a"]


_ODD_PATHS = textwrap.dedent(
    """
    import os, resource, stat, sys
    import pickledb

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # reading /dev/zero must not take the machine
    real_replace = os.replace

    def guarded(src, dst):
        if os.path.exists(dst) and not stat.S_ISREG(os.stat(dst).st_mode):
            os.unlink(src)
            raise SystemExit(f"save() was about to replace {dst}, which is not a regular file")
        real_replace(src, dst)

    pickledb.os.replace = guarded
    for path, kind in zip(sys.argv[1::2], sys.argv[2::2]):
        before = os.lstat(path)
        db = pickledb.PickleDB(path)
        db.set("a", 1)
        for op in (db.load, db.save):
            try:
                op()
            except OSError as err:
                assert err.filename == db.location and db.location in str(err), err
                assert kind in str(err), (kind, str(err))
            else:
                raise SystemExit(f"{op.__name__}() of {path} did not refuse")
        assert db.all() == ["a"]
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), path
    print("refused")
    """
)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev")
def test_load_and_save_refuse_anything_but_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    (tmp_path / "null.json").symlink_to("/dev/null")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    (tmp_path / "dir.json").mkdir()
    cases = [
        (fifo, "a FIFO"),
        (tmp_path / "null.json", "a character device"),
        (tmp_path / "zero.json", "a character device"),
        ("/dev/null", "a character device"),
        (tmp_path / "dir.json", "a directory"),
    ]
    args = [str(item) for case in cases for item in case]
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _ODD_PATHS, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=_rel_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "refused\n"
    assert sorted(_rel_names(tmp_path)) == ["dir.json", "fifo.json", "null.json", "zero.json"]


@pytest.mark.parametrize("name", ["a" * 250 + ".json", "é" * 125 + ".json", "b" * 234 + ".json"])
def test_file_names_up_to_name_max_bytes_can_be_saved(tmp_path: Path, name: str) -> None:
    assert len(os.fsencode(name)) <= 255
    path = tmp_path / name
    db = PickleDB(path)
    db.set("a", 1)
    assert db.save() is True
    db.set("b", 2)
    assert db.save() is True
    again = PickleDB(path)
    again.load()
    assert again.all() == ["a", "b"]
    assert _rel_names(tmp_path) == [name]


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [254, 300])  # 254 fails only inside the database's own object
def test_too_deep_nesting_is_named_on_save_and_on_load(tmp_path: Path, levels: int) -> None:
    db = PickleDB(tmp_path / "db.json")
    db.set_many({"fine": _nested(253), "deep": _nested(levels)})
    with pytest.raises(TypeError, match=r"key 'deep' holds a value nested too deeply") as info:
        db.save()
    assert "'fine'" not in str(info.value)
    assert _rel_names(tmp_path) == []
    db.remove("deep")
    assert db.save() is True  # 253 levels inside the object: the most orjson writes
    path = tmp_path / "deep.json"
    path.write_bytes(b'{"a": ' + b"[" * 1100 + b"]" * 1100 + b"}")  # valid JSON, deeper than orjson reads
    with pytest.raises(CorruptFileError, match="nested too deeply") as info:
        PickleDB(path).load()
    assert "not valid" not in str(info.value)


_HANDLER_SAVE_STORM = textwrap.dedent(
    """
    import os, random, signal, sys, threading
    import orjson, pickledb

    path, wanted, seed, other_thread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    if other_thread:
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    db = pickledb.PickleDB(path)
    db.set_many({f"k{i}": "x" * 40 for i in range(300)})
    db.save()
    rng = random.Random(seed)
    handled = 0

    def on_alarm(signum, frame):  # saves at a random moment, often in the middle of the main loop's save
        global handled
        handled += 1
        mine = handled
        db.set("handler", mine)
        db.save()
        with open(path, "rb") as file:
            on_disk = orjson.loads(file.read())
        memory = {key: db.get(key) for key in db.all()}
        # A timer re-armed before this handler ran can fire inside it: then memory moved on.
        assert on_disk["handler"] >= mine, "handler's save undone"
        assert handled > mine or on_disk == memory, "handler's save is not a snapshot of memory"

    signal.signal(signal.SIGALRM, on_alarm)
    n = 0
    while handled < wanted:
        n += 1
        db.set("main", n)
        signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.00001, 0.002))
        db.save()
    signal.setitimer(signal.ITIMER_REAL, 0)
    with open(path, "rb") as file:
        assert orjson.loads(file.read()) == {key: db.get(key) for key in db.all()}
    assert [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".tmp")] == []
    print(handled, n)
    """
)


@pytest.mark.heavy
@pytest.mark.parametrize("other_thread", [False, True], ids=["one-thread", "with-another-thread"])
def test_signal_handler_saving_at_random_moments_heavy(tmp_path: Path, other_thread: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _HANDLER_SAVE_STORM, str(tmp_path / "db.json"), "2000", "3", str(int(other_thread))],
        capture_output=True,
        text=True,
        timeout=600,
        env=_rel_env(),
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[0]) == 2000
