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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast, overload

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
_CO_COROUTINE = 0x80
_CO_ASYNC_GENERATOR = 0x200
_CO_ASYNC = _CO_COROUTINE | _CO_ASYNC_GENERATOR
# Code that belongs to the function it is written in (3.12 inlines the first three).
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})

_SQLITE_HINT = 'async use of PickleDBSQLite needs aiosqlite: pip install "pickledb[sqlite]"'


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
# coroutine (an `async def`, or a notebook statement that uses top-level
# `await`) it returns a coroutine; called from anything else it returns the
# value. The decision is made from the caller's code object, never from "is
# an event loop running", which is true in every notebook cell and in sync
# helpers called by async code. Comprehensions and generator expressions
# count as the function they are written in, so that
# `gather(*(db.get(k) for k in ks))` works.
#
# The answer never changes for a given code object, so it is worked out once:
# the last code found sync and the last found async are kept, and a call from
# either costs one identity test (PickleDB's in-memory methods make that test
# inline: a helper call would double their cost). Comprehensions, whose
# answer needs a look at the code around them, are remembered by id() of
# their code object, in a bounded table whose entries keep their code alive.

_getframe = sys._getframe

_T = TypeVar("_T")
_S = TypeVar("_S")
_P = ParamSpec("_P")
_F = TypeVar("_F", bound=Callable[..., Any])

_sync_code: types.CodeType | None = None  # the code that last called from the sync world
_async_code: types.CodeType | None = None  # ... and from the async world
_comprehensions_seen: dict[int, tuple[types.CodeType, bool | None]] = {}  # None: its consumer decides
_REMEMBER_AT_MOST = 1024  # comprehension code objects (and named coroutine functions)


def _async_caller(depth: int = 2) -> bool:
    """Return True when the code running `depth` frames up is async code."""
    global _sync_code, _async_code
    frame = _getframe(depth)
    answer, lasting = _frame_is_async(frame)
    if lasting:
        if answer:
            _async_code = frame.f_code
        else:
            _sync_code = frame.f_code
    return answer


def _frame_is_async(frame: types.FrameType) -> tuple[bool, bool]:
    """(whether the code of `frame` is async, whether that holds for every call from it)."""
    code = frame.f_code
    if code.co_flags & _CO_ASYNC:
        return True, True
    if code.co_name not in _COMPREHENSIONS:
        return False, True
    seen = _comprehensions_seen.get(id(code))
    if seen is not None and seen[0] is code:
        answer = seen[1]
    else:
        # The function a comprehension is written in holds its code object as
        # a constant, and is on the stack while the comprehension runs (a
        # generator expression may be iterated by a helper it was handed to).
        outer = frame.f_back
        while outer is not None and not (
            code in outer.f_code.co_consts and any(const is code for const in outer.f_code.co_consts)
        ):
            outer = outer.f_back
        if outer is None:  # a generator iterated after its function returned: from now on its consumer decides
            answer = None
        else:
            answer, lasting = _frame_is_async(outer)
            if not lasting:
                return answer, False
        if len(_comprehensions_seen) >= _REMEMBER_AT_MOST:
            _comprehensions_seen.clear()
        _comprehensions_seen[id(code)] = (code, answer)
    if answer is None:
        return (frame.f_back is not None and _frame_is_async(frame.f_back)[0]), False
    return answer, True


_named_copies: dict[tuple[str, Callable[..., Any]], Callable[..., Any]] = {}


def _named(qualname: str, fn: _F) -> _F:
    """Return a copy of the async function `fn` whose coroutines are named `qualname`.

    Python names a coroutine after the function that made it, in its repr and
    in "coroutine '...' was never awaited": named after the public method, a
    forgotten `await` points at the caller's own line of code. One copy is
    made per name and function.
    """
    copy = _named_copies.get((qualname, fn))
    if copy is None:
        func = cast(types.FunctionType, fn)
        copy = types.FunctionType(
            func.__code__, func.__globals__, qualname.rpartition(".")[2], func.__defaults__, func.__closure__
        )
        copy.__qualname__ = qualname
        copy.__kwdefaults__ = func.__kwdefaults__
        if len(_named_copies) >= _REMEMBER_AT_MOST:
            _named_copies.clear()
        _named_copies[(qualname, fn)] = copy
    return cast(_F, copy)


def _named_for_caller(fn: _F, owner: object, depth: int = 2) -> _F:
    """`fn` named after the method of `owner` running `depth` frames up from the one calling this.

    A private runner calls `_named_for_caller(Class._runner_async, self)(self, ...)`
    so that its coroutine carries the public method's name (depth 2: the
    runner's caller); a public method itself passes depth 1.
    """
    code = _getframe(depth).f_code
    qualname: str | None = getattr(code, "co_qualname", None)  # Python 3.11+
    if qualname is None:  # Python 3.10: the class in which this code is the method of that name
        qualname = f"{type(owner).__qualname__}.{code.co_name}"
        for klass in type(owner).__mro__:
            if getattr(vars(klass).get(code.co_name), "__code__", None) is code:
                qualname = f"{klass.__qualname__}.{code.co_name}"
                break
    return _named(qualname, fn)


async def _ready(value: _T) -> _T:
    """The coroutine an in-memory operation returns in async code: its work is already done."""
    return value


def _done(qualname: str) -> Callable[[_T], _T]:
    """_ready named after a public method; typed as the value it gives when awaited."""
    return cast("Callable[[_T], _T]", _named(qualname, _ready))


def _aiofiles() -> Any:
    import aiofiles.os

    return aiofiles


async def _off_loop(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run blocking `fn(*args, **kwargs)` in aiofiles' worker threads."""
    result: _T = await _aiofiles().os.wrap(functools.partial(fn, *args, **kwargs))()
    return result


def _dual(blocking: Callable[Concatenate[_S, _P], bool]) -> Callable[Concatenate[_S, _P], _Bool]:
    """Make a blocking method callable from sync code and awaitable from async code.

    The async form runs the very same function off the event loop, in a
    coroutine named after the method.
    """
    off_loop = _named(blocking.__qualname__, _off_loop)

    @functools.wraps(blocking)
    def method(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> Any:
        if _async_caller():
            return off_loop(blocking, self, *args, **kwargs)
        return blocking(self, *args, **kwargs)

    return cast("Callable[Concatenate[_S, _P], _Bool]", method)


# What a type checker sees. An operation gives its value in sync code and a
# coroutine of the same value in async code; no type says "this, or that,
# depending on the caller", so the public methods are annotated with a type
# that is both: a subclass of the value's type that is also awaitable and
# gives that value. `ok: bool = db.set(k, v)` and `ok: bool = await
# db.set(k, v)` both check. These classes exist for type checkers only.
if TYPE_CHECKING:

    class _Bool(bool, Awaitable[bool]):  # type: ignore[misc]  # bool is final; never instantiated
        ...

    class _Str(str, Awaitable[str]): ...

    class _StrList(list[str], Awaitable[list[str]]): ...


@overload
def _both(method: Callable[_P, bool]) -> Callable[_P, _Bool]: ...
@overload
def _both(method: Callable[_P, str]) -> Callable[_P, _Str]: ...
@overload
def _both(method: Callable[_P, list[str]]) -> Callable[_P, _StrList]: ...
def _both(method: Callable[_P, Any]) -> Callable[_P, Any]:
    """Annotate a method as giving its value, or a coroutine of it (see above); nothing else."""
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

# The coroutines the in-memory operations return in async code, named after them.
_set_done = _done("PickleDB.set")
_get_done = _done("PickleDB.get")
_remove_done = _done("PickleDB.remove")
_all_done = _done("PickleDB.all")
_purge_done = _done("PickleDB.purge")
_set_many_done = _done("PickleDB.set_many")


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

    @_both
    def set(self, key: Any, value: Any) -> bool:
        """Store value under str(key) in memory; return True. Awaitable in async code."""
        self._data[str(key)] = value
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _set_done(True)
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value stored under str(key), or default. Awaitable in async code."""
        value = self._data.get(str(key), default)
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _get_done(value)
        return value

    @_both
    def remove(self, key: Any) -> bool:
        """Delete str(key); return True if it existed. Awaitable in async code."""
        existed = self._data.pop(str(key), MISSING) is not MISSING
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _remove_done(existed)
        return existed

    @_both
    def all(self) -> list[str]:
        """Return a list of every key, in insertion order. Awaitable in async code."""
        keys = list(self._data)
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _all_done(keys)
        return keys

    @_both
    def purge(self) -> bool:
        """Delete every key in memory; return True. Awaitable in async code."""
        self._data.clear()
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _purge_done(True)
        return True

    @_both
    def set_many(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> bool:
        """Store every (key, value) pair in memory at once; return True.

        Either all pairs are stored or, if reading `items` fails, none is.
        Awaitable in async code.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        self._data.update({str(key): value for key, value in pairs})
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _set_many_done(True)
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

    @_both
    def set(self, key: Any, value: Any) -> str:
        """Store value under key (a new uuid4 key when None); return the key.

        Awaitable in async code.
        """
        name = str(uuid.uuid4()) if key is None else _sql_key(key)
        return self._run(_COUNT, self._sql_set, (name, _encode_value(name, value)), lambda _: name)

    def get(self, key: Any, default: Any = MISSING) -> Any:
        """Return the value under key; without a default a missing key raises KeyError.

        Awaitable in async code.
        """
        key = _sql_key(key)
        return self._run(_ROWS, self._sql_get, (key,), lambda rows: self._found(key, rows, default))

    @_both
    def remove(self, key: Any) -> bool:
        """Delete key; return True if a row was deleted. Awaitable in async code."""
        return self._run(_COUNT, self._sql_remove, (_sql_key(key),), lambda count: bool(count > 0))

    @_both
    def all(self) -> list[str]:
        """Return every key, sorted. Awaitable in async code."""
        return self._run(_ROWS, self._sql_all, (), lambda rows: [row[0] for row in rows])

    @_both
    def purge(self) -> bool:
        """Delete every row of this table; return True. Awaitable in async code."""
        return self._run(_COUNT, self._sql_purge, (), lambda _: True)

    @_both
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

    def _run(self, kind: str, sql: str, params: Any, finish: Callable[[Any], _T]) -> _T:
        if self._closed:
            raise self._closed_error()
        if _async_caller(3):
            run = _named_for_caller(PickleDBSQLite._run_async, self)  # named after the public method
            return cast(_T, run(self, _aiosqlite(), kind, sql, params, finish))
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

    async def _run_async(self, aiosqlite: Any, kind: str, sql: str, params: Any, finish: Callable[[Any], _T]) -> _T:
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
            return cast("tuple[Any, Any]", await asyncio.shield(entry))
        return cast("tuple[Any, Any]", entry)

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
            return _named_for_caller(_close_each, self, 1)(self._detach())
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
