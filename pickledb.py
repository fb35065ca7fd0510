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
from typing import Any

import orjson

__all__ = ("PickleDB", "PickleDBSQLite", "CorruptFileError", "MISSING")
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
    text = str(key)
    try:
        text.encode()
    except UnicodeEncodeError as err:
        raise TypeError(f"cannot store key {_short(text)}: it is not valid Unicode text ({err.reason})") from None
    return text


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


class _Write:
    """One write call waiting for its group: (kind, sql, params) and, once done, its outcome."""

    __slots__ = ("kind", "sql", "params", "waiter", "done", "result", "error")

    def __init__(self, kind: str, sql: str, params: Any, waiter: Any = None) -> None:
        self.kind = kind
        self.sql = sql
        self.params = params
        # An async call's future; a sync call's lock, held until the call has to look again.
        self.waiter = waiter
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def wake(self) -> None:
        """Let a sync caller waiting on its lock look again (the caller holds the group mutex)."""
        if self.waiter.locked():
            self.waiter.release()


def _commit_group(conn: Any, group: list[_Write], results: list[Any], reached: list[bool]) -> list[Any]:
    """Run the writes of `group` as one transaction on `conn`; append each one's result to `results`.

    One fsync serves the whole group. On any exception the connection is left
    out of any transaction (rolled back unless SQLite already did) and the
    exception propagates; `reached[0]` then tells whether COMMIT had been sent
    and the transaction ended, i.e. whether the group was stored.
    """
    try:
        if len(group) == 1 and group[0].kind is _COUNT:  # alone: one autocommit statement
            reached[0] = True
            results.append(conn.execute(group[0].sql, group[0].params).rowcount)
            return results
        conn.execute("BEGIN IMMEDIATE")
        for write in group:
            if write.kind is _MANY:
                conn.executemany(write.sql, write.params)
                results.append(None)
            else:
                results.append(conn.execute(write.sql, write.params).rowcount)
        reached[0] = True
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            reached[0] = False
            try:
                conn.execute("ROLLBACK")
            except Exception:  # the connection is unusable; the first error is the one to report
                pass
        raise
    return results


def _settle(future: Any, result: Any, error: BaseException | None) -> None:
    """Complete an asyncio future on its loop, unless its caller gave up on it."""
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _call_in_loop(loop: Any, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # that loop is closed: nobody is waiting any more
        pass


# Objects inherited through fork() that must never be finalized in the child.
_ABANDONED: list[Any] = []


def _abandon(obj: Any) -> None:
    """Keep an inherited SQLite connection alive forever in a forked child.

    Closing it there would checkpoint (and may delete) the WAL file that the
    parent is still using, so the child never closes it, not even at exit.
    """
    import ctypes

    _ABANDONED.append(obj)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _hold_shared_lock(path: str) -> None:
    """Hold a read lock on a byte of SQLite's SHARED range of `path` until this process exits.

    In a forked child, SQLite's per-process lock bookkeeping still counts the
    abandoned connections, so new connections there take no lock of their own
    from the OS; another process closing its last connection would then see
    nobody else and checkpoint and delete the WAL file under them. This lock
    (a read lock, as every SQLite reader takes) makes such a close see this
    process. It is never released early: closing the descriptor would drop
    every lock this process holds on the file, SQLite's included.
    """
    if os.name != "posix":  # pragma: no cover - fork() is POSIX
        return
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0x40000000 + 2, os.SEEK_SET)  # PENDING_BYTE + 2: SHARED_FIRST
    _ABANDONED.append(fd)


class _Worker:
    """A thread owning one SQLite connection for one event loop; it runs jobs in order.

    A job is `job(connection, arg)`; when it ends, the thread has the loop call
    `deliver(token, result, error)`. A queued job runs whole, even if its
    caller is cancelled meanwhile. `pending` and `busy` belong to the loop:
    the writes waiting for the next group, and whether a group is running.
    """

    def __init__(self, loop: Any, connect: Callable[[], Any]) -> None:
        import queue

        self.loop = loop
        self.conn: Any = None
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.stopped: BaseException | None = None  # raised to anyone who submits after stop()
        self.exited = False
        self.on_exit: list[Callable[[], None]] = []
        self.pending: list[_Write] = []
        self.busy = False
        self._connect: Callable[[], Any] | None = connect
        self.thread = threading.Thread(target=self._main, name="pickledb-sqlite", daemon=True)
        self.thread.start()

    def submit(self, job: Callable[[Any, Any], Any], arg: Any, deliver: Callable[..., None], token: Any) -> None:
        with self.lock:
            if self.stopped is not None:
                raise self.stopped
            self.jobs.put((job, arg, deliver, token))

    def write(self, write: _Write) -> None:
        """Queue `write` for the next group; send a group at once if none is running (on the loop)."""
        self.pending.append(write)
        if not self.busy:
            self.flush()

    def flush(self) -> None:
        """Send every queued write to the thread as one group (on the loop)."""
        group, self.pending = self.pending, []
        self.busy = True
        try:
            self.submit(_commit_sent_group, group, self.group_done, group)
        except BaseException as err:
            self.group_done(group, None, err)

    def group_done(self, group: list[_Write], results: Any, error: BaseException | None) -> None:
        self.busy = False
        for index, write in enumerate(group):
            _settle(write.waiter, None if error else results[index], error)
        if self.pending:
            self.flush()

    def stop(self, error: BaseException) -> None:
        """Refuse new jobs with `error`; the thread closes the connection after the queued ones."""
        with self.lock:
            if self.stopped is None:
                self.stopped = error
                self.jobs.put(None)

    def when_exited(self, callback: Callable[[], None]) -> None:
        """Call `callback` (in the thread) once the connection is closed; at once if it is."""
        with self.lock:
            if not self.exited:
                self.on_exit.append(callback)
                return
        callback()

    def _main(self) -> None:
        connect, self._connect = self._connect, None
        try:
            assert connect is not None
            self.conn = connect()
        except BaseException as err:  # every queued and later call gets this error
            self.stop(err)
        del connect
        while True:
            item = self.jobs.get()
            if item is None:
                break
            job, arg, deliver, token = item
            result, error = None, self.stopped
            if self.conn is not None:
                try:
                    result, error = job(self.conn, arg), None
                except BaseException as err:
                    error = err
            try:
                self.loop.call_soon_threadsafe(deliver, token, result, error)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass
            del item, job, arg, deliver, token, result, error
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        with self.lock:
            self.exited = True
            callbacks, self.on_exit = self.on_exit, []
        for callback in callbacks:
            callback()


def _fetch_rows(conn: Any, statement: tuple[str, Any]) -> Any:
    return conn.execute(*statement).fetchall()


def _commit_sent_group(conn: Any, group: list[_Write]) -> list[Any]:
    return _commit_group(conn, group, [], [False])


# Every PickleDBSQLite alive, so that a forked child can reset them.
_SQLITE_INSTANCES: Any = None


def _reset_in_child() -> None:
    for db in list(_SQLITE_INSTANCES or ()):
        db._after_fork()


class PickleDBSQLite:
    """A key-value store with one SQLite row per key, safe across threads and processes.

    Values are stored as orjson-encoded BLOBs and every write is committed
    before the call returns (durable by default; durable=False trades the
    last moments before a power loss for speed). Writes that arrive while a
    commit is running are committed together in the next transaction (group
    commit), so one fsync serves them all. Connections open lazily: one for
    sync calls, shared by threads, and one per event loop for async calls,
    owned by its own thread. Call close(), or use `with` / `async with`.
    Every method is awaitable when called from async code.
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
        name = os.fspath(sqlite_path)
        if isinstance(name, str) and name in (":memory:", ""):
            raise ValueError(
                f"PickleDBSQLite needs a file, not {name!r}: for a private in-memory store "
                "use PickleDB (and never save it), or give a path in a temporary directory"
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
        self._closed = False
        self._conn: Any = None  # sqlite3.Connection for sync calls
        self._aconns: dict[Any, _Worker] = {}  # event loop -> the thread owning its connection
        self._stopping: list[_Worker] = []  # stopped by close(), perhaps still closing
        self._forked = False  # this is a forked child that inherited open connections
        self._fresh_locks()
        global _SQLITE_INSTANCES
        if _SQLITE_INSTANCES is None:
            import weakref

            _SQLITE_INSTANCES = weakref.WeakSet()
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_reset_in_child)
        _SQLITE_INSTANCES.add(self)

    def _fresh_locks(self) -> None:
        self._lock = threading.Lock()  # guards the sync connection
        self._mutex = threading.Lock()  # guards the two below
        self._pending: list[_Write] = []  # sync writes waiting for the next group
        self._committing = 0  # the id of the thread committing a group on the sync connection

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
            return self._run_async(kind, sql, params, finish)
        if kind is _ROWS:
            with self._lock:
                rows = self._open_locked().execute(sql, params).fetchall()
            return finish(rows)
        return finish(self._write(_Write(kind, sql, params)))

    def _write(self, write: _Write) -> Any:
        """Commit `write` with whatever other threads' writes queue up meanwhile; return its result.

        The first thread to find no commit running commits every queued write
        in one transaction; the others wait until it is done, and the first
        of those still queued then commits the next group. Every lock here
        is taken by C code in one step (no Condition), so that an exception
        from a signal handler cannot leave one held.
        """
        import sqlite3

        mutex, me = self._mutex, threading.get_ident()
        write.waiter = threading.Lock()
        write.waiter.acquire()
        batch: list[_Write] = []
        results: list[Any] = []
        reached = [False]
        try:
            with mutex:
                self._pending.append(write)
                # A commit marked as this thread's own was abandoned by an interruption: take over.
                if self._committing in (0, me):
                    self._committing = me
                    batch, self._pending = self._pending, []
            while not batch and not write.done:  # wait for the outcome, or for this thread's turn
                write.waiter.acquire()
                with mutex:
                    if not write.done and self._committing == 0:
                        self._committing = me
                        batch, self._pending = self._pending, []
            if batch:
                with self._lock:
                    _commit_group(self._open_locked(), batch, results, reached)
                self._finish_group(batch, results, None)
        except (sqlite3.Error, ValueError) as err:  # a failed commit fails the whole group
            if not batch:
                raise
            self._finish_group(batch, None, err)
        except BaseException:  # interrupted (a signal handler, KeyboardInterrupt)
            if not batch:  # while waiting: withdraw the write, unless a commit took it already
                with mutex:
                    if write in self._pending:
                        self._pending.remove(write)
                        if self._committing == 0 and self._pending:
                            self._pending[0].wake()  # it may have been this one's turn: pass it on
            elif reached[0]:  # the group was committed: its writes stand
                self._finish_group(batch, results, None)
            else:  # nothing was stored: the other writes go to the next group
                self._finish_group([write], None, None, requeue=[w for w in batch if w is not write])
            raise
        if write.error is not None:
            raise write.error
        return write.result

    def _finish_group(
        self,
        batch: list[_Write],
        results: list[Any] | None,
        error: BaseException | None,
        requeue: Iterable[_Write] = (),
    ) -> None:
        """Hand each write of `batch` its outcome (skipping those that have one), and pass the turn on."""
        with self._mutex:
            self._committing = 0
            for index, write in enumerate(batch):
                if not write.done:
                    write.result = results[index] if results else None
                    write.error = error
                    write.done = True
                    write.wake()
            self._pending[:0] = list(requeue)
            if self._pending:
                self._pending[0].wake()

    async def _run_async(self, kind: str, sql: str, params: Any, finish: Callable[[Any], Any]) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        worker = self._worker(loop)
        future = loop.create_future()
        if kind is _ROWS:
            worker.submit(_fetch_rows, (sql, params), _settle, future)
            return finish(await future)
        write = _Write(kind, sql, params, future)
        worker.write(write)
        try:
            result = await future
        except asyncio.CancelledError:
            if write in worker.pending:  # not sent yet: withdrawn, nothing stored
                worker.pending.remove(write)
            raise
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
            if self._forked:
                _hold_shared_lock(self.path)
                self._forked = False
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
        conn = self._conn or self._connect()
        if conn.in_transaction:  # left open by an interrupted call: end it before anything else
            conn.execute("ROLLBACK")
        return conn

    def _sync_connection(self) -> Any:
        with self._lock:
            return self._open_locked()

    def _connect_worker(self) -> Any:
        """Open a connection for a loop's thread (in that thread), once the file is prepared."""
        import sqlite3

        self._sync_connection()
        conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        conn.execute(self._sql_synchronous)
        return conn

    def _worker(self, loop: Any) -> _Worker:
        """Return the thread that owns this loop's connection, starting it on first use."""
        worker = self._aconns.get(loop)
        if worker is None or worker.stopped is not None:  # first use, or its connecting failed
            with self._lock:
                if self._closed:
                    raise self._closed_error()
                worker = self._aconns.get(loop)
                if worker is None or worker.stopped is not None:
                    for old in [old for old in self._aconns if old.is_closed()]:
                        self._aconns.pop(old).stop(self._closed_error())
                    worker = self._aconns[loop] = _Worker(loop, self._connect_worker)
        return worker

    def close(self) -> Any:
        """Close every connection this instance opened; calling it again does nothing.

        Everything is handed over to be closed at call time, so a close() that
        is cancelled or never awaited still closes it all. Calls made later
        raise ValueError("... is closed"). Awaitable in async code: it waits
        until each connection is closed.
        """
        workers = self._detach()
        if _async_caller():
            import asyncio

            loop = asyncio.get_running_loop()
            future = loop.create_future()
            left = [len(workers)]

            def one_closed() -> None:
                left[0] -= 1
                if not left[0]:
                    _settle(future, None, None)

            for worker in workers:
                worker.when_exited(functools.partial(_call_in_loop, loop, one_closed))
            if not workers:
                future.set_result(None)
            return future
        for worker in workers:
            if worker.thread is not threading.current_thread():
                worker.thread.join()
        return None

    def _detach(self) -> list[_Worker]:
        """Mark the store closed, close the sync connection, stop the loops' threads."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            self._stopping.extend(self._aconns.values())
            self._aconns.clear()
        if conn is not None:
            conn.close()
        for worker in self._stopping:
            worker.stop(self._closed_error())
        self._stopping = [worker for worker in self._stopping if not worker.exited]
        return list(self._stopping)

    def _after_fork(self) -> None:
        """In a forked child: abandon what the parent opened, and start afresh."""
        inherited = [self._conn] + [worker.conn for worker in (*self._aconns.values(), *self._stopping)]
        for conn in inherited:
            if conn is not None:
                _abandon(conn)
                self._forked = True
        self._conn = None
        self._aconns = {}
        self._stopping = []
        self._fresh_locks()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) or (self._conn is None and not self._aconns):
            return
        warnings.warn(f"unclosed {self!r}; call close() or use 'with'", ResourceWarning, stacklevel=2)
        self._closed = True
        if self._conn is not None:
            self._conn.close()
        for worker in self._aconns.values():
            worker.stop(self._closed_error())

    def __enter__(self) -> PickleDBSQLite:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    async def __aenter__(self) -> PickleDBSQLite:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.close()
