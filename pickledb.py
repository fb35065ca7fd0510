"""A JSON-backed key-value store with one sync/async API and atomic, durable saves."""

# Copyright (c) 2026, the pickledb authors.
# SPDX-License-Identifier: BSD-3-Clause
# This file is the whole library: copy it into a project together with the
# LICENSE text and `pip install orjson aiofiles` (plus aiosqlite for async use
# of PickleDBSQLite).

from __future__ import annotations

import functools
import gc
import os
import secrets
import stat
import sys
import threading
import time
import types
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import orjson

__all__ = ("PickleDB", "PickleDBSQLite", "CorruptFileError", "MISSING")
__version__ = "2.0.0"


# --- constants and sentinels ------------------------------------------------


class _Missing:
    """The type of MISSING: "no default was given"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


# Typed Any so that it is accepted wherever a value is; no module annotation, so
# that help(pickledb) shows no private name.
MISSING = cast(Any, _Missing())

# Code-object flags (CPython's `inspect.CO_*`, stable since 3.5).
_CO_NESTED = 0x10
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200
_CO_ASYNC = _CO_COROUTINE | _CO_ASYNC_GENERATOR
# A caller whose flags have none of these bits is plain sync code: the fast path.
_CO_MAYBE_ASYNC = _CO_ASYNC | _CO_NESTED | _CO_GENERATOR
# Code that belongs to the function it is written in (3.12 inlines the first three).
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})

# Each names the extra and the bare package (for a copied pickledb.py).
_SQLITE_HINT = 'async use of PickleDBSQLite needs aiosqlite: pip install "pickledb[sqlite]" (or: pip install aiosqlite)'
_AIOFILES_HINT = "async load() and save() need aiofiles: pip install pickledb (or: pip install aiofiles)"


# --- exceptions -------------------------------------------------------------


class CorruptFileError(ValueError):
    """A database file exists but does not hold a JSON object; `.path` names it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}; the file was left as it is")
        self.path = path
        self.problem = problem


# --- private helpers: sync/async dispatch -----------------------------------
#
# Every public operation has one name. Called from code that runs as a
# coroutine (an `async def`, or a notebook cell that uses top-level `await`)
# it returns an awaitable; called from anything else it returns the value.
# The decision is made from the caller's code flags, never from "is an event
# loop running", which is true in every notebook cell and in sync helpers
# called by async code. Comprehensions and generator expressions count as the
# function they are written in, so `gather(*(db.get(k) for k in ks))` works.
#
# PickleDB's in-memory methods cost about as much as a dict operation, so
# they test the caller's flags inline (a helper call would double their
# cost) and call _async_caller() only for nested or generator code, which
# may be a comprehension.

_getframe = sys._getframe


def _async_caller(depth: int = 2) -> bool:
    """Return True when the frame `depth` levels up is async code."""
    frame: types.FrameType | None = _getframe(depth)
    while frame is not None:
        code = frame.f_code
        if code.co_flags & _CO_ASYNC:
            return True
        if code.co_name not in _COMPREHENSIONS:
            return False
        frame = frame.f_back
    return False


def _ready_gen(value: Any) -> Any:
    return value
    yield  # pragma: no cover - makes this a generator


# An awaitable that is already done: awaiting it gives `value`. Generator-based,
# so that dropping it unawaited is harmless (the work was done at call time)
# and warns about nothing.
_ready = cast("Callable[[Any], Any]", types.coroutine(_ready_gen))


def _aiofiles() -> Any:
    try:
        import aiofiles.os
    except ImportError as err:
        raise ImportError(_AIOFILES_HINT) from err
    return aiofiles


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking `fn(*args)` in aiofiles' worker threads."""
    return await _aiofiles().os.wrap(fn)(*args)


def _dual(blocking: Callable[..., Any]) -> Callable[..., Any]:
    """Make a blocking method callable from sync code and awaitable from async code.

    The async form runs the very same function off the event loop.
    """

    @functools.wraps(blocking)
    def method(self: Any, *args: Any) -> Any:
        if _async_caller():
            _aiofiles()  # a missing aiofiles is reported at the call, not at the await
            return _off_loop(blocking, self, *args)
        return blocking(self, *args)

    return method


def _short(key: str, limit: int = 80) -> str:
    text = repr(key)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _path_of(location: str | os.PathLike[str], argument: str, example: str) -> str:
    """Return the absolute path of `location` (`~` expanded); errors name `argument` and show `example`."""
    try:
        path: object = os.fspath(location)
    except TypeError:
        path = location
    if not isinstance(path, str):
        raise TypeError(
            f"{argument} must be a file path, a str or an os.PathLike of str such as pathlib.Path, "
            f"not {type(path).__name__}; for example {example}"
        )
    if not path:
        raise ValueError(f"{argument} is empty; pass the path of the database file, for example {example}")
    return os.path.abspath(os.path.expanduser(path))


# --- private helpers: reading and atomic, durable writing -------------------


class _PausedGC:
    """Pause the cyclic GC while a large document is parsed (restored on every path).

    Parsing allocates millions of containers, each of which may trigger a full
    collection that finds nothing to free.
    """

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


def _read_json(path: str) -> dict[str, Any]:
    """Return the JSON object stored at `path`; {} when it is missing or empty."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return {}
    if not raw:
        return {}
    try:
        with _PausedGC():
            data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise CorruptFileError(path, f"not valid JSON ({err})") from None
    if type(data) is not dict:
        raise CorruptFileError(path, f"top level is a JSON {_json_kind(data)}, expected an object")
    return data


def _json_kind(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def _fsync_dir(directory: str) -> None:
    if os.name == "nt":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != 22:  # EINVAL: this file system cannot sync directories
            raise
    finally:
        os.close(fd)


def _atomic_write(path: str, payload: bytes) -> None:
    """Replace the file at `path` with `payload`, atomically and durably.

    Writes a uniquely named temp file beside the target, fsyncs it, renames
    it over the target and fsyncs the directory. The file keeps its mode (a
    new one gets 0o666 minus the umask). On any error the temp file is
    removed, the old file is untouched, and an OSError naming `path` is raised.
    A symbolic link at `path` is followed: its target is what gets replaced.
    """
    directory, name = os.path.split(os.path.realpath(path))
    try:
        try:
            mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = None
        while True:
            tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
                break
            except FileExistsError:  # pragma: no cover - 64 random bits collided
                continue
        try:
            try:
                if mode is not None:
                    os.chmod(tmp, mode)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(directory, name))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(directory)
    except OSError as err:
        raise OSError(err.errno, f"cannot save: {err.strerror or err}", path) from err


# --- PickleDB ---------------------------------------------------------------


class PickleDB:
    """An in-memory dict of str keys, loaded from and saved to one JSON file.

    PickleDB(location, *, pretty=False)

    location: the JSON file, a str or an os.PathLike such as pathlib.Path.
        A leading `~` is expanded and the path is made absolute when the
        instance is created, so a later os.chdir() does not move it. The
        file need not exist: a missing file loads as an empty database.
    pretty: False (the default) writes compact JSON; True writes it
        indented by two spaces, ending with a newline, for people who read,
        diff or edit the file.

    The constructor touches no disk: call load() and save(), or use
    `with` / `async with`, which load on entry and save on a clean exit.
    Every method is awaitable when called from async code.
    """

    def __init__(self, location: str | os.PathLike[str], *, pretty: bool = False) -> None:
        self.location = _path_of(location, "location", 'PickleDB("data.json")')
        self._option = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE if pretty else 0
        self._data: dict[str, Any] = {}
        self._save_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # -- file I/O (blocking; off the event loop in async code) --

    @_dual
    def load(self) -> bool:
        """Replace the data in memory with the file's; return True.

        A missing or empty file gives an empty database. A file that is not a
        JSON object raises CorruptFileError (a ValueError) naming it, and
        leaves memory and file unchanged. Awaitable in async code.
        """
        self._data = _read_json(self.location)
        return True

    @_dual
    def save(self) -> bool:
        """Write the whole database to the file atomically and durably; return True.

        A value JSON cannot hold raises TypeError naming its key; an I/O
        failure raises OSError naming the file. Either way the file on disk
        and the data in memory stay as they were. Awaitable in async code.
        """
        with self._save_lock:
            _atomic_write(self.location, self._encode())
        return True

    def _encode(self) -> bytes:
        try:
            return orjson.dumps(self._data, option=self._option)
        except orjson.JSONEncodeError as err:
            whole = err
        for key, value in list(self._data.items()):  # only on failure: find the culprit
            for part, what in ((key, "cannot be stored as JSON text"), (value, "holds a value JSON cannot store")):
                try:
                    orjson.dumps(part)
                except orjson.JSONEncodeError as err:
                    raise TypeError(
                        f"cannot save {self.location}: key {_short(key)} {what} ({err}); the file was not changed"
                    ) from None
        raise TypeError(f"cannot save {self.location}: {whole}; the file was not changed")

    # -- in-memory operations: done at call time in both worlds --

    def set(self, key: Any, value: Any) -> bool:
        """Store value under str(key) in memory; return True. Awaitable in async code."""
        self._data[str(key)] = value
        if (flags := _getframe(1).f_code.co_flags) & _CO_MAYBE_ASYNC and (flags & _CO_ASYNC or _async_caller()):
            return _ready(True)
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value stored under str(key), or default. Awaitable in async code."""
        value = self._data.get(str(key), default)
        if (flags := _getframe(1).f_code.co_flags) & _CO_MAYBE_ASYNC and (flags & _CO_ASYNC or _async_caller()):
            return _ready(value)
        return value

    def remove(self, key: Any) -> bool:
        """Delete str(key); return True if it existed. Awaitable in async code."""
        existed = self._data.pop(str(key), MISSING) is not MISSING
        if (flags := _getframe(1).f_code.co_flags) & _CO_MAYBE_ASYNC and (flags & _CO_ASYNC or _async_caller()):
            return _ready(existed)
        return existed

    def all(self) -> list[str]:
        """Return a list of every key, in insertion order. Awaitable in async code."""
        keys = list(self._data)
        if (flags := _getframe(1).f_code.co_flags) & _CO_MAYBE_ASYNC and (flags & _CO_ASYNC or _async_caller()):
            return _ready(keys)
        return keys

    def purge(self) -> bool:
        """Delete every key in memory; return True. Awaitable in async code."""
        self._data.clear()
        if (flags := _getframe(1).f_code.co_flags) & _CO_MAYBE_ASYNC and (flags & _CO_ASYNC or _async_caller()):
            return _ready(True)
        return True

    def set_many(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> bool:
        """Store every (key, value) pair in memory at once; return True.

        Either all pairs are stored or, if reading `items` fails, none is.
        Awaitable in async code.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        self._data.update({str(key): value for key, value in pairs})
        if (flags := _getframe(1).f_code.co_flags) & _CO_MAYBE_ASYNC and (flags & _CO_ASYNC or _async_caller()):
            return _ready(True)
        return True

    # -- context managers --

    def __enter__(self) -> PickleDB:
        self.load()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.save()

    async def __aenter__(self) -> PickleDB:
        await self.load()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self.save()


# --- PickleDBSQLite ---------------------------------------------------------

# How a statement's result is read, the same in the sync and async paths.
_ROWS, _COUNT, _MANY = "rows", "count", "many"


def _encode_value(key: str, value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as err:
        raise TypeError(f"cannot store key {_short(key)}: its value is not JSON-serializable ({err})") from None


def _sql_key(key: Any) -> str:
    key = str(key)
    try:
        key.encode()
    except UnicodeEncodeError as err:
        raise TypeError(f"cannot store key {_short(key)}: it is not valid Unicode text ({err.reason})") from None
    return key


def _set_wal(conn: Any, timeout: float) -> None:
    """Put the database in WAL mode (once per file), retrying while another connection does."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            # Two connections switching a new file to WAL at once: SQLite answers
            # "locked" at once instead of waiting, so wait here.
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


async def _close_each(conns: list[Any]) -> None:
    for conn in conns:
        await conn.close()


def _run_in_new_thread(coro: Any) -> None:
    """Run `coro` to completion on a new event loop in a new thread, and wait.

    Lets sync code close aiosqlite connections whatever loop opened them,
    without touching the event loop state of the calling thread.
    """
    import asyncio

    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(coro)
        except BaseException as err:  # handed to the calling thread
            failure.append(err)

    thread = threading.Thread(target=main, name="pickledb-close", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _aiosqlite() -> Any:
    try:
        import aiosqlite
    except ImportError as err:
        raise ImportError(_SQLITE_HINT) from err
    return aiosqlite


class PickleDBSQLite:
    """A key-value store with one SQLite row per key, safe across threads and processes.

    PickleDBSQLite(sqlite_path="pickledb.sqlite3", table_name="kv", *, durable=True, timeout=30.0)

    sqlite_path: the SQLite file, a str or an os.PathLike such as
        pathlib.Path. A leading `~` is expanded and the path is made
        absolute when the instance is created. The file is created on
        first use if it does not exist.
    table_name: the table that holds this store; several tables in one
        file are independent stores. Letters, digits and underscores,
        starting with a letter or underscore, not starting with "sqlite_";
        anything else raises ValueError (a non-str raises TypeError)
        before any SQL runs. A new table is created WITHOUT ROWID.
    durable: True (the default) commits every write with
        synchronous=FULL, so a write that returned survives a power loss;
        False uses synchronous=NORMAL: faster, never corrupt, but the last
        writes before a power loss (not a crash) may be lost.
    timeout: seconds a write waits for another connection's lock before
        it raises sqlite3.OperationalError ("database is locked").

    Values are stored as orjson-encoded BLOBs and every write is committed
    before the call returns. Connections open lazily: one for sync calls,
    shared by threads under a lock, and one aiosqlite connection per event
    loop for async calls. Call close(), or use `with` / `async with`. Every
    method is awaitable when called from async code.
    """

    def __init__(
        self,
        sqlite_path: str | os.PathLike[str] = "pickledb.sqlite3",
        table_name: str = "kv",
        *,
        durable: bool = True,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(table_name, str):
            raise TypeError(
                f"Invalid table name {table_name!r}: table_name must be a str, not {type(table_name).__name__}"
            )
        if not (table_name.isascii() and table_name.isidentifier()) or table_name.lower().startswith("sqlite_"):
            raise ValueError(
                f"Invalid table name {table_name!r}: table_name must be letters, digits and underscores, "
                "starting with a letter or underscore (and not 'sqlite_')"
            )
        self.path = _path_of(sqlite_path, "sqlite_path", 'PickleDBSQLite("pickledb.sqlite3")')
        self.table_name = table_name
        self._timeout = timeout
        self._sql_synchronous = f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}"
        # The key is the clustered primary key: faster reads and writes, a smaller file. A table
        # created earlier (with a rowid, by this version or by 1.x) is used as it is.
        self._sql_create = (
            f'CREATE TABLE IF NOT EXISTS "{table_name}" (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID'
        )
        table = f'"{table_name}"'
        self._sql_set = (
            f"INSERT INTO {table} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self._sql_get = f"SELECT value FROM {table} WHERE key = ?"
        self._sql_remove = f"DELETE FROM {table} WHERE key = ?"
        self._sql_all = f"SELECT key FROM {table} ORDER BY key"
        self._sql_purge = f"DELETE FROM {table}"
        self._lock = threading.Lock()
        self._conn: Any = None  # sqlite3.Connection for sync calls
        self._aconns: dict[Any, Any] = {}  # event loop -> (aiosqlite connection, lock), or its connecting task
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, {self.table_name!r})"

    # -- the operations: each states its SQL once; _run does it sync or async --

    def set(self, key: Any, value: Any) -> str:
        """Store value under key (a new uuid4 key when None); return the key.

        Awaitable in async code.
        """
        key = str(uuid.uuid4()) if key is None else _sql_key(key)
        return self._run(_COUNT, self._sql_set, (key, _encode_value(key, value)), lambda _: key)

    def get(self, key: Any, default: Any = MISSING) -> Any:
        """Return the value under key; without a default a missing key raises KeyError.

        Awaitable in async code.
        """
        key = _sql_key(key)
        return self._run(_ROWS, self._sql_get, (key,), lambda rows: self._found(key, rows, default))

    def remove(self, key: Any) -> bool:
        """Delete key; return True if a row was deleted. Awaitable in async code."""
        return self._run(_COUNT, self._sql_remove, (_sql_key(key),), lambda count: count > 0)

    def all(self) -> list[str]:
        """Return every key, sorted. Awaitable in async code."""
        return self._run(_ROWS, self._sql_all, (), lambda rows: [row[0] for row in rows])

    def purge(self) -> bool:
        """Delete every row of this table; return True. Awaitable in async code."""
        return self._run(_COUNT, self._sql_purge, (), lambda _: True)

    def set_many(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> list[str]:
        """Store every (key, value) pair in one transaction; return the keys.

        All values are encoded before anything is written, and the pairs are
        stored all or nothing. A None key gets a new uuid4 key. Awaitable in
        async code.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = []
        for key, value in pairs:
            key = str(uuid.uuid4()) if key is None else _sql_key(key)
            rows.append((key, _encode_value(key, value)))
        return self._run(_MANY, self._sql_set, rows, lambda _: [row[0] for row in rows])

    def _found(self, key: str, rows: list[Any], default: Any) -> Any:
        if rows:
            try:
                return orjson.loads(rows[0][0])
            except orjson.JSONDecodeError as err:
                raise ValueError(f"{self.path}: the value of key {_short(key)} is not valid JSON ({err})") from None
        if default is MISSING:
            raise KeyError(key)
        return default

    def _run(self, kind: str, sql: str, params: Any, finish: Callable[[Any], Any]) -> Any:
        if self._closed:
            raise self._closed_error()
        if _async_caller(3):
            return self._run_async(_aiosqlite(), kind, sql, params, finish)
        with self._lock:
            conn = self._open_locked()
            if kind is _MANY:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, params)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                result = None
            else:
                cursor = conn.execute(sql, params)
                result = cursor.fetchall() if kind is _ROWS else cursor.rowcount
        return finish(result)

    async def _run_async(self, aiosqlite: Any, kind: str, sql: str, params: Any, finish: Callable[[Any], Any]) -> Any:
        conn, lock = await self._aconnection(aiosqlite)
        async with lock:  # keeps other tasks' statements out of a set_many transaction
            if kind is _MANY:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    await conn.executemany(sql, params)
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
                result = None
            elif kind is _ROWS:
                result = await conn.execute_fetchall(sql, params)
            else:
                result = (await conn.execute(sql, params)).rowcount
        return finish(result)

    def _closed_error(self) -> ValueError:
        return ValueError(f"{self!r} is closed; create a new instance to use the database again")

    # -- connections --

    def _connect(self) -> Any:
        """Open the sync connection and prepare the file: WAL mode and the table."""
        import sqlite3

        try:
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as err:
            raise sqlite3.OperationalError(f"cannot open {self.path}: {err}") from None
        try:
            conn.execute(self._sql_synchronous)
            _set_wal(conn, self._timeout)
            conn.execute(self._sql_create)
        except sqlite3.DatabaseError as err:
            conn.close()
            if isinstance(err, sqlite3.OperationalError):
                raise sqlite3.OperationalError(f"{self.path}: {err}") from None
            raise ValueError(f"{self.path} is not a usable SQLite database ({err})") from None
        self._conn = conn
        return conn

    def _open_locked(self) -> Any:
        """Return the sync connection, opening it if needed; the caller holds the lock."""
        if self._closed:
            raise self._closed_error()
        return self._conn or self._connect()

    def _sync_connection(self) -> Any:
        with self._lock:
            return self._open_locked()

    async def _aconnection(self, aiosqlite: Any) -> tuple[Any, Any]:
        """Return this loop's (connection, lock); the first call on a loop opens it."""
        import asyncio

        loop = asyncio.get_running_loop()
        entry = self._aconns.get(loop)
        if entry is None:  # one task connects; the others on this loop wait for it
            entry = self._aconns[loop] = loop.create_task(self._aconnect(aiosqlite, loop))
        if isinstance(entry, asyncio.Task):
            return await asyncio.shield(entry)
        return entry

    async def _aconnect(self, aiosqlite: Any, loop: Any) -> tuple[Any, Any]:
        import asyncio

        try:
            stale = [self._aconns.pop(old, None) for old in list(self._aconns) if old.is_closed()]
            await _close_each([entry[0] for entry in stale if isinstance(entry, tuple)])
            # The sync connection prepares the file, so that this one only has to open it.
            await _off_loop(self._sync_connection)
            conn = aiosqlite.connect(self.path, timeout=self._timeout, isolation_level=None)
            thread = getattr(conn, "_thread", None)
            if thread is not None:
                thread.daemon = True  # an unclosed connection must not hang interpreter exit
            try:
                await conn
            except BaseException:
                if thread is not None and thread.is_alive():
                    await _off_loop(thread.join, 5.0)  # let it finish stopping while the loop runs
                raise
            await conn.execute(self._sql_synchronous)
        except BaseException:
            self._aconns.pop(loop, None)  # drop this task, so the next call on this loop tries again
            raise
        if self._closed:
            await conn.close()
            raise self._closed_error()
        self._aconns[loop] = entry = (conn, asyncio.Lock())
        return entry

    def close(self) -> Any:
        """Close every connection this instance opened; calling it again does nothing.

        Awaitable in async code.
        """
        if _async_caller():
            return _close_each(self._detach())
        conns = self._detach()
        if conns:
            _run_in_new_thread(_close_each(conns))
        return None

    def _detach(self) -> list[Any]:
        """Mark the store closed, close the sync connection, hand over the async ones."""
        self._closed = True
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        entries = [self._aconns.pop(loop, None) for loop in list(self._aconns)]
        return [entry[0] for entry in entries if isinstance(entry, tuple)]

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or (self._conn is None and not self._aconns):
            return
        warnings.warn(f"unclosed {self!r}; call close() or use 'with'", ResourceWarning, stacklevel=2)
        self._closed = True
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> PickleDBSQLite:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    async def __aenter__(self) -> PickleDBSQLite:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.close()
