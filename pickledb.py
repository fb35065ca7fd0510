"""A JSON-backed key-value store with one sync/async API and atomic, durable saves."""

# Copyright (c) 2026, the pickledb authors.
# SPDX-License-Identifier: BSD-3-Clause
# This file is the whole library: copy it into a project together with the
# LICENSE text and `pip install orjson aiofiles` (plus aiosqlite for async use
# of PickleDBSQLite; redis for PickleDBRedis).

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
from typing import Any, TypeVar, cast

import orjson

__all__ = ("PickleDB", "PickleDBSQLite", "PickleDBRedis", "CorruptFileError", "MISSING")
__version__ = "2.0.0"


# --- constants and sentinels ------------------------------------------------


class _Missing:
    """The type of MISSING: "no default was given"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

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

_SQLITE_HINT = 'async use of PickleDBSQLite needs aiosqlite: pip install "pickledb[sqlite]"'
_REDIS_HINT = 'PickleDBRedis needs redis-py: pip install "pickledb[redis]" (or, for a copied file, pip install redis)'


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
_ready: Callable[[Any], Any] = types.coroutine(_ready_gen)


def _aiofiles() -> Any:
    import aiofiles.os

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
            return _off_loop(blocking, self, *args)
        return blocking(self, *args)

    return method


def _short(key: str, limit: int = 80) -> str:
    text = repr(key)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _path_of(location: str | os.PathLike[str]) -> str:
    path = os.fspath(location)
    if not isinstance(path, str):
        raise TypeError(f"location must be a str or os.PathLike of str, not {type(path).__name__}")
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

    The constructor touches no disk: call load() and save(), or use
    `with` / `async with`, which load on entry and save on a clean exit.
    Every method is awaitable when called from async code. Pass pretty=True
    to write indented JSON for people who read or diff the file.
    """

    def __init__(self, location: str | os.PathLike[str], *, pretty: bool = False) -> None:
        self.location = _path_of(location)
        self._option = orjson.OPT_INDENT_2 if pretty else 0
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

    Values are stored as orjson-encoded BLOBs and every write is committed
    before the call returns (durable by default; durable=False trades the
    last moments before a power loss for speed). Connections open lazily:
    one for sync calls, shared by threads under a lock, and one aiosqlite
    connection per event loop for async calls. Call close(), or use `with` /
    `async with`. Every method is awaitable when called from async code.
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
            raise TypeError(f"table_name must be a str, not {type(table_name).__name__}")
        if not (table_name.isascii() and table_name.isidentifier()) or table_name.lower().startswith("sqlite_"):
            raise ValueError(
                f"invalid table_name {table_name!r}: use letters, digits and underscores, "
                "starting with a letter or underscore (and not 'sqlite_')"
            )
        self.path = _path_of(sqlite_path)
        self.table_name = table_name
        self._timeout = timeout
        self._sql_synchronous = f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}"
        self._sql_create = f'CREATE TABLE IF NOT EXISTS "{table_name}" (key TEXT PRIMARY KEY, value BLOB NOT NULL)'
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


# --- PickleDBRedis ----------------------------------------------------------

# Pairs per HSET inside a set_many transaction: bounds the size of each command.
_REDIS_CHUNK = 1000

_T = TypeVar("_T")  # what a PickleDBRedis operation returns in plain code

# Deletes the store's hash, refusing (like every hash command) a key of another type.
_REDIS_PURGE = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
return redis.call('UNLINK', KEYS[1])
"""


def _redis() -> Any:
    try:
        import redis
        import redis.asyncio
        import redis.cluster
    except ImportError as err:
        raise ImportError(_REDIS_HINT) from err
    return redis


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _run_idle_loop_in_new_thread(loop: Any, coro: Any) -> None:
    """Run `coro` on `loop` (open, not running) in a new thread, and wait."""
    failure: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(coro)
        except BaseException as err:  # handed to the calling thread
            failure.append(err)

    thread = threading.Thread(target=main, name="pickledb-close", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _masked_url(url: str) -> str:
    """Return `url` with any password replaced by ***."""
    import urllib.parse

    if "://" not in url:  # not a URL redis-py accepts; whatever precedes an @ may be a password
        return f"***@{url.rsplit('@', 1)[1]}" if "@" in url else url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{name}=***" if name.lower() == "password" else urllib.parse.urlencode({name: value})
            for name, value in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redis_connections(client: Any) -> list[Any]:
    """Every connection an asyncio client (standalone or cluster) holds."""
    if hasattr(client, "get_nodes"):
        return [conn for node in client.get_nodes() for conn in getattr(node, "_connections", ())]
    pool = client.connection_pool
    return [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]


def _drop_transports(client: Any) -> None:
    """Close the sockets of an asyncio client whose event loop is already closed.

    Such a loop can no longer run the client's own aclose(); the sockets are
    closed directly, so that nothing leaks and nothing warns later.
    """
    for conn in _redis_connections(client):
        writer = getattr(conn, "_writer", None)
        if writer is None:
            continue
        transport = writer.transport
        try:
            transport.close()  # marks it closing, then fails to schedule the rest on the closed loop
        except RuntimeError:
            pass
        lost = getattr(transport, "_call_connection_lost", None)  # asyncio's own final step: closes the socket
        if lost is not None and getattr(transport, "_sock", None) is not None:
            try:
                lost(None)
            except Exception:  # pragma: no cover - the socket is closed before this can raise
                pass
        conn._reader = conn._writer = None


async def _close_at_loop_end(client: Any) -> Any:
    """Close `client` when this async generator is closed.

    Started once on the loop that owns the client: asyncio.run() and
    loop.shutdown_asyncgens() close it while that loop still runs.
    """
    try:
        yield
    finally:
        await client.aclose()


class PickleDBRedis:
    """A key-value store in one Redis hash, shared by every process and host that can reach the server.

    The same API as PickleDBSQLite: one hash field per key, the value
    orjson-encoded. `url` is what redis-py accepts (redis://, rediss://,
    unix://, with user and password where needed); `hash_name` names the hash
    (different names are independent stores); cluster=True talks to a Redis
    Cluster. Durability is the server's: see its persistence settings.
    Clients open lazily: one for sync calls, shared by threads, and one
    asyncio client per event loop. Call close(), or use `with` / `async with`.
    Every method is awaitable when called from async code.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        hash_name: str = "kv",
        *,
        cluster: bool = False,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if not isinstance(hash_name, str):
            raise TypeError(f"hash_name must be a str, not {type(hash_name).__name__}")
        if not hash_name or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in hash_name) or not _encodable(hash_name):
            raise ValueError(
                f"invalid hash_name {_short(hash_name)}: use non-empty Unicode text without control characters"
            )
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.url = _masked_url(url)
        self.hash_name = hash_name
        self.cluster = bool(cluster)
        redis = _redis()
        try:
            redis.connection.parse_url(url)
        except ValueError as err:
            raise ValueError(f"invalid Redis URL {self.url!r}: {err}") from None
        self._url = url
        self._timeout = float(timeout)
        self._lock = threading.Lock()
        self._client: Any = None  # redis.Redis or redis.cluster.RedisCluster for sync calls
        self._aclients: dict[Any, tuple[Any, Any]] = {}  # event loop -> (asyncio client, its closer)
        self._closing: set[Any] = set()  # close tasks scheduled on a loop that was busy
        self._starting: dict[Any, Any] = {}  # event loop -> task that initializes its cluster client
        self._closed = False

    def __repr__(self) -> str:
        extra = ", cluster=True" if self.cluster else ""
        return f"{type(self).__name__}({self.url!r}, {self.hash_name!r}{extra})"

    # -- the operations: each states its command once; _run does it sync or async --

    def set(self, key: Any, value: Any) -> str:
        """Store value under key (a new uuid4 key when None); return the key.

        Awaitable in async code.
        """
        name = str(uuid.uuid4()) if key is None else _sql_key(key)
        return self._run(("HSET", self.hash_name, name, _encode_value(name, value)), lambda _: name)

    def get(self, key: Any, default: Any = MISSING) -> Any:
        """Return the value under key; without a default a missing key raises KeyError.

        Awaitable in async code.
        """
        key = _sql_key(key)
        return self._run(("HGET", self.hash_name, key), lambda raw: self._found(key, raw, default))

    def remove(self, key: Any) -> bool:
        """Delete key; return True if it existed. Awaitable in async code."""
        return self._run(("HDEL", self.hash_name, _sql_key(key)), lambda count: bool(count))

    def all(self) -> list[str]:
        """Return every key, sorted. Awaitable in async code."""
        return self._run(("HKEYS", self.hash_name), self._keys)

    def purge(self) -> bool:
        """Delete every key of this store (its whole hash); return True. Awaitable in async code."""
        return self._run(("EVAL", _REDIS_PURGE, 1, self.hash_name), lambda _: True)

    def set_many(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> list[str]:
        """Store every (key, value) pair at once, all or nothing; return the keys.

        All values are encoded before anything is sent. A large batch goes as
        several HSET commands of at most 1,000 pairs in one MULTI/EXEC
        transaction, which the server applies whole or not at all. A None key
        gets a new uuid4 key. Awaitable in async code.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        keys: list[str] = []
        fields: list[Any] = []
        for key, value in pairs:
            key = str(uuid.uuid4()) if key is None else _sql_key(key)
            keys.append(key)
            fields += (key, _encode_value(key, value))
        step = 2 * _REDIS_CHUNK
        commands = [("HSET", self.hash_name, *fields[i : i + step]) for i in range(0, len(fields), step)]
        return self._run(commands, lambda _: keys)

    def _found(self, key: str, raw: bytes | None, default: Any) -> Any:
        if raw is not None:
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError as err:
                raise ValueError(f"{self!r}: the value of key {_short(key)} is not valid JSON ({err})") from None
        if default is MISSING:
            raise KeyError(key)
        return default

    def _keys(self, fields: list[bytes]) -> list[str]:
        try:
            return sorted(field.decode() for field in fields)
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{self!r}: hash {self.hash_name!r} holds a field that is not UTF-8 text ({err})"
            ) from None

    def _run(self, command: Any, finish: Callable[[Any], _T]) -> _T:
        """Send one command, or a list of them as one transaction; hand the reply to `finish`.

        In async code it returns a coroutine of finish's result instead (typed as the result).
        """
        if self._closed:
            raise self._closed_error()
        if _async_caller(3):
            return cast(_T, self._run_async(command, finish))
        if type(command) is list and not command:
            return finish(None)
        try:
            client = self._client or self._connect()
            if type(command) is list and len(command) > 1:
                with client.pipeline(transaction=True) as pipe:
                    for part in command:
                        pipe.execute_command(*part)
                    result = pipe.execute()
            else:
                result = client.execute_command(*(command[0] if type(command) is list else command))
        except Exception as err:
            problem = self._problem(err)
            if problem is None:
                raise
            raise problem from err
        except BaseException:  # Ctrl-C or an exception from a signal handler, at any point of the call
            self._drop_idle_connections()
            raise
        return finish(result)

    async def _run_async(self, command: Any, finish: Callable[[Any], Any]) -> Any:
        if type(command) is list and not command:
            return finish(None)
        try:
            client = await self._aclient()
            if type(command) is list and len(command) > 1:
                async with client.pipeline(transaction=True) as pipe:
                    for part in command:
                        pipe.execute_command(*part)
                    result = await pipe.execute()
            else:
                result = await client.execute_command(*(command[0] if type(command) is list else command))
        except Exception as err:
            problem = self._problem(err)
            if problem is None:
                raise
            raise problem from err
        return finish(result)

    def _problem(self, err: Exception) -> Exception | None:
        """The error to raise for redis-py's `err`, or None to let it through."""
        exceptions = _redis().exceptions
        where = f"the Redis {'Cluster' if self.cluster else 'server'} at {self.url}"
        if isinstance(err, exceptions.AuthenticationError):
            return PermissionError(
                f"{where} refused to authenticate ({err}); check the user name and password in the URL"
            )
        if isinstance(err, exceptions.ResponseError) and str(err).startswith("WRONGTYPE"):
            return ValueError(
                f"{self.hash_name!r} at {self.url} holds a Redis key that is not a hash; "
                "pass another hash_name or delete that key"
            )
        if isinstance(err, (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ClusterDownError)) or (
            type(err) is exceptions.RedisClusterException
        ):
            return ConnectionError(f"cannot reach {where} ({err}); check that it runs and that the URL is right")
        return None

    def _closed_error(self) -> ValueError:
        return ValueError(f"{self!r} is closed; create a new instance to use the store again")

    def _drop_idle_connections(self) -> None:
        """Disconnect the sync client's idle connections.

        A call interrupted between sending its command and reading the reply
        gives its connection back with that reply (or half a transaction)
        still pending, where the next call would read it as its own.
        """
        client = self._client
        if client is None:
            return
        if self.cluster:
            pools = [node.redis_connection.connection_pool for node in client.get_nodes() if node.redis_connection]
        else:
            pools = [client.connection_pool]
        for pool in pools:
            pool.disconnect(inuse_connections=False)

    # -- clients --

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}
        return options

    def _connect(self) -> Any:
        """Create the sync client (the cluster one asks the nodes for the slot map here)."""
        redis = _redis()
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._client is None:
                if self.cluster:
                    self._client = redis.cluster.RedisCluster.from_url(self._url, **self._options())
                else:
                    retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
                    self._client = redis.Redis.from_url(self._url, retry=retry, **self._options())
            return self._client

    async def _aclient(self) -> Any:
        """Return this loop's asyncio client; the first call on a loop creates it."""
        import asyncio

        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is not None:
            if self._starting:
                await self._started(loop)
            return entry[0]
        if self._closed:
            raise self._closed_error()
        for old in list(self._aclients):  # loops that ended without their client being closed
            if old.is_closed() and (stale := self._aclients.pop(old, None)) is not None:
                self._starting.pop(old, None)
                _drop_transports(stale[0])
        redis = _redis()
        if self.cluster:
            client = redis.asyncio.cluster.RedisCluster.from_url(self._url, **self._options())
        else:
            retry = redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0)
            client = redis.asyncio.Redis.from_url(self._url, retry=retry, **self._options())
        closer = _close_at_loop_end(client)
        self._aclients[loop] = (client, closer)
        await closer.asend(None)  # registered with the loop: closed when the loop shuts down
        if self.cluster:
            # redis-py's asyncio cluster client can hand a half-made connection to one of several
            # commands sent at once before it knows the cluster: let it learn the slots first.
            self._starting[loop] = loop.create_task(client.initialize())
            await self._started(loop)
        return client

    async def _started(self, loop: Any) -> None:
        """Wait until the cluster client of `loop` knows the cluster (at once when it does)."""
        import asyncio

        task = self._starting.get(loop)
        if task is None:
            return
        try:
            await asyncio.shield(task)  # a cancelled caller must not cancel it for the others
        finally:
            if task.done():
                self._starting.pop(loop, None)  # after a failure, redis-py tries again on the next command

    def close(self) -> Any:
        """Close every client this instance opened; calling it again does nothing.

        Awaitable in async code.
        """
        if _async_caller():
            return self._aclose(self._detach())
        for loop, (client, closer) in self._detach().items():
            self._close_elsewhere(loop, client, closer)
        return None

    async def _aclose(self, entries: dict[Any, tuple[Any, Any]]) -> None:
        import asyncio

        here = asyncio.get_running_loop()
        for loop, (client, closer) in entries.items():
            if loop is here:
                await closer.aclose()
            else:
                await _off_loop(self._close_elsewhere, loop, client, closer)

    def _close_elsewhere(self, loop: Any, client: Any, closer: Any) -> None:
        """Close an asyncio client from outside its loop, whatever state that loop is in."""
        import asyncio

        if loop.is_closed():
            _drop_transports(client)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and loop is running:  # a sync call inside that loop's own code: close soon, on the loop
            task = loop.create_task(closer.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():  # another thread's loop
            future = asyncio.run_coroutine_threadsafe(closer.aclose(), loop)
            deadline = time.monotonic() + self._timeout
            while not future.done() and not loop.is_closed() and time.monotonic() < deadline:
                try:
                    future.result(0.05)
                except TimeoutError:
                    continue
            if not future.done():
                future.cancel()
                if loop.is_closed():
                    _drop_transports(client)
        else:  # an idle loop that is still open: run it for this one task
            _run_idle_loop_in_new_thread(loop, closer.aclose())

    def _detach(self) -> dict[Any, tuple[Any, Any]]:
        """Mark the store closed, close the sync client, hand over the asyncio ones."""
        self._closed = True
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        entries = dict(self._aclients)
        self._aclients.clear()
        self._starting.clear()
        return entries

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or (self._client is None and not self._aclients):
            return
        warnings.warn(f"unclosed {self!r}; call close() or use 'with'", ResourceWarning, stacklevel=2)
        self._closed = True
        if self._client is not None:
            self._client.close()
        for loop, (client, _) in list(self._aclients.items()):
            if loop.is_closed():
                _drop_transports(client)

    def __enter__(self) -> PickleDBRedis:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    async def __aenter__(self) -> PickleDBRedis:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.close()
