"""Tests for pickledb: both backends, sync and async, files, faults and bad input."""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
import pytest

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

    def write(path: str, payload: bytes) -> None:
        threads.append(threading.get_ident())
        real_write(path, payload)

    def read(path: str) -> dict:
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

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(30):
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
    assert synced == ["file", "dir"] * 9
    assert len(set(replaced)) == 9


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
    assert pickledb.__all__ == ("PickleDB", "PickleDBSQLite", "CorruptFileError", "MISSING")
