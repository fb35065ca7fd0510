"""A JSON-backed key-value store with one sync/async API and atomic, durable saves.

PickleDB keeps a dict in memory and saves it as one JSON file. PickleDBSQLite, PickleDBRedis and PickleDBPostgres offer
the same operations on an SQLite file, a Redis hash and a PostgreSQL table. Each public method has one name: plain code
gets its value, code in an `async def` awaits it. `python -m pickledb` is the command line. Its sections, in order, each
under a `# --- name ---` banner:

    constants and sentinels   limits, install hints, MISSING
    exceptions                CorruptFileError, ConflictError
    sync/async dispatch       how a call finds whether its caller is async; coroutines named after the method
    reading and writing       JSON files: reads, atomic durable writes, locks, links and modes
    PickleDB                  the in-memory dict and its load() and save()
    the shared store core     PickleDBStore: every store operation, written once, how it runs, what a backend provides
    PickleDBSQLite            its SQL, the thread per event loop that owns a connection, and group commit
    PickleDBRedis             its commands, the clients per event loop, the connection limit, and error mapping
    PickleDBPostgres          its statements, a psycopg pool for sync calls and one per event loop
    (a new backend)           a subclass of PickleDBStore, in a section of its own here
    command line              `pickledb keys|get|set|...`, a layer over the stores' public methods
"""

# Copyright (c) 2026, the pickledb authors.
# SPDX-License-Identifier: BSD-3-Clause
# This file is the whole library: copy it with LICENSE and `pip install orjson aiofiles` (+ redis, psycopg[-pool]).

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import errno
import functools
import gc
import itertools
import math
import os
import queue
import secrets
import select
import signal
import stat
import sys
import threading
import time
import types
import urllib.parse
import uuid
import warnings
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

import orjson

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None  # type: ignore[assignment]
try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = (
    "PickleDB",
    "PickleDBSQLite",
    "PickleDBRedis",
    "PickleDBPostgres",
    "CorruptFileError",
    "ConflictError",
    "MISSING",
)
__version__ = "2.0.0"


# --- constants and sentinels ------------------------------------------------


class _Missing:
    """The type of MISSING: "no default was given"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = cast(Any, _Missing())  # Any: accepted wherever a value is, with no private name in help(pickledb)

_CO_ASYNC = 0x80 | 0x200  # inspect.CO_COROUTINE | CO_ASYNC_GENERATOR
# Code that belongs to the function it is written in (3.12 inlines the first three).
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})

_MAX_FILE_BYTES = 2**31 - 1  # the largest file save() writes: orjson has failed to parse inputs past about 2.1e9 bytes
_MAX_DEPTH_WRITE = 254  # orjson's nesting limits, the database's own object included
_MAX_DEPTH_READ = 1024
_NAME_MAX = 255  # bytes in a file name on most file systems
_LOCK_TIMEOUT = 30.0  # seconds a save waits for another process's save of the same directory

# Each leads with the bare package, the fix for a copied pickledb.py and an installed one alike.
_AIOFILES_HINT = "async load() and save() need aiofiles: pip install aiofiles"
_REDIS_HINT = 'PickleDBRedis needs redis-py: pip install redis (with pickledb installed: pip install "pickledb[redis]")'


# --- exceptions -------------------------------------------------------------


class CorruptFileError(ValueError):
    """A database file exists but does not hold a JSON object; `.path` names it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}; the file was left as it is")
        self.path, self.problem = path, problem


class ConflictError(RuntimeError):
    """save() refused to replace a file this PickleDB has not seen; `.path` names it. Nothing was written."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"{path} {problem}; nothing was written. Call load() to read it (this replaces the data in "
            "memory) and redo your change, or save(force=True) to replace the file anyway"
        )
        self.path = path


# --- private helpers: sync/async dispatch -----------------------------------
#
# From a coroutine (an `async def`, or a notebook cell with top-level `await`) a public method returns a coroutine
# named after it (_named_for_caller), else the value. The caller's code object decides (_async_caller), never "is a
# loop running" (true in sync helpers of async code); a comprehension counts as the function it is in, so that
# `gather(*(db.get(k) for k in ks))` works. The last sync and last async caller are kept: a repeat costs one `is` test.

_getframe = sys._getframe
_monotonic = time.monotonic

_T = TypeVar("_T")
_P = ParamSpec("_P")
_F = TypeVar("_F", bound=Callable[..., Any])

_sync_code = cast("types.CodeType | None", None)  # the code that last called from the sync world
_async_code = cast("types.CodeType | None", None)  # ... and from the async world
_comprehensions_seen = cast("dict[int, tuple[types.CodeType, bool | None]]", {})  # None: its consumer decides
_REMEMBER_AT_MOST = 1024  # comprehension code objects (and named coroutine functions)


def _async_caller(depth: int = 2) -> bool:
    """Return True when the code running `depth` frames up is async code."""
    global _sync_code, _async_code
    frame = _getframe(depth)
    if frame.f_code is _sync_code:  # the same caller as last time: the answer cannot have changed
        return False
    if frame.f_code is _async_code:
        return True
    answer, lasting = _frame_is_async(frame)
    if lasting and answer:
        _async_code = frame.f_code
    elif lasting:
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
        # Its function holds its code as a constant, and is on the stack (maybe further up: a helper may iterate it).
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


@functools.lru_cache(maxsize=_REMEMBER_AT_MOST)
def _named(qualname: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of async `fn` whose coroutines are named `qualname`, so "never awaited" warnings name the method."""
    func = cast(types.FunctionType, fn)
    name = qualname.rpartition(".")[2]
    copy = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__, func.__closure__)
    copy.__qualname__, copy.__kwdefaults__ = qualname, func.__kwdefaults__
    return copy


def _named_for_caller(fn: _F, owner: object, depth: int = 2) -> _F:
    """Return `fn` named after the method of type(owner) running `depth` frames up (1: the caller of this)."""
    return cast(_F, _named(f"{type(owner).__qualname__}.{_getframe(depth).f_code.co_name}", fn))


async def _ready(value: _T) -> _T:
    """Return `value`: what an in-memory operation, done already, gives in async code."""
    return value


def _aiofiles() -> Any:
    """The aiofiles module, imported on the first async load() or save(): a copied pickledb.py may do without."""
    try:
        import aiofiles.os
    except ImportError as err:
        raise ImportError(_AIOFILES_HINT) from err
    return aiofiles.os


async def _off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    """Return blocking `fn(*args)`, run in aiofiles' worker threads."""
    return cast(_T, await _aiofiles().wrap(fn)(*args))


# For type checkers only: a public method gives a subclass of its value's type that is also awaitable for that value,
# so that both `ok: bool = db.set(k, v)` and `ok: bool = await db.set(k, v)` check.
if TYPE_CHECKING:

    class _Bool(bool, Awaitable[bool]): ...  # type: ignore[misc]  # bool is final; never instantiated

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


def _not_a_pair(position: int, err: Exception) -> ValueError:
    """set_many's error for an item that is not a (key, value) pair: named by position, as it may hold a secret."""
    return ValueError(f"set_many: item {position} is not a (key, value) pair ({err}); nothing was stored")


def _short(key: str, limit: int = 80) -> str:
    text = repr(key)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _path_of(location: str | os.PathLike[str], argument: str, example: str) -> str:
    """Return the absolute path of `location` (`~` expanded); errors name `argument` and show `example`."""
    path: object = location
    with contextlib.suppress(TypeError):
        path = os.fspath(location)
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
    """Pause the cyclic GC: each of the millions of containers a parse makes may start a useless collection."""

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


# What a PickleDB remembers of its file: None when missing or empty, else (device, inode, size, mtime ns, ctime ns).
# The ctime changes with every write, chmod or chown, even one that puts the mtime back, and with a rename.
_Fingerprint = tuple[int, int, int, int, int]
_NEVER = "never"  # what a fresh instance has seen

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _same_but_ctime(one: _Fingerprint | None, other: _Fingerprint | None) -> bool:
    """Return whether two fingerprints are of the same file and contents, whatever their change times."""
    return one is not None and other is not None and one[:4] == other[:4]


def _fingerprint(info: os.stat_result) -> _Fingerprint | None:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns) if info.st_size else None


def _not_a_file(mode: int) -> OSError:
    """The error for a path that is not a regular file (strerror only: callers add the path)."""
    if stat.S_ISDIR(mode):
        return IsADirectoryError(errno.EISDIR, "it is a directory, not a file")
    kinds = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
    kind = kinds.get(stat.S_IFMT(mode), "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return OSError(errno.EINVAL, f"it is {kind}; pickledb reads and writes only regular files (or links to one)")


# signal.pthread_sigmask makes an enum member of every number it returns (dearer than a save's syscalls): call its C.
_pthread_sigmask = cast(
    "Callable[[int, Iterable[int]], set[int]] | None", getattr(sys.modules.get("_signal"), "pthread_sigmask", None)
)
_FAULTS = {getattr(signal, name, -1) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT")}
_ALL_SIGNALS = frozenset(int(n) for n in signal.valid_signals() if n not in _FAULTS)  # faulthandler must see faults


class _SignalsHeld:
    """Hold back signal handlers, which could raise between a save's check and rename, while its lock is held."""

    __slots__ = ("old",)

    def __enter__(self) -> _SignalsHeld:
        self.old: set[int] | None = None
        mask = _pthread_sigmask
        if mask is None or threading.current_thread() is not threading.main_thread():
            return self
        self.old = old = mask(signal.SIG_BLOCK, ())  # pending handlers may run here: nothing is held yet
        try:
            mask(signal.SIG_BLOCK, _ALL_SIGNALS)
        except BaseException:
            mask(signal.SIG_SETMASK, old)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.old is not None and _pthread_sigmask is not None:
            _pthread_sigmask(signal.SIG_SETMASK, self.old)

    def pause(self, seconds: float) -> None:
        """Sleep with signals let in, so that Ctrl-C works while waiting for the lock."""
        self.__exit__()
        try:
            time.sleep(seconds)
        finally:
            self.__enter__()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _read_json(path: str) -> tuple[dict[str, Any], _Fingerprint | None]:
    """Return the JSON object at `path` and the file's fingerprint: ({}, None) if missing or empty."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # refused unopened: a FIFO would block, a device never end
            raise _not_a_file(info.st_mode)
        with open(path, "rb", buffering=0) as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):  # swapped in since the stat
                raise _not_a_file(info.st_mode)
            if info.st_size > _MAX_FILE_BYTES:
                raise CorruptFileError(
                    path, f"{info.st_size} bytes is more than the {_MAX_FILE_BYTES} bytes orjson can parse"
                )
            raw = file.read()
    except FileNotFoundError:
        return {}, None
    except OSError as err:
        raise OSError(err.errno, f"cannot load: {err.strerror or err}", path) from None
    if not raw:
        return {}, None
    try:
        with _PausedGC():
            data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        if "depth limit" in str(err):
            problem = f"nested too deeply: orjson reads at most {_MAX_DEPTH_READ} levels of arrays and objects"
            raise CorruptFileError(path, f"{problem} ({err})") from None
        raise CorruptFileError(path, f"not valid JSON ({err})") from None
    if type(data) is not dict:
        raise CorruptFileError(path, f"top level is a JSON {_json_kind(data)}, expected an object")
    return data, _fingerprint(info)


def _held_more_than(size: int) -> bool:
    """Return whether this process has held more than `size` bytes resident and maps more now (True if unknown)."""
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if (peak if sys.platform == "darwin" else peak * 1024) <= size:  # macOS counts bytes, the others KiB
            return False
    try:
        with open("/proc/self/statm", "rb", buffering=0) as file:
            return int(file.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") > size
    except (OSError, ValueError, IndexError, AttributeError):
        return True


def _json_kind(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return names.get(type(value), "null")


def _fsync_dir(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # this file system cannot sync directories
            raise


def _flock(fd: int, directory: str, held: _SignalsHeld) -> None:
    """Take the exclusive flock on `fd`, waiting at most _LOCK_TIMEOUT seconds."""
    assert fcntl is not None
    deadline, pause = time.monotonic() + _LOCK_TIMEOUT, 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as err:
            raise OSError(
                err.errno,
                f"cannot lock the directory {directory} for the save ({err.strerror}); "
                "its file system may not support flock",
            ) from None
        if time.monotonic() > deadline:
            raise TimeoutError(
                errno.ETIMEDOUT,
                f"another process has held the save lock on the directory {directory} for "
                f"{_LOCK_TIMEOUT:g} s; is a save stuck there?",
            )
        held.pause(pause)
        pause = min(pause * 2, 0.01)


def _resolve(path: str) -> str:
    """Return the real path of the absolute `path`, following a link only where fs.protected_symlinks=1 would."""
    if os.name == "nt":  # pragma: no cover - Windows
        return os.path.realpath(path)
    done, todo, hops = "", path.split("/")[::-1], 0
    while todo:
        part = todo.pop()
        if part in ("", ".", ".."):
            done = done.rpartition("/")[0] if part == ".." else done
            continue
        here = f"{done}/{part}"
        try:
            link = os.readlink(here)
        except OSError:  # not a link, or missing (the save creates it)
            done = here
            continue
        owner, folder = os.lstat(here).st_uid, os.stat(done or "/")
        if folder.st_mode & 0o1002 == 0o1002 and owner not in (os.geteuid(), folder.st_uid):
            raise PermissionError(
                errno.EACCES,
                f"the symbolic link {here} in the sticky, world-writable directory {done or '/'} belongs to uid "
                f"{owner}, neither you nor the directory's owner, so it is not followed; remove it or save elsewhere",
            )
        if (hops := hops + 1) > 40:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        done = "" if link.startswith("/") else done
        todo += link.split("/")[::-1]
    return done or "/"


def _temp_prefix(name: str) -> str:
    """The start of the temp file names of `name`, `.NAME.`, cut so that `.NAME.<16 hex digits>.tmp` fits NAME_MAX."""
    return f".{os.fsdecode(os.fsencode(name)[: _NAME_MAX - 22])}."


def _claimed(fd: int) -> bool:
    """Lock a temp file; return False if a save or a removal of stray temp files holds it or has removed it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return os.fstat(fd).st_nlink > 0


def _remove_stray_temps(dir_fd: int, name: str) -> None:
    """Remove temp files of `name` left in `dir_fd` by killed saves (a live save holds its own locked); errors pass."""
    prefix = _temp_prefix(name)
    try:
        names = [entry for entry in os.listdir(dir_fd) if entry.startswith(prefix) and len(entry) == len(prefix) + 20]
    except OSError:
        return
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC
    for stray in names:
        if stray[-20:].lstrip("0123456789abcdef") != ".tmp":  # not .<16 hex digits>.tmp
            continue
        with contextlib.suppress(OSError):
            try:
                fd = os.open(stray, os.O_RDONLY | flags, dir_fd=dir_fd)
            except PermissionError:  # a file its owner may only write, such as 0o200
                fd = os.open(stray, os.O_WRONLY | flags, dir_fd=dir_fd)
            try:
                if _claimed(fd) and os.path.samestat(os.lstat(stray, dir_fd=dir_fd), os.fstat(fd)):
                    os.unlink(stray, dir_fd=dir_fd)
            finally:
                os.close(fd)


def _refuse_read_only(info: os.stat_result, target: str) -> None:
    """Raise PermissionError if you may not write the file (root: if it has no write bit at all)."""
    if info.st_uid == getattr(os, "geteuid", int)() and info.st_mode & stat.S_IWUSR:  # Windows: uid 0
        return
    if info.st_mode & 0o222 and os.access(target, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return
    raise PermissionError(
        errno.EACCES,
        f"the file is read-only for you (mode {stat.S_IMODE(info.st_mode):#o}, owner uid {info.st_uid}); "
        "make it writable, or call save(force=True) to replace it anyway",
    )


def _keep_owner_and_mode(fd: int, info: os.stat_result) -> None:
    """Give the temp file the mode, group and (as root) owner of the file it replaces, where you may."""
    if fcntl is None:  # pragma: no cover - Windows: no owners, and the mode is only a read-only flag
        return
    euid, mode = os.geteuid(), stat.S_IMODE(info.st_mode)
    if (info.st_uid, info.st_gid) != (euid, os.getegid()):
        try:
            os.fchown(fd, info.st_uid if euid == 0 else -1, info.st_gid)
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EINVAL):  # not your group, or an id unknown here
                raise
            mode &= ~0o070  # the group's rights were meant for that group, not for yours
    os.fchmod(fd, mode)  # after the chown, which may clear the setgid bit


def _atomic_write(path: str, payload: bytes, commit: Callable[[str, str, int], None], force: bool = True) -> None:
    """Write `payload` to a locked, fsynced temp file beside `path` that commit(tmp, target, fd) renames."""
    tmp = ""
    try:
        target = _resolve(path)
        info: os.stat_result | None = None
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(target)
        if info is not None:
            if not stat.S_ISREG(info.st_mode):
                raise _not_a_file(info.st_mode)  # never replace a device node or a FIFO
            if not force:
                _refuse_read_only(info, target)
        mode = 0o666 if info is None else stat.S_IMODE(info.st_mode) & 0o700
        prefix = os.path.join(os.path.dirname(target), _temp_prefix(os.path.basename(target)))
        while True:
            tmp = f"{prefix}{secrets.token_hex(8)}.tmp"
            try:  # os.open as the opener: the file object owns the descriptor from the start
                file = open(tmp, "xb", buffering=0, opener=functools.partial(os.open, mode=mode))
            except FileExistsError:  # pragma: no cover - 64 random bits collided
                tmp = ""
                continue
            with file:
                fd = file.fileno()
                if fcntl is not None and not _claimed(fd):  # another save took it for a stray and removes it
                    tmp = ""
                    continue
                if info is not None:
                    _keep_owner_and_mode(fd, info)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                commit(tmp, target, fd)
                return
    except BaseException as err:
        if tmp:
            _unlink(tmp)  # gone already when the rename happened
        if isinstance(err, OSError):
            raise OSError(err.errno, f"cannot save: {err.strerror or err}", path) from err
        raise


# --- PickleDB ---------------------------------------------------------------

# What set() and get() return in async code (see _in_memory for the other methods).
_set_done = cast("Callable[[bool], bool]", _named("PickleDB.set", _ready))
_get_done = cast("Callable[[Any], Any]", _named("PickleDB.get", _ready))


class PickleDB:
    """An in-memory dict of str keys, loaded from and saved to one JSON file.

    location: the JSON file (str or os.PathLike). A leading `~` is expanded and the path is made absolute at creation.
    pretty: True writes JSON indented by two spaces, ending with a newline.

    The constructor touches no disk: call load() (a missing file loads as an empty database) and save(), or use `with`
    / `async with` (load on entry, save on a clean exit). Every method is awaitable when called from async code.
    """

    def __init__(self, location: str | os.PathLike[str], *, pretty: bool = False) -> None:
        self.location = _path_of(location, "location", 'PickleDB("data.json")')
        self._option = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE if pretty else 0
        self._data: dict[str, Any] = {}
        self._reads = cast("dict[str, Any]", _Unread(self))  # _data once _first_read ran
        self._numbers = itertools.count(1)  # one per load() and save(): a save finding a later one saved drops its own
        # number -> fingerprint as that load or save left the file; the highest is what this instance has seen.
        # Only added to and pruned below the maximum, so a save by a signal handler mid-save is never undone.
        self._marks: dict[int, _Fingerprint | None] = {}
        self._saves: set[int] = set()
        self._fresh_locks()

    def _fresh_locks(self) -> None:
        """Locks and save state as a new instance has them (also in a forked child)."""
        self._pid = os.getpid()
        self._lock = threading.RLock()  # re-entrant: a signal handler may save during a save
        self._inflight: dict[int, tuple[str, _Fingerprint | None]] = {}  # number -> (temp file, its fingerprint)
        self._dir_fd = -1  # the directory, open (and flocked) while a save is in its locked section

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    # -- file I/O (blocking; off the event loop in async code) --

    @_both
    def load(self) -> bool:
        """Replace the data in memory with the file's (a missing or empty file: none); return True.

        A file that is not a JSON object raises CorruptFileError (a ValueError), anything but a regular file OSError,
        both naming it and changing nothing. Awaitable in async code; a cancelled load changes nothing.
        """
        self._first_read(warn=False)  # a load() that fails counts too: its caller knows of the file
        if _async_caller():
            _aiofiles()  # a missing aiofiles is reported at the call, not at the await
            return cast(bool, _named_for_caller(PickleDB._load_async, self, 1)(self))
        # Paused until memory is replaced: a collection started right after the parse would walk it all again.
        with _PausedGC():
            self._loaded(*_read_json(self.location))
        return True

    async def _load_async(self) -> bool:
        self._loaded(*await _off_loop(_read_json, self.location))  # on the loop: not if the read was cancelled
        return True

    def _loaded(self, data: dict[str, Any], fingerprint: _Fingerprint | None) -> None:
        self._check_fork()
        with self._lock:
            # Numbered after the read: a save that finished during it is older, so the next save conflicts.
            number = next(self._numbers)
            self._data = self._reads = data
            self._remember(number, fingerprint, saved=False)

    @_both
    def save(self, force: bool = False) -> bool:
        """Write the whole database to the file atomically and durably; return True.

        Raises ConflictError if the file is not the one this instance last loaded or saved, PermissionError if you may
        not write it (force=True replaces it anyway), TypeError naming the key of a value JSON cannot hold, OSError
        naming the file. On any error nothing changes, except when the directory fsync after the rename fails: the file
        then holds the complete new contents, not confirmed durable. Awaitable in async code (off the event loop).
        """
        if _async_caller():
            _aiofiles()  # a missing aiofiles is reported at the call, not at the await
            return cast(bool, _named_for_caller(_off_loop, self, 1)(self._save, force))
        return self._save(force)

    def _save(self, force: bool) -> bool:
        self._check_fork()
        self._refuse_strings_too_long()
        number = next(self._numbers)  # before the snapshot: a higher number holds a later one
        payload = self._encode()
        if len(payload) > _MAX_FILE_BYTES:
            raise self._too_large(f"the file would be {len(payload)} bytes,")
        _atomic_write(self.location, payload, functools.partial(self._commit, number, force), force)
        return True

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's locks and temp files are not ours
            fd = self._dir_fd
            self._fresh_locks()
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)  # the parent's own descriptor keeps its lock

    def _remember(self, number: int, fingerprint: _Fingerprint | None, *, saved: bool) -> None:
        self._marks[number] = fingerprint
        if saved:
            self._saves.add(number)
        newest = max(self._marks)
        for old in [n for n in self._marks if n < newest]:
            self._marks.pop(old, None)
        newest = max(self._saves, default=0)
        self._saves.difference_update([n for n in self._saves if n < newest])

    def _commit(self, number: int, force: bool, tmp: str, target: str, tmp_fd: int) -> None:
        """Check the file and rename tmp over it, under our lock and an flock on the directory (freed if we die)."""
        with self._lock, _SignalsHeld() as held:
            owner = self._dir_fd < 0  # else this save interrupted another, by a signal handler: it shares the flock
            if owner and fcntl is not None:
                self._dir_fd = os.open(os.path.dirname(target), os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
            try:
                if self._dir_fd >= 0:
                    _flock(self._dir_fd, os.path.dirname(target), held)
                if self._replace(number, force, tmp, target, tmp_fd) and self._dir_fd >= 0:
                    _remove_stray_temps(self._dir_fd, os.path.basename(target))
                    _fsync_dir(self._dir_fd)
            finally:
                if owner and self._dir_fd >= 0:
                    fd, self._dir_fd = self._dir_fd, -1
                    try:
                        assert fcntl is not None
                        fcntl.flock(fd, fcntl.LOCK_UN)  # also if a forked child shares the descriptor
                    finally:
                        os.close(fd)

    def _replace(self, number: int, force: bool, tmp: str, target: str, tmp_fd: int) -> bool:
        """Rename tmp (open as tmp_fd) over target unless a later snapshot is saved; return True if it did."""
        fingerprint = _fingerprint(os.fstat(tmp_fd))
        self._inflight[number] = (tmp, fingerprint)
        try:
            # Others are saves a signal handler interrupted: their older snapshots must not be renamed later.
            for other, (other_tmp, _) in list(self._inflight.items()):
                if other < number:
                    _unlink(other_tmp)
            try:
                if max(self._saves, default=0) <= number:
                    if not force:
                        self._check_unchanged(target)
                    os.replace(tmp, target)
            except (ConflictError, FileNotFoundError):  # a handler's later save may have come between, or taken tmp
                if max(self._saves, default=0) <= number:
                    raise
            if max(self._saves, default=0) > number:  # a later snapshot is saved: this one is dropped
                _unlink(tmp)
                return False
            # The ctime of the rename, unless another program wrote to the file since: then the next save conflicts.
            after = _fingerprint(os.fstat(tmp_fd))
            self._remember(number, after if _same_but_ctime(after, fingerprint) else fingerprint, saved=True)
            return True
        except BaseException:
            # Interrupted after the rename: remember the file we wrote, or the next save would conflict.
            with contextlib.suppress(OSError):
                now = _fingerprint(os.stat(target))
                if _same_but_ctime(now, fingerprint):
                    self._remember(number, now, saved=True)
            raise
        finally:
            self._inflight.pop(number, None)

    def _check_unchanged(self, target: str) -> None:
        try:
            info = os.stat(target)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file(info.st_mode)
        if (on_disk := _fingerprint(info)) is None:  # an empty file holds nothing to lose
            return
        seen = self._marks[max(self._marks)] if self._marks else _NEVER
        # A save of this thread that a signal handler interrupted may have renamed its file (ctime aside).
        if on_disk == seen or any(_same_but_ctime(on_disk, other) for _, other in list(self._inflight.values())):
            return
        if seen == _NEVER:
            raise ConflictError(self.location, "exists and this PickleDB never loaded it")
        raise ConflictError(self.location, "was changed on disk since this PickleDB last loaded or saved it")

    def _refuse_strings_too_long(self) -> None:
        """Refuse a key or top-level str value too long to load back, before orjson (which may crash on it) sees it."""
        limit = _MAX_FILE_BYTES
        if not _held_more_than(limit):  # such a string needs that much memory: below that, nothing is scanned
            return
        strings = filter(str.__instancecheck__, list(self._data.values()))  # copied first: only C code runs over it
        if max(map(len, self._data), default=0) <= limit and max(map(len, strings), default=0) <= limit:
            return
        for key, value in list(self._data.items()):  # only when one is too long: find it
            if len(key) > limit:
                raise self._too_large(f"key {_short(key[:80])} is {len(key)} characters long, so the file would be")
            if isinstance(value, str) and len(value) > limit:
                what = f"key {_short(key[:80])} holds a string of {len(value)} characters"
                raise self._too_large(f"{what}, so the file would be")

    def _too_large(self, what: str) -> ValueError:
        return ValueError(
            f"cannot save {self.location}: {what} more than the {_MAX_FILE_BYTES} bytes orjson can load "
            "back; the file was not changed. Keep data this large in PickleDBSQLite, which stores one row per key"
        )

    def _encode(self) -> bytes:
        try:
            return orjson.dumps(self._data, option=self._option)
        except orjson.JSONEncodeError as err:
            whole = err
        for key, value in list(self._data.items()):  # only on failure: find the culprit
            for part, what in ((key, "cannot be stored as JSON text"), ([value], "holds a value JSON cannot store")):
                try:
                    orjson.dumps(part)
                except orjson.JSONEncodeError as err:
                    if "ecursion limit" in str(err):
                        what = f"holds a value nested too deeply (orjson writes at most {_MAX_DEPTH_WRITE} levels)"
                    raise TypeError(
                        f"cannot save {self.location}: key {_short(key)} {what} ({err}); the file was not changed"
                    ) from None
        raise TypeError(f"cannot save {self.location}: {whole}; the file was not changed")

    # -- in-memory operations: done at call time in both worlds --
    # set() and get() test their caller inline: calling _in_memory() would double their cost.

    @_both
    def set(self, key: Any, value: Any) -> bool:
        """Store value under str(key) in memory; return True. Awaitable in async code."""
        self._data[str(key)] = value
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _set_done(True)
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value stored under str(key), or default. Awaitable in async code."""
        value = self._reads.get(str(key), default)
        if (code := _getframe(1).f_code) is not _sync_code and (code is _async_code or _async_caller()):
            return _get_done(value)
        return value

    @_both
    def remove(self, key: Any) -> bool:
        """Delete str(key); return True if it existed. Awaitable in async code."""
        return _in_memory(self, self._data.pop(str(key), MISSING) is not MISSING)

    @_both
    def all(self, prefix: str | None = None) -> list[str]:
        """Return the keys starting with prefix (all when None), in insertion order. Awaitable in async code."""
        prefix = _check_prefix(prefix)
        return _in_memory(self, [k for k in self._reads if k.startswith(prefix)] if prefix else list(self._reads))

    def _first_read(self, warn: bool = True) -> dict[str, Any]:
        """Point reads at _data; warn once if the file holds data never loaded nor saved here. Return _data."""
        with self._lock:  # a load() in another thread is not undone
            data = self._data
            first, self._reads = self._reads is not data, data
        if warn and first and not self._marks:
            with contextlib.suppress(OSError):
                info = os.stat(self.location)
                if stat.S_ISREG(info.st_mode) and info.st_size:
                    warnings.warn(
                        f"{self.location} is not empty, but this PickleDB never loaded it: reads see only what was "
                        "set in memory. Call load() before reading (or open it with `with PickleDB(...) as db:`)",
                        RuntimeWarning,
                        stacklevel=5,  # the caller of get(), all(), ... (through _Unread)
                    )
        return data

    @_both
    def purge(self) -> bool:
        """Delete every key in memory; return True. Awaitable in async code."""
        self._data.clear()
        return _in_memory(self, True)

    @_both
    def set_many(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> bool:
        """Store every (key, value) pair in memory, all or (if reading `items` fails) none; return True.

        An item that is not a pair raises ValueError naming its position. Awaitable in async code.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        taken = itertools.count()  # counts the items read, in C: nothing to pay when all is well
        try:
            new = {str(key): value for _, (key, value) in zip(taken, pairs, strict=False)}
        except (TypeError, ValueError) as err:
            if "unpack" not in str(err):
                raise
            raise _not_a_pair(next(taken) - 1, err) from None
        self._data.update(new)
        return _in_memory(self, True)

    def count(self, prefix: str | None = None) -> int:
        """Return the number of keys that start with prefix (of all keys when None). Awaitable in async code."""
        prefix = _check_prefix(prefix)
        return _in_memory(self, len(self._reads) if not prefix else sum(k.startswith(prefix) for k in self._reads))

    def items(self, prefix: str | None = None) -> Any:
        """Return an iterator of the (key, value) pairs whose key starts with prefix (all when None).

        It walks a copy of the pairs taken at the call, so writes during the walk are allowed. In async code it is an
        async iterator: `async for k, v in db.items()`.
        """
        if prefix := _check_prefix(prefix):
            return _Walk(self, prefix, [pair for pair in self._reads.items() if pair[0].startswith(prefix)])
        return _Walk(self, prefix, self._reads.copy().items())

    @_both
    def add(self, key: Any, value: Any) -> bool:
        """Store value under str(key) only if that key is missing; return True if it did. Awaitable in async code."""
        key = str(key)
        with self._lock:
            if added := key not in self._reads:
                self._data[key] = value
        return _in_memory(self, added)

    def update(self, key: Any, fn: Callable[[Any], Any], default: Any = MISSING) -> Any:
        """Store fn(old value) under str(key) in memory, atomically for this process's threads; return it.

        A missing key passes `default` to fn (none: KeyError); if fn raises, nothing is stored. Awaitable in async code.
        """
        key = str(key)
        with self._lock:
            if (old := self._reads.get(key, default)) is MISSING:
                raise KeyError(key)
            self._data[key] = new = fn(old)
        return _in_memory(self, new)

    def incr(self, key: Any, by: int | float = 1) -> Any:
        """Add `by` to the number under str(key) (a missing key counts as 0) atomically; return the new number.

        Both must be an int or a float (not a bool), else TypeError; a result outside the signed 64-bit range raises
        OverflowError; either way nothing changes. Awaitable in async code.
        """
        key = str(key)
        with self._lock:
            self._data[key] = new = _added(key, self._reads.get(key, 0), by)
        return _in_memory(self, new)

    def transact(self, fn: Callable[[PickleDB], Any], *, timeout: float = 30.0) -> Any:
        """Load the file, call fn(self), and save; on ConflictError do it all again. Return fn's result.

        For one file that several processes change: memory is first replaced by the file's data, so fn sees (and
        changes) what is on disk. It tries until a save succeeds or `timeout` seconds have passed, then raises the last
        ConflictError. fn may be called more than once. Awaitable in async code (fn stays a plain function).
        """
        deadline = _monotonic() + timeout
        if _async_caller():
            return _named_for_caller(PickleDB._transact_async, self, 1)(self, fn, deadline)
        while True:
            self.load()
            result = fn(self)
            try:
                return self.save() and result
            except ConflictError:
                if _monotonic() >= deadline:
                    raise

    async def _transact_async(self, fn: Callable[[PickleDB], Any], deadline: float) -> Any:
        while True:
            await self.load()
            result = fn(self)
            try:
                return await self.save() and result
            except ConflictError:
                if _monotonic() >= deadline:
                    raise

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


def _in_memory(db: PickleDB, value: _T) -> _T:
    """What an in-memory operation returns: `value`, or a coroutine of it when its caller is async code."""
    if _async_caller(3):
        return cast(_T, _named_for_caller(_ready, db, 2)(value))
    return value


class _Unread(weakref.ref["PickleDB"]):  # weak: an instance never read is freed as soon as it is dropped
    """What a PickleDB's reads look in until the first one has run PickleDB._first_read."""

    __slots__ = ()

    def _data(self) -> dict[str, Any]:
        db = self()
        assert db is not None  # only a live PickleDB reads through this
        return db._first_read()

    def __getattr__(self, name: str) -> Any:  # get, items, ...
        return getattr(self._data(), name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())


# --- the shared store core -------------------------------------------------
#
# PickleDBStore writes every operation of the server-backed stores once; a
# backend adds its statements and its connections (see the module docstring).


def _encode_value(key: str, value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as err:
        raise TypeError(f"cannot store key {_short(key)}: its value is not JSON-serializable ({err})") from None


def _decode_value(where: object, key: str, raw: bytes) -> Any:
    """Return the value stored as `raw`; a value that is not JSON raises ValueError naming `where` and the key."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"{where}: the value of key {_short(key)} is not valid JSON ({err})") from None


def _found(where: object, key: str, raw: bytes | None, default: Any) -> Any:
    """What get() returns: the value stored as `raw`, or for a missing key (None) default, or KeyError."""
    if raw is not None:
        return _decode_value(where, key, raw)
    if default is MISSING:
        raise KeyError(key)
    return default


def _text_key(key: Any) -> str:
    """str(key), refused with TypeError naming it when it is not valid Unicode text (a lone surrogate)."""
    text = str(key)
    try:
        text.encode()
    except UnicodeEncodeError as err:
        raise TypeError(f"cannot store key {_short(text)}: it is not valid Unicode text ({err.reason})") from None
    return text


def _store_key(key: Any) -> str:
    """The key a value is stored under: a new uuid4 for None, else str(key), checked as text."""
    return str(uuid.uuid4()) if key is None else _text_key(key)


def _encoded_pairs(items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> list[tuple[str, bytes]]:
    """Every (key, value) pair as (stored key, encoded value); a bad one raises before anything is written.

    The first bad pair is the one reported. Keys that are already str are
    checked as text together, once all are encoded: one check instead of
    one per key.
    """
    pairs = items.items() if isinstance(items, Mapping) else items
    rows: list[tuple[str, bytes]] = []
    append, dumps = rows.append, orjson.dumps
    key = value = None
    try:
        for item in pairs:
            try:
                key, value = item
            except (TypeError, ValueError) as err:
                raise _not_a_pair(len(rows), err) from None
            name = key if type(key) is str else _store_key(key)
            append((name, dumps(value).decode().encode()))  # a small copy: orjson's buffers, kept, cost 3 µs each
    except Exception as err:
        _check_texts(rows)  # a bad key before this pair is the first problem
        if isinstance(err, orjson.JSONEncodeError):  # TypeError: from the key or the value of this pair
            _encode_value(_text_key(key), value)  # raises TypeError naming the key
        raise
    _check_texts(rows)
    return rows


def _check_texts(rows: list[tuple[str, bytes]]) -> None:
    """Raise _text_key's TypeError for the first key of `rows` that is not valid Unicode text."""
    try:
        "".join([row[0] for row in rows]).encode()
    except UnicodeEncodeError:
        for row in rows:
            _text_key(row[0])


def _settle(future: Any, result: Any, error: BaseException | None) -> None:
    """Complete an asyncio future on its loop unless its caller gave up; a `result` that is an exception is raised."""
    if not future.done():
        if error is None and not isinstance(result, BaseException):
            future.set_result(result)
        else:
            future.set_exception(error or result)


def _call_in_loop(loop: Any, fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(fn, *args)


# Every store alive that must reset itself in a forked child (its _after_fork()).
_FORK_AWARE = cast(Any, None)


def _reset_in_child() -> None:
    for db in list(_FORK_AWARE or ()):
        db._after_fork()


def _fork_aware(db: Any) -> None:
    """Have a forked child call db._after_fork() while db is alive."""
    global _FORK_AWARE
    if _FORK_AWARE is None:
        _FORK_AWARE = weakref.WeakSet()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_in_child)
    _FORK_AWARE.add(db)


# The pages items() reads at a time from a server-backed store.
_PAGE_SIZE = 1000
# orjson writes integers in the signed and unsigned 64-bit ranges; incr() keeps to the signed one.
_INT64 = 2**63


def _number(key: str, what: str, number: Any) -> None:
    """Refuse with TypeError naming `key` a `number` (for incr()) that is not an int or a float."""
    if type(number) is not int and type(number) is not float:
        raise TypeError(f"cannot incr key {_short(key)}: {what} is a {type(number).__name__}, not an int or float")


def _added(key: str, old: Any, by: Any) -> int | float:
    """old + by, for incr(); TypeError or OverflowError naming `key` when that is no storable number."""
    if type(old) is type(by) is int and -_INT64 <= old + by < _INT64:  # the common case, at once
        return old + by
    _number(key, "its value", old)
    _number(key, "the increment", by)
    new: int | float = old + by
    if not (-_INT64 <= new < _INT64 if type(new) is int else math.isfinite(new)):
        raise OverflowError(f"cannot incr key {_short(key)}: {old!r} + {by!r} is outside the 64-bit range")
    return new


def _prefix_end(prefix: str) -> str | None:
    """The least str above every str that starts with `prefix` (code point order); None if there is none."""
    while prefix and prefix[-1] == "\U0010ffff":
        prefix = prefix[:-1]
    if not prefix:
        return None
    last = ord(prefix[-1]) + 1
    return prefix[:-1] + chr(0xE000 if 0xD800 <= last < 0xE000 else last)


def _check_table_name(name: Any) -> None:
    """Refuse a table name that is not a str (TypeError) or not letters, digits and underscores (ValueError)."""
    if not isinstance(name, str):
        raise TypeError(f"Invalid table name {name!r}: table_name must be a str, not {type(name).__name__}")
    if not (name.isascii() and name.isidentifier()) or name.lower().startswith("sqlite_"):
        raise ValueError(
            f"Invalid table name {name!r}: table_name must be letters, digits and underscores, "
            "starting with a letter or underscore (and not 'sqlite_')"
        )


def _exhausted(store: PickleDBStore, size: int) -> TimeoutError:
    """The error of a call that got none of the `size` connections of `store`'s pool within its timeout."""
    return TimeoutError(
        f"{store!r}: all {size} connections stayed busy for {store._timeout:g} s (the pool is exhausted, "
        "the server may be fine); raise max_connections or timeout, or make fewer calls at once"
    )


async def _take_slot(slots: asyncio.Semaphore, store: PickleDBStore, size: int, seconds: float) -> None:
    """Take one of an event loop's `size` connection `slots` within `seconds` (else _exhausted's TimeoutError)."""
    taken = slots.acquire()  # wait_for makes a task: only when every slot is taken
    try:
        await (asyncio.wait_for(taken, seconds) if slots.locked() else taken)
    except asyncio.TimeoutError:
        raise _exhausted(store, size) from None


def _other_table(location: str, table: str, found: str, wanted: str) -> ValueError:
    """The error for a table that exists with the columns `found`, not `wanted`; nothing was changed."""
    return ValueError(
        f"{location}: table {table!r} is not a pickledb table: its columns are ({found}), not ({wanted}). "
        "Nothing was changed; pass another table_name"
    )


def _key_range(prefix: str | None, after: str | None, mark: str) -> tuple[str, list[str]]:
    """(" WHERE ..." or "", its parameters): the keys that start with prefix and sort after `after`, as a range of
    the primary key, which lets the database read only those keys; `mark` is its parameter marker."""
    bounds = [("key >= ", prefix or None if after is None else None), ("key > ", after)]
    bounds.append(("key < ", _prefix_end(prefix) if prefix else None))
    used = [(test + mark, value) for test, value in bounds if value is not None]
    return (" WHERE " + " AND ".join(test for test, _ in used) if used else ""), [value for _, value in used]


# An operation of an SQL store (SQLite, PostgreSQL) is (kind, sql, params). Reads: _ROW one key's value by primary
# key (see _Worker.read), _KEYS a column, _ONE a number, _PAGE a page's pairs. Writes: _COUNT a statement (its row
# count), _MANY a statement over many rows, _FN (SQLite) a function of the connection, in the write's transaction.
_ROW, _KEYS, _ONE, _PAGE, _COUNT, _MANY, _FN = range(7)


def _range_reads(table: str, mark: str, value: str, no_nul: bool = False) -> tuple[Any, Any, Any]:
    """The keys, count and page operations of an SQL store, each a read of a range of the primary key of `table`
    (`mark`: its parameter marker; `value`: how the value column is read; no_nul: a prefix with a NUL matches nothing,
    as PostgreSQL text holds no NUL and psycopg could not send one)."""

    def select(kind: int, what: str, prefix: str | None, after: str | None, tail: str, *more: Any) -> Any:
        where, params = (" WHERE false", []) if no_nul and "\x00" in (prefix or "") else _key_range(prefix, after, mark)
        return kind, f"SELECT {what} FROM {table}{where}{tail}", (*params, *more)

    return (
        lambda prefix: select(_KEYS, "key", prefix, None, " ORDER BY key"),
        lambda prefix: select(_ONE, "count(*)", prefix, None, ""),
        lambda prefix, after, n: select(_PAGE, f"key, {value}", prefix, after, f" ORDER BY key LIMIT {mark}", n),
    )


def _check_prefix(prefix: Any) -> str | None:
    if prefix is None or type(prefix) is str:
        return prefix
    raise TypeError(f"prefix must be a str or None, not {type(prefix).__name__}")


class PickleDBStore:
    """What the server-backed stores (PickleDBSQLite, PickleDBRedis, ...) share: every operation, written once.

    A backend subclass sets `location`, `_timeout`, `_lock`, `_closed` (a table store `table_name`, one using _shut
    below `_closing = []`) in its __init__, and provides only its statements and connections: the attributes below.
    """

    location: str
    table_name: str
    _timeout: float
    _lock: Any  # guards the connections of sync calls
    _closing: list[tuple[Any, Any, Any, concurrent.futures.Future[None]]]  # (loop, drop, its task or None, done)
    _closed = True  # until a subclass's __init__ has run

    # What a backend provides. Each _op_* returns an operation, an object of
    # its own that its _execute runs in this thread and its _execute_async in
    # the caller's event loop; the comments give what running it returns.
    _op_set: Callable[[str, bytes], Any]  # the key and its encoded value: anything
    _op_get: Callable[[str], Any]  # the encoded value, or None
    _op_remove: Callable[[str], Any]  # true if the key existed
    _op_keys: Callable[[str | None], Any]  # the keys that start with a prefix (all for None), sorted
    _op_count: Callable[[str | None], Any]  # their number
    _op_page: Callable[[str | None, Any, int], Any]  # (up to n (key, encoded value) pairs, where to go on or None)
    _op_purge: Callable[[], Any]  # anything
    _op_set_many: Callable[[list[tuple[str, bytes]]], Any]  # every pair stored at once, or none: anything
    _op_add: Callable[[str, bytes], Any]  # true if it stored the value (the key was missing)
    _op_update: Callable[[str, Callable[[bytes | None], tuple[bytes, Any]]], Any]  # stores change(old)[0] atomically;
    #                                                     gives change(old)[1]; change may raise, then nothing is stored
    _execute: Callable[[Any], Any]
    _execute_async: Callable[[Any], Awaitable[Any]]
    # A backend with an asyncio client or pool per event loop (closed by _close_at_loop_end) uses _shut below and
    # provides _detach and _drop; another provides _shut: (running loop or None, leaked=False) -> see close().
    _detach: Callable[[Any, bool], dict[Any, tuple[Any, Any]]]  # (guard, leaked): close the sync calls' connections
    #                                         under `guard`; forget and return {event loop: (its client, its closer)}
    _leaked: Callable[[], bool]  # whether anything is open (for __del__)

    # -- the operations --

    @_both
    def set(self, key: Any, value: Any) -> str:
        """Store value under key (a new uuid4 key when None); return the key. Awaitable in async code."""
        name = _store_key(key)
        return self._run(self._op_set(name, _encode_value(name, value)), lambda _: name)

    def get(self, key: Any, default: Any = MISSING) -> Any:
        """Return the value under key; without a default a missing key raises KeyError.

        Awaitable in async code.
        """
        key = _text_key(key)
        return self._run(self._op_get(key), lambda raw: _found(self.location, key, raw, default))

    @_both
    def remove(self, key: Any) -> bool:
        """Delete key; return True if it existed. Awaitable in async code."""
        return self._run(self._op_remove(_text_key(key)), bool)

    @_both
    def all(self, prefix: str | None = None) -> list[str]:
        """Return every key that starts with prefix (every key when None), sorted. Awaitable in async code."""
        return self._run(self._op_keys(_check_prefix(prefix)), list)

    def count(self, prefix: str | None = None) -> int:
        """Return the number of keys that start with prefix (of all keys when None). Awaitable in async code."""
        return self._run(self._op_count(_check_prefix(prefix)), int)

    @_both
    def purge(self) -> bool:
        """Delete every key of this store; return True. Awaitable in async code."""
        return self._run(self._op_purge(), lambda _: True)

    @_both
    def set_many(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]]) -> list[str]:
        """Store every (key, value) pair in one transaction, all or nothing; return the keys.

        All values are encoded before anything is written. A None key gets a
        new uuid4 key. Awaitable in async code.
        """
        rows = _encoded_pairs(items)
        return self._run(self._op_set_many(rows) if rows else None, lambda _: [row[0] for row in rows])

    @_both
    def add(self, key: Any, value: Any) -> bool:
        """Store value under key only if the key is missing; return True if it stored it.

        An existing key keeps its value (and the call returns False).
        Awaitable in async code.
        """
        name = _text_key(key)
        return self._run(self._op_add(name, _encode_value(name, value)), bool)

    def update(self, key: Any, fn: Callable[[Any], Any], default: Any = MISSING) -> Any:
        """Atomically store fn(old value) under key; return the new value.

        A missing key passes `default` to fn, or without one raises KeyError.
        If fn raises, or returns a value that cannot be stored, nothing is
        stored and the error propagates. fn may be called more than once (it
        is called again after a concurrent change) and in another thread: keep
        it a plain function of its argument. Awaitable in async code.
        """
        key = _text_key(key)

        def change(raw: bytes | None) -> tuple[bytes, Any]:
            if raw is None and default is MISSING:
                raise KeyError(key)
            new = fn(default if raw is None else _decode_value(self.location, key, raw))
            return _encode_value(key, new), new

        return self._run(self._op_update(key, change), lambda new: new)

    def incr(self, key: Any, by: int | float = 1) -> Any:
        """Atomically add `by` to the number under key (a missing key counts as 0); return the new number.

        Both must be an int or a float (not a bool), else TypeError; int + int
        stays an int, and a result outside the signed 64-bit range raises
        OverflowError; either way nothing changes. Awaitable in async code.
        """
        key = _text_key(key)
        _number(key, "the increment", by)
        return self._run(self._op_incr(key, by), lambda new: new)

    def items(self, prefix: str | None = None) -> Any:
        """Return an iterator of the (key, value) pairs whose key starts with prefix (all when None).

        It reads a page of pairs at a time, so memory holds one page, not the
        store, and nothing stays open between pages. Writes during the walk
        are allowed: a key present and unchanged for the whole walk comes once
        (on Redis at least once, and in no particular order; elsewhere in key
        order). In async code it is an async iterator: `async for k, v in db.items()`.
        """
        return _Walk(self._checked(self), _check_prefix(prefix))

    def _op_incr(self, key: str, by: int | float) -> Any:
        """incr's operation: an update (a backend with an atomic increment of its own overrides this)."""

        def change(raw: bytes | None) -> tuple[bytes, Any]:
            new = _added(key, 0 if raw is None else _decode_value(self.location, key, raw), by)
            return orjson.dumps(new), new

        return self._op_update(key, change)

    # -- running an operation: in this thread, or as a coroutine for async code --

    def _run(self, op: Any, finish: Callable[[Any], _T]) -> _T:
        """Return finish(the result of op); in async code, a coroutine of it named after the public method."""
        if self._closed:
            raise self._closed_error()
        if _async_caller(3):
            return cast(_T, _named_for_caller(PickleDBStore._run_async, self)(self, op, finish))
        return finish(None if op is None else self._execute(op))

    async def _run_async(self, op: Any, finish: Callable[[Any], Any]) -> Any:
        return finish(None if op is None else await self._execute_async(op))

    def _checked(self, op: _T) -> _T:
        if self._closed:
            raise self._closed_error()
        return op

    def _closed_error(self) -> ValueError:
        return ValueError(f"{self!r} is closed; create a new instance to use the store again")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, {self.table_name!r})"  # Redis: its hash_name

    # -- closing --

    def close(self) -> Any:
        """Close every connection this instance opened; return None. Calling it again waits for the first close.

        Everything is handed over to be closed at call time, so a close() that
        is cancelled or never awaited still closes it all. Later calls raise
        ValueError("... is closed"). Awaitable in async code: it waits until
        each connection is closed.
        """
        if _async_caller():
            return _named_for_caller(_wait_all, self, 1)(self._shut(asyncio.get_running_loop()))
        concurrent.futures.wait(self._shut(None), self._timeout)
        return None

    def _shut(self, here: Any, leaked: bool = False) -> list[concurrent.futures.Future[None]]:
        """Close the sync connections and start closing each loop's client (a task on the running loop, a thread for
        another); return a future per client still closing, earlier closes' too (in sync code: not the running loop's).
        """
        self._closed = True
        guard = contextlib.nullcontext() if leaked else self._lock  # __del__ may run while the lock is held
        fresh: list[tuple[Any, Any, Any, concurrent.futures.Future[None]]] = []
        running: Any = None
        with contextlib.suppress(RuntimeError):
            running = asyncio.get_running_loop()
        for loop, (client, closer) in self._detach(guard, leaked).items():
            drop = functools.partial(self._drop, client)
            if loop.is_closed():  # it ended without shutdown_asyncgens(): nothing closed the client
                drop()
            elif not leaked:  # (a leaked client of a loop that goes on closes with it)
                task, done = None, concurrent.futures.Future[None]()
                if loop is running:
                    task = loop.create_task(closer.aclose())
                    task.add_done_callback(functools.partial(_closed_task, drop, done))
                elif loop.is_running():  # in another thread
                    _in_thread(done, _close_elsewhere, loop, closer, self._timeout, drop)
                else:  # an idle loop, still open: run it for this one task
                    _in_thread(done, loop.run_until_complete, closer.aclose())
                fresh.append((loop, drop, task, done))
        with guard:
            self._closing = [entry for entry in self._closing if not entry[3].done()] + fresh
        for loop, drop, task, done in self._closing:
            if here is None and task is not None and not loop.is_running():  # an earlier close's task, not yet run
                if loop.is_closed():
                    _closed_task(drop, done, task)
                else:  # on a loop that stopped: run it for that task
                    _in_thread(concurrent.futures.Future(), loop.run_until_complete, asyncio.wait([task]))
        return [done for loop, _, _, done in self._closing if here is not None or loop is not running]

    @staticmethod
    def _drop(client: Any) -> None:
        """Close what an asyncio client holds when its loop cannot run its closer; by default nothing can be."""

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self._leaked():
            warnings.warn(f"unclosed {self!r}; call close() or use 'with'", ResourceWarning, stacklevel=2)
            self._shut(None, leaked=True)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.close()


class _Walk:
    """What items() returns: an iterator in plain code and an async iterator in async code, a page at a time."""

    __slots__ = ("store", "prefix", "position", "pairs")

    def __init__(self, store: Any, prefix: str | None, pairs: Iterable[tuple[str, Any]] | None = None) -> None:
        self.store, self.prefix = store, prefix
        self.position: Any = _Walk if pairs is not None else None  # _Walk: no page left to read
        self.pairs = iter(pairs or ())

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self.pairs if self.position is _Walk else self  # all pairs in hand: their own (C) iterator

    def __aiter__(self) -> _Walk:
        return self

    def __next__(self) -> tuple[str, Any]:
        while (pair := next(self.pairs, None)) is None:
            op = self._next_op(StopIteration)
            self._turn(self.store._execute(op))
        return pair

    async def __anext__(self) -> tuple[str, Any]:
        while (pair := next(self.pairs, None)) is None:
            op = self._next_op(StopAsyncIteration)
            self._turn(await self.store._execute_async(op))
        return pair

    def _next_op(self, stop: type[Exception]) -> Any:
        if self.position is _Walk:
            raise stop
        return self.store._checked(self.store._op_page(self.prefix, self.position, _PAGE_SIZE))

    def _turn(self, page: tuple[list[tuple[str, bytes]], Any]) -> None:
        rows, position = page
        self.position = _Walk if position is None else position
        location = self.store.location
        self.pairs = ((key, _decode_value(location, key, raw)) for key, raw in rows)


async def _close_at_loop_end(close: Callable[[], Awaitable[Any]]) -> Any:
    """Await close() when this async generator is closed. Started once on the loop that owns a backend's asyncio
    client or pool: asyncio.run() and loop.shutdown_asyncgens() close it while that loop still runs."""
    try:
        yield
    finally:
        await close()


async def _wait_all(futures: list[concurrent.futures.Future[Any]]) -> None:
    """Wait for every one of `futures` (set in other threads); the first failure is raised. A cancelled wait leaves
    them be: the closing goes on."""
    for future in futures:
        await asyncio.shield(asyncio.wrap_future(future))


def _advance(op: Generator[Any, Any, Any], reply: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Give `op` the reply (or error) of its last step; return (True, its next step) or (False, its result)."""
    try:
        return True, (op.send(reply) if error is None else op.throw(error))
    except StopIteration as done:
        return False, done.value


def _driven(op: Generator[Any, Any, Any], step: Callable[[Any], tuple[Any, BaseException | None]] | None = None) -> Any:
    """Run `op`, sending it the outcome of step(each step it yields), (reply, None) or (None, error), or without
    `step` the step itself; return its result."""
    more, value = _advance(op, None, None)
    while more:
        more, value = _advance(op, *(step(value) if step else (value, None)))
    return value


async def _driven_async(op: Generator[Any, Any, Any], step: Callable[[Any], Awaitable[Any]] | None = None) -> Any:
    """_driven() with a `step` that is awaited; without one, each step is an awaitable (or None) awaited itself."""
    more, value = _advance(op, None, None)
    while more:
        try:
            outcome = await step(value) if step else ((None if value is None else await value), None)
        except BaseException as err:  # cancelled too: op can let go of what it holds, then raise it
            outcome = None, err
        more, value = _advance(op, *outcome)
    return value


def _in_thread(done: concurrent.futures.Future[Any], fn: Callable[..., Any], *args: Any) -> None:
    """Run fn(*args) in a new daemon thread, and give its outcome to `done`."""

    def run() -> None:
        try:
            done.set_result(fn(*args))
        except BaseException as err:  # handed to whoever waits for it
            done.set_exception(err)

    threading.Thread(target=run, name="pickledb-close", daemon=True).start()


def _close_elsewhere(loop: Any, closer: Any, timeout: float, drop: Callable[[], None]) -> None:
    """Close with `closer`, from a thread of its own, on its loop running in another thread."""
    future, deadline = asyncio.run_coroutine_threadsafe(closer.aclose(), loop), _monotonic() + timeout
    while not future.done() and not loop.is_closed() and _monotonic() < deadline:
        concurrent.futures.wait([future], 0.05)
    future.cancel()  # a close not finished by the deadline is cancelled
    if loop.is_closed():  # it ended, maybe before it ran the close
        drop()


def _closed_task(drop: Callable[[], None], done: concurrent.futures.Future[None], task: Any) -> None:
    """Set `done` for a closing task; if it did not finish its work (or never will), drop() what it was closing."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        drop()
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # two close() calls may both get here
        done.set_result(None)


# --- PickleDBSQLite ---------------------------------------------------------

_WAL_LIMIT = 4 * 1024 * 1024  # SQLite cuts a -wal file back to this size as it starts it over (no reader holds it)


def _sqlite3() -> Any:
    """The sqlite3 module, imported on first use: `import pickledb` does without it, as some Python builds do."""
    import sqlite3

    return sqlite3


def _shaped(kind: int, params: Any, rows: list[Any]) -> Any:
    """The result of a read of `kind` that returned `rows`."""
    if kind in (_ROW, _ONE):
        return rows[0][0] if rows else None
    if kind == _KEYS:
        return [row[0] for row in rows]
    return rows, (rows[-1][0] if len(rows) == params[-1] else None)  # _PAGE: the pairs, and the last key


def _set_wal(conn: Any, timeout: float) -> None:
    """Put the database in WAL mode (once per file), retrying while another connection does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except _sqlite3().OperationalError as err:
            # Two connections switching a new file to WAL at once: SQLite answers "locked" at once, so wait here.
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class _Write:
    """One write call waiting for its group: (kind, sql, params) and, once `done`, its outcome (result or error)."""

    __slots__ = ("kind", "sql", "params", "waiter", "done", "outcome")

    def __init__(self, kind: int, sql: Any, params: Any, waiter: Any) -> None:
        self.kind, self.sql, self.params = kind, sql, params
        self.waiter = waiter  # an async call's future; a sync call's lock, held until the call has to look again
        self.done = False
        self.outcome: Any = None

    def wake(self) -> None:
        """Let a sync caller waiting on its lock look again (the caller holds the group mutex)."""
        if self.waiter.locked():
            self.waiter.release()


def _commit_group(conn: Any, group: list[_Write], reached: list[bool], check: Callable[[], None]) -> None:
    """Run `group` as one transaction on `conn`, setting each write's outcome to its result.

    A write that fails on its own (too big, a constraint, an update's function) is undone, its exception its outcome.
    `check()` runs before COMMIT; on an exception the group is rolled back and `reached[0]` tells if COMMIT was sent.
    """
    try:
        if len(group) == 1 and group[0].kind == _COUNT:  # alone: one autocommit statement
            check()
            reached[0] = True
            group[0].outcome = conn.execute(group[0].sql, group[0].params).rowcount
            return
        conn.execute("BEGIN IMMEDIATE")
        for write in group:
            steps = write.kind == _MANY  # a failed statement undoes its own changes, and an update writes once
            try:
                if steps:
                    conn.execute("SAVEPOINT w")
                run = conn.executemany if steps else conn.execute
                result = write.sql(conn) if write.kind == _FN else run(write.sql, write.params).rowcount
                if steps:
                    conn.execute("RELEASE w")
            except Exception as err:
                # An update's function may raise anything; otherwise not an exception of a signal handler.
                failed = write.kind == _FN or isinstance(err, (_sqlite3().Error, OverflowError))
                if not failed or not conn.in_transaction:  # SQLite ended the transaction: the group failed
                    raise
                if steps:
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                result = err
            write.outcome = result
        check()
        reached[0] = True
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            reached[0] = False
            with contextlib.suppress(Exception):  # the connection is unusable; the first error is the one to report
                conn.execute("ROLLBACK")
        raise


def _same_file(path: str, file_id: tuple[int, int]) -> None:
    """Raise FileNotFoundError naming `path` unless it still names the file (device, inode) `file_id`."""
    try:
        info = os.stat(path)
        if (info.st_dev, info.st_ino) == file_id:
            return
        problem = "was replaced by another file"
    except FileNotFoundError:
        problem = "was deleted"
    message = f"{path} {problem} while this store had it open, so nothing is read or written; open it again"
    raise FileNotFoundError(errno.ENOENT, message, path)


# Objects inherited through fork() that must never be finalized in the child (a type comment: help() shows no name).
_ABANDONED = []  # type: list[Any]


def _abandon(obj: Any) -> None:
    """Keep what a forked child inherited alive forever: closing it would harm the parent (SQLite: delete the WAL)."""
    _ABANDONED.append(obj)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


def _hold_shared_lock(path: str) -> None:
    """Hold a read lock on a byte of SQLite's SHARED range of `path` until this process exits."""
    # A forked child's new connections take no OS lock (SQLite counts the abandoned ones), so another process's last
    # close would delete the WAL under them; this lock makes it see this one. Closing it would drop SQLite's locks.
    if fcntl is None:  # pragma: no cover - fork() is POSIX
        return
    fd = os.open(path, os.O_RDONLY)
    fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0x40000000 + 2, os.SEEK_SET)  # PENDING_BYTE + 2: SHARED_FIRST
    _ABANDONED.append(fd)


class _Worker:
    """A thread owning one SQLite connection for one event loop: it runs (deliver, function) jobs in order."""

    def __init__(self, loop: Any, connect: Callable[[], Any]) -> None:
        self.loop = loop
        self.conn: Any = None
        self.reader: Any = None  # the loop's connection for point reads
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()  # guards `stopped`
        self.read_lock = threading.Lock()  # guards `reader`: a signal handler's close() may stop() during a read
        self.stopped: BaseException | None = None  # raised to anyone who submits after stop()
        self.closed: concurrent.futures.Future[None] = concurrent.futures.Future()  # set once the thread ends
        self.pending: list[_Write] = []  # the writes for the next group (on the loop, as `busy`)
        self.busy = False  # a group is running
        self._connect = connect  # returns (conn, reader, check): check() raises if the file is no longer at its path
        self.thread = threading.Thread(target=self._main, name="pickledb-sqlite", daemon=True)
        self.thread.start()

    def submit(self, deliver: Callable[[Any, BaseException | None], None], function: Callable[[Any], Any]) -> None:
        """Queue a job, which runs whole: the thread calls function(conn), then the loop deliver(result, error)."""
        with self.lock:
            if self.stopped is not None:
                raise self.stopped
            self.jobs.put((deliver, function))

    def write(self, *writes: _Write) -> None:
        """Queue `writes`, and send the queued ones to the thread as one group unless one is running (on the loop)."""
        self.pending.extend(writes)
        if self.busy or not self.pending:
            return
        group, self.pending, self.busy = self.pending, [], True
        try:
            self.submit(
                functools.partial(self.group_done, group),
                lambda conn: _commit_group(conn, group, [False], self.check),
            )
        except BaseException as err:
            self.group_done(group, None, err)

    def group_done(self, group: list[_Write], _: None, error: BaseException | None) -> None:
        self.busy = False
        for write in group:
            _settle(write.waiter, write.outcome, error)
        self.write()

    def read(self, sql: str, params: Any) -> Any:
        """Run a point read on the loop thread and return its rows; None if it must go to the thread."""
        # Cheaper than a round trip; the reader never waits (busy timeout 0): what it cannot answer goes to the thread.
        with self.read_lock:
            if self.reader is None:
                return None
            try:
                return self.reader.execute(sql, params).fetchall()
            except _sqlite3().Error:
                return None

    def stop(self, error: BaseException) -> None:
        """Refuse new jobs with `error`; the thread closes the connection after the queued ones."""
        with self.lock:
            if self.stopped is None:
                self.stopped = error
                self.jobs.put(None)

    def _main(self) -> None:
        try:
            self.conn, self.reader, self.check = self._connect()
        except BaseException as err:  # every queued and later call gets this error
            self.stop(err)
        del self._connect  # it holds the store
        while True:
            try:
                item = self.jobs.get(timeout=1.0)
            except queue.Empty:
                if self.loop.is_closed():  # nothing more can come: close the connections and end
                    self.stop(RuntimeError(f"{self.loop!r} is closed"))
                continue
            if item is None:
                break
            deliver, function = item
            result, error = None, self.stopped
            if self.conn is not None:
                try:
                    result, error = function(self.conn), None
                except BaseException as err:
                    error = err
            _call_in_loop(self.loop, deliver, result, error)
            del item, deliver, function, result, error
        with self.read_lock:
            reader, self.reader = self.reader, None
        for conn in (reader, self.conn):
            if conn is not None:
                conn.close()
        self.conn = None
        self.closed.set_result(None)


def _release_idle(ref: Any, _: object) -> None:
    """Run when a loop's thread ends: let the store (if still alive) close what is idle."""
    db = ref()
    if db is not None:
        db._release_idle()


class PickleDBSQLite(PickleDBStore):
    """A key-value store with one SQLite row per key, safe across threads and processes.

    PickleDBSQLite(sqlite_path="pickledb.sqlite3", table_name="kv", *, durable=True, timeout=30.0)

    sqlite_path: the SQLite file (str or os.PathLike), created on first use; `~` is expanded and the path is made
        absolute at once (`location`, also `path`).
    table_name: the table of this store: letters, digits and underscores, not starting with a digit or "sqlite_"
        (else ValueError, before any SQL runs). A new table is created WITHOUT ROWID.
    durable: True commits with synchronous=FULL (a write that returned survives a power loss); False with NORMAL
        (faster, never corrupt, but the last writes before a power loss may be lost).
    timeout: seconds a write waits for another connection's lock before sqlite3.OperationalError ("database is locked").

    Every write is committed before the call returns (those that arrive during a commit share the next one). Call
    close(), or use `with`. Every method is awaitable when called from async code.
    """

    def __init__(
        self,
        sqlite_path: str | os.PathLike[str] = "pickledb.sqlite3",
        table_name: str = "kv",
        *,
        durable: bool = True,
        timeout: float = 30.0,
    ) -> None:
        _check_table_name(table_name)
        if isinstance(sqlite_path, (str, os.PathLike)) and os.fspath(sqlite_path) == ":memory:":
            raise ValueError(
                "PickleDBSQLite needs a file, not ':memory:': for a private in-memory store "
                "use PickleDB (and never save it), or give a path in a temporary directory"
            )
        if not isinstance(durable, bool):
            raise TypeError(f"durable must be True or False, not {durable!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        if not timeout >= 0:
            raise ValueError(f"timeout must be 0 or more seconds, not {timeout!r}")
        self.location = _path_of(sqlite_path, "sqlite_path", 'PickleDBSQLite("pickledb.sqlite3")')
        self.table_name = table_name
        self._timeout = min(timeout, 2_147_483)  # SQLite takes milliseconds as a C int, and 0 past that
        self._sql_synchronous = f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}"
        table = f'"{table_name}"'
        # The key is the clustered primary key (faster, a smaller file); an older table with a rowid is used as it is.
        self._sql_create = (
            f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
        )
        insert = f"INSERT INTO {table} (key, value) VALUES (?, ?) ON CONFLICT (key) DO"
        self._sql_set = set_ = f"{insert} UPDATE SET value = excluded.value"
        self._sql_get = get = f"SELECT value FROM {table} WHERE key = ?"
        add, purge = f"{insert} NOTHING", f"DELETE FROM {table}"
        remove = f"{purge} WHERE key = ?"

        # The operations but update, each its (kind, sql, params); none holds the store, so that it can be collected.
        self._op_set = lambda key, raw: (_COUNT, set_, (key, raw))
        self._op_get = lambda key: (_ROW, get, (key,))
        self._op_remove = lambda key: (_COUNT, remove, (key,))
        self._op_purge = lambda: (_COUNT, purge, ())
        self._op_set_many = lambda rows: (_MANY, set_, rows)
        self._op_add = lambda key, raw: (_COUNT, add, (key, raw))
        self._op_keys, self._op_count, self._op_page = _range_reads(table, "?", "value")
        self._closed = False
        self._forked = False  # this is a forked child that inherited open connections
        self._file_id = (0, 0)  # (device, inode) of the file the connections opened
        self._next_check = 0.0  # time.monotonic() after which a read looks at the path again
        self._fresh_state()
        _fork_aware(self)

    def _fresh_state(self) -> None:
        self._conn: Any = None  # sqlite3.Connection for sync calls
        self._aconns: dict[Any, _Worker] = {}  # event loop -> the thread owning its connection
        self._stopping: list[_Worker] = []  # stopped by close(), perhaps still closing
        self._lock = threading.Lock()  # guards the sync connection
        self._mutex = threading.Lock()  # guards the two below
        self._pending: list[_Write] = []  # sync writes waiting for the next group
        self._committing = 0  # the id of the thread committing a group on the sync connection

    @property
    def path(self) -> str:
        """The absolute path of the SQLite file: another name for `location`."""
        return self.location

    def _op_update(self, key: str, change: Callable[[bytes | None], tuple[bytes, Any]]) -> Any:
        def apply(conn: Any) -> Any:
            row = conn.execute(self._sql_get, (key,)).fetchone()
            raw, new = change(None if row is None else row[0])
            conn.execute(self._sql_set, (key, raw))
            return new

        return _FN, apply, None

    # -- running them: in this thread (a group commit for writes), or in the loop's thread --

    def _execute(self, op: Any) -> Any:
        kind, sql, params = op
        if kind >= _COUNT:
            return self._write(_Write(kind, sql, params, threading.Lock()))
        with self._lock:
            conn = self._open_locked()
            if _monotonic() >= self._next_check:
                self._check_read()
            rows = conn.execute(sql, params).fetchall()
        return _shaped(kind, params, rows)

    def _write(self, write: _Write) -> Any:
        """Commit `write` with whatever other threads' writes queue up meanwhile; return its result."""
        # Each lock is taken by C code in one step, so a signal handler's exception cannot leave one held.
        mutex, me = self._mutex, threading.get_ident()
        batch: list[_Write] = []
        reached = [False]
        try:
            with mutex:
                self._pending.append(write)
            while not batch and not write.done:  # wait for the outcome, or for this thread's turn
                write.waiter.acquire()  # unlocked at first; then locked until wake()
                with mutex:
                    # A commit marked as this thread's own was abandoned by an interruption: take over.
                    if not write.done and self._committing in (0, me):
                        self._committing = me
                        batch, self._pending = self._pending, []
            if batch:
                with self._lock:
                    _commit_group(self._open_locked(), batch, reached, self._check_read)
                self._finish_group(batch, None)
        except (_sqlite3().Error, ValueError, FileNotFoundError) as err:  # a failed commit fails the whole group
            if not batch:
                raise
            self._finish_group(batch, err)
        except BaseException:  # interrupted (a signal handler, KeyboardInterrupt)
            if not batch:  # while waiting: withdraw the write, unless a commit took it already
                with mutex:
                    if write in self._pending:
                        self._pending.remove(write)
                        if self._committing == 0 and self._pending:
                            self._pending[0].wake()  # it may have been this one's turn: pass it on
            elif reached[0]:  # the group was committed: its writes stand
                self._finish_group(batch, None)
            else:  # nothing was stored: the other writes go to the next group
                self._finish_group([write], None, requeue=[w for w in batch if w is not write])
            raise
        if isinstance(write.outcome, BaseException):
            raise write.outcome
        return write.outcome

    def _finish_group(self, batch: list[_Write], error: Exception | None, requeue: Iterable[_Write] = ()) -> None:
        """Mark each write of `batch` done (failed with `error` if one is given), and pass the turn on."""
        with self._mutex:
            self._committing = 0
            for write in batch:
                if not write.done:
                    write.outcome = error or write.outcome
                    write.done = True
                    write.wake()
            for write in requeue:  # their outcomes are from a group that was not stored
                write.outcome = None
            self._pending[:0] = list(requeue)
            if self._pending:
                self._pending[0].wake()

    async def _execute_async(self, op: Any) -> Any:
        kind, sql, params = op
        loop = asyncio.get_running_loop()
        worker = self._worker(loop)
        if kind >= _COUNT:
            write = _Write(kind, sql, params, loop.create_future())
            worker.write(write)
            try:
                return await write.waiter
            except asyncio.CancelledError:
                if write in worker.pending:  # not sent yet: withdrawn, nothing stored
                    worker.pending.remove(write)
                raise
        if _monotonic() >= self._next_check:
            self._check_read()
        rows = worker.read(sql, params) if kind == _ROW else None
        if rows is None:
            future = loop.create_future()
            worker.submit(functools.partial(_settle, future), lambda conn: conn.execute(sql, params).fetchall())
            rows = await future
        return _shaped(kind, params, rows)

    def _check_read(self) -> None:
        """Check that the path still names the opened file; reads call it at most once a millisecond."""
        if self._file_id[1]:  # once a connection is open
            _same_file(self.location, self._file_id)
            self._next_check = _monotonic() + 0.001

    # -- connections --

    def _connect(self) -> Any:
        """Open the sync connection and prepare the file: WAL mode and the table."""
        sqlite3 = _sqlite3()
        self._check_read()  # opened before: it must still be there
        try:
            conn = sqlite3.connect(self.location, timeout=self._timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as err:
            raise self._open_error(err, "cannot open ") from None
        try:
            info = os.stat(self.location)  # the file the connection opened a moment ago
            if self._forked:
                _hold_shared_lock(self.location)
                self._forked = False
            self._tune(conn)
            self._check_table(conn)
            _set_wal(conn, self._timeout)  # may wait for another connection's lock
            conn.execute(self._sql_create)
            _same_file(self.location, self._file_id if self._file_id[1] else (info.st_dev, info.st_ino))
        except BaseException as err:
            conn.close()
            if isinstance(err, sqlite3.OperationalError):
                raise self._open_error(err, "") from None
            if isinstance(err, sqlite3.DatabaseError):
                raise ValueError(f"{self.location} is not a usable SQLite database ({err})") from None
            raise
        self._file_id = (info.st_dev, info.st_ino)
        self._conn = conn
        return conn

    def _open_error(self, err: Exception, prefix: str) -> Exception:
        """Return the error for a file SQLite cannot open or prepare; PermissionError names an unwritable directory."""
        directory = os.path.dirname(self.location)
        if os.path.isdir(directory) and not os.access(directory, os.W_OK | os.X_OK):
            problem = f"cannot open {self.location}: SQLite creates files in {directory}, which this process may not"
            return PermissionError(errno.EACCES, f"{problem} write to", directory)
        return cast(Exception, _sqlite3().OperationalError(f"{prefix}{self.location}: {err}"))

    def _tune(self, conn: Any) -> None:
        conn.execute(self._sql_synchronous)
        conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")

    def _check_table(self, conn: Any) -> None:
        """Raise ValueError, changing nothing, if the table exists without a pickledb table's columns."""
        info = conn.execute(f'PRAGMA table_info("{self.table_name}")')
        columns = [(name, kind, pk) for _, name, kind, _, _, pk in info]
        if columns and sorted((name.lower(), bool(pk)) for name, _, pk in columns) != [("key", True), ("value", False)]:
            found = ", ".join(f"{name} {kind}".strip() + " PRIMARY KEY" * bool(pk) for name, kind, pk in columns)
            raise _other_table(self.location, self.table_name, found, "key TEXT PRIMARY KEY, value BLOB")

    def _open_locked(self) -> Any:
        """Return the sync connection, opening it if needed; the caller holds the lock."""
        conn = self._checked(self._conn) or self._connect()
        if conn.in_transaction:  # left open by an interrupted call: end it before anything else
            conn.execute("ROLLBACK")
        return conn

    def _connect_worker(self) -> Any:
        """Open a connection for a loop's thread (in that thread), once the file is prepared."""
        sqlite3 = _sqlite3()
        with self._lock:
            self._open_locked()
        _same_file(self.location, self._file_id)
        with contextlib.ExitStack() as opened:  # closes them on an error
            conn = sqlite3.connect(self.location, timeout=self._timeout, isolation_level=None)
            opened.callback(conn.close)
            self._tune(conn)
            reader = sqlite3.connect(self.location, timeout=0, isolation_level=None, check_same_thread=False)
            opened.callback(reader.close)
            _same_file(self.location, self._file_id)  # both opened the file the store has open
            opened.pop_all()
        return conn, reader, functools.partial(_same_file, self.location, self._file_id)

    def _worker(self, loop: Any) -> _Worker:
        """Return the thread that owns this loop's connection, starting it on first use."""
        worker = self._aconns.get(loop)
        if worker is None or worker.stopped is not None:  # first use, or its connecting failed
            with self._lock:  # only this loop's thread starts its worker, so none started meanwhile
                if self._closed:
                    raise self._closed_error()
                for old in [old for old in self._aconns if old.is_closed()]:
                    self._aconns.pop(old).stop(self._closed_error())
                worker = self._aconns[loop] = _Worker(loop, self._connect_worker)
                worker.closed.add_done_callback(functools.partial(_release_idle, weakref.ref(self)))
        return worker

    def _release_idle(self) -> None:
        """Close the sync connection once every loop's thread has ended; the next sync call reopens it."""
        # SQLite frees their descriptors only once no connection of this process locks the file, as an idle one does.
        with self._lock:
            if not self._closed and all(worker.closed.done() for worker in self._aconns.values()):
                self._aconns.clear()
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def _shut(self, loop: Any, leaked: bool = False) -> list[concurrent.futures.Future[None]]:
        """Mark the store closed, close the sync connection, stop the loops' threads; return their `closed`."""
        with contextlib.nullcontext() if leaked else self._lock:  # __del__ may run while the lock is held
            self._closed = True
            conn, self._conn = self._conn, None
            self._stopping.extend(self._aconns.values())
            self._aconns.clear()
        if conn is not None:
            conn.close()
        for worker in self._stopping:
            worker.stop(self._closed_error())
        self._stopping = [worker for worker in self._stopping if not worker.closed.done()]
        return [worker.closed for worker in self._stopping if worker.thread is not threading.current_thread()]

    def _leaked(self) -> bool:
        return self._conn is not None or bool(self._aconns)

    def _after_fork(self) -> None:
        """In a forked child: abandon what the parent opened, and start afresh."""
        workers = (*self._aconns.values(), *self._stopping)
        for conn in [self._conn] + [conn for worker in workers for conn in (worker.conn, worker.reader)]:
            if conn is not None:
                _abandon(conn)
                self._forked = True
        self._fresh_state()


# --- PickleDBRedis ----------------------------------------------------------

_REDIS_CHUNK = 1000  # pairs per HSET inside a set_many transaction: bounds the size of each command

# Deletes the store's hash, refusing (like every hash command) a key of another type.
_REDIS_PURGE = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
return redis.call('UNLINK', KEYS[1])
"""
# Sets field ARGV[1] to ARGV[2] if it still holds ARGV[3] (is still missing without one); returns 1 if it did.
_REDIS_SWAP = """
if redis.call('HGET', KEYS[1], ARGV[1]) == (ARGV[3] or false) then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    return 1
end
return 0
"""
_Steps = Generator[Any, Any, Any]  # an operation: yields commands, is sent their replies, returns its result


def _sent(client: Any, command: Any) -> Any:
    """Send one command with `client`, or a list of them as one MULTI/EXEC transaction (awaitable if it is async)."""
    if type(command) is not list:
        return client.execute_command(*command)
    pipe = client.pipeline(transaction=True)
    for each in command:
        pipe.execute_command(*each)
    return pipe.execute()


def _redis() -> Any:
    try:
        import redis.asyncio  # also binds redis
        import redis.cluster
    except ImportError as err:
        raise ImportError(_REDIS_HINT) from err
    return redis


def _masked_url(url: str) -> str:
    """Return `url` with any password replaced by ***; every other character stays as written."""
    if "://" not in url:  # not a URL redis-py accepts; whatever precedes an @ may be a password
        return f"***@{url.rsplit('@', 1)[1]}" if "@" in url else url
    scheme, rest = url.split("://", 1)
    at = max(rest.partition("?")[0].partition("#")[0].rfind("@"), 0)  # user:password@ (a password may hold a '/')
    if (colon := rest.find(":", 0, at)) >= 0:
        rest = f"{rest[:colon]}:***{rest[at:]}"
    rest, hash_sign, fragment = rest.partition("#")
    path, question, query = rest.partition("?")
    query = "&".join(
        f"{name}{equals}{'***' if urllib.parse.unquote_plus(name).lower() == 'password' else value}"
        for name, equals, value in (pair.partition("=") for pair in query.split("&"))
    )
    return f"{scheme}://{path}{question}{query}{hash_sign}{fragment}"


def _drop_transports(client: Any) -> None:
    """Close the sockets of an asyncio client whose loop cannot run its aclose() (closed, or that close cancelled).

    redis-py (7.0 to 8.1) closes connections only in coroutines of that loop, and asyncio a socket only in a later step
    of it: this one helper reads their private fields (pools' connections, their transports and sockets) to close them.
    """
    if hasattr(client, "get_nodes"):
        connections = [conn for node in client.get_nodes() for conn in getattr(node, "_connections", ())]
    else:
        pool = client.connection_pool
        connections = [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]
    for conn in (c for c in connections if getattr(c, "_writer", None) is not None):
        transport, loop = conn._writer.transport, getattr(conn._writer.transport, "_loop", None)
        with contextlib.suppress(RuntimeError):  # on a closed loop it marks it closing, then fails to schedule the rest
            transport.close()  # on an open loop the socket closes in its next step
        if getattr(transport, "_sock", None) is not None and (loop is None or loop.is_closed()):
            with contextlib.suppress(Exception):
                transport._call_connection_lost(None)  # asyncio's own final step: closes the socket
        conn._reader = conn._writer = None


class PickleDBRedis(PickleDBStore):
    """A key-value store in one Redis hash, shared by every process and host that can reach the server.

    PickleDBRedis(url="redis://localhost:6379/0", hash_name="kv", *, cluster=False, timeout=30.0, max_connections=100)

    url: redis://, rediss:// (TLS) or unix://, as redis-py's from_url takes it. The password is shown as *** in
        repr(), `location` (also `url`) and every error.
    hash_name: this store's hash: non-empty text without control characters (else ValueError, before any command).
    cluster: True talks to a Redis Cluster, starting from the node in `url`.
    timeout: seconds for connecting and for every reply (redirections and retries included), then ConnectionError;
        a write that timed out may have been stored.
    max_connections: per client (one per event loop, one for sync calls); callers beyond it wait up to `timeout`,
        then TimeoutError. A ?max_connections= in the URL overrides it.

    One hash field per key, the value orjson-encoded; durability is the server's. Clients open lazily. Call close(),
    or use `with`. Every method is awaitable when called from async code.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        hash_name: str = "kv",
        *,
        cluster: bool = False,
        timeout: float = 30.0,
        max_connections: int = 100,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if not isinstance(hash_name, str):
            raise ValueError(
                f"invalid hash_name {hash_name!r}: hash_name must be a str (non-empty Unicode text "
                f"without control characters), not {type(hash_name).__name__}"
            )
        # a control character, or a lone surrogate (which is not UTF-8 text)
        if not hash_name or any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in hash_name):
            raise ValueError(
                f"invalid hash_name {_short(hash_name)}: use non-empty Unicode text without control characters"
            )
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.location = _masked_url(url)
        self.hash_name = hash_name
        self.cluster = bool(cluster)
        try:
            options = _redis().connection.parse_url(url)
        except ValueError as err:
            raise ValueError(f"invalid Redis URL {self.location!r}: {err}") from None
        db = urllib.parse.unquote(urllib.parse.urlsplit(url).path)[1:] if url[:5].lower() == "redis" else ""
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError(f"invalid Redis URL {self.location!r}: database {db!r} is not a number; end it with /0")
        self._url = url
        self._timeout = float(timeout)
        self._max = options.get("max_connections", max_connections)
        if type(self._max) is not int or self._max < 1:
            where = "?max_connections= in the URL" if "max_connections" in options else "max_connections"
            raise ValueError(f"{where} must be a whole number of at least 1, not {self._max!r}")
        self._after_fork()  # the gate of the sync calls
        _fork_aware(self)
        self._lock = threading.Lock()
        self._client: Any = None  # redis.Redis or redis.cluster.RedisCluster for sync calls
        self._aclients: dict[Any, tuple[Any, Any, Any]] = {}  # event loop -> (asyncio client, its closer, gate)
        self._closing = []  # closes still running: see PickleDBStore._shut
        self._starting: dict[Any, Any] = {}  # event loop -> task that initializes its cluster client
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, {self.hash_name!r}{', cluster=True' if self.cluster else ''})"

    @property
    def url(self) -> str:
        """The server's URL with its password shown as ***: another name for `location`."""
        return self.location

    # -- the operations: each is its commands; PickleDBStore runs them --

    def _op_set(self, key: str, raw: bytes) -> _Steps:
        return (yield ("HSET", self.hash_name, key, raw))

    def _op_get(self, key: str) -> _Steps:
        return (yield ("HGET", self.hash_name, key))

    def _op_remove(self, key: str) -> _Steps:
        return (yield ("HDEL", self.hash_name, key))

    def _op_keys(self, prefix: str | None) -> _Steps:
        if not prefix:
            return sorted(map(self._text, (yield ("HKEYS", self.hash_name))))
        keys, cursor = set[str](), 0
        while cursor is not None:
            page, cursor = yield from self._op_page(prefix, cursor, _PAGE_SIZE)
            keys.update(key for key, _ in page)
        return sorted(keys)

    def _op_count(self, prefix: str | None) -> _Steps:
        return (yield ("HLEN", self.hash_name)) if not prefix else len((yield from self._op_keys(prefix)))

    def _op_page(self, prefix: str | None, cursor: int | None, limit: int) -> _Steps:
        # the fields that start with prefix: a glob with its special characters escaped
        match = ("MATCH", "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*") if prefix else ()
        cursor, pairs = yield ("HSCAN", self.hash_name, cursor or 0, *match, "COUNT", limit)
        return [(self._text(field), raw) for field, raw in pairs.items()], cursor or None

    def _op_purge(self) -> _Steps:
        return (yield ("EVAL", _REDIS_PURGE, 1, self.hash_name))

    def _op_set_many(self, rows: list[tuple[str, bytes]]) -> _Steps:
        fields, step = [part for row in rows for part in row], 2 * _REDIS_CHUNK
        commands = [("HSET", self.hash_name, *fields[i : i + step]) for i in range(0, len(fields), step)]
        return (yield commands if len(commands) > 1 else commands[0])

    def _op_add(self, key: str, raw: bytes) -> _Steps:
        return (yield ("HSETNX", self.hash_name, key, raw))

    def _op_update(self, key: str, change: Callable[[bytes | None], tuple[bytes, Any]]) -> _Steps:
        while True:  # read, change, and write back unless another client wrote meanwhile
            old = yield ("HGET", self.hash_name, key)
            raw, new = change(old)
            if (yield ("EVAL", _REDIS_SWAP, 1, self.hash_name, key, raw, *([] if old is None else [old]))):
                return new

    def _op_incr(self, key: str, by: int | float) -> _Steps:
        if type(by) is int:  # the server adds integers itself; a float, or a value that is none, is updated
            try:
                return (yield ("HINCRBY", self.hash_name, key, by))
            except RuntimeError as err:
                if "overflow" in str(err):
                    raise OverflowError(f"cannot incr key {_short(key)} by {by}: outside the 64-bit range") from None
                if "not an integer" not in str(err):
                    raise
        return (yield from super()._op_incr(key, by))

    def _text(self, field: bytes) -> str:
        try:
            return field.decode()
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{self!r}: hash {self.hash_name!r} holds a field that is not UTF-8 text ({err})"
            ) from None

    # -- running them: command by command, with a token per connection in sync code --

    def _execute(self, op: _Steps) -> Any:
        return _driven(op, self._send)

    async def _execute_async(self, op: _Steps) -> Any:
        return await _driven_async(op, self._send_async)

    def _send(self, command: Any) -> tuple[Any, Exception | None]:
        """Send one command, or a list of them as one transaction; return (its reply, None) or (None, the error)."""
        token = None
        try:
            # get() raises having taken nothing (Ctrl-C while it waits) or returns a token, which no signal handler
            # can come between it and `token`: each one taken goes back.
            try:
                token = self._gate.get(timeout=self._timeout)
            except queue.Empty:
                return None, _exhausted(self, self._max)
            began = time.monotonic()
            while True:
                try:
                    return _sent(self._client or self._connect(), command), None
                except Exception as err:
                    self._retry_or_raise(err, began, command)
                    time.sleep(0.05)
                except BaseException:  # Ctrl-C or an exception from a signal handler, at any point of the call
                    self._drop_idle_connections()
                    raise
        except Exception as err:
            return None, err
        finally:
            if token is not None:
                self._gate.put(token)

    def _after_fork(self) -> None:
        """A token per connection of the sync calls (made anew in a forked child: the parent's holders are gone)."""
        self._gate: queue.SimpleQueue[bool] = queue.SimpleQueue()
        for _ in range(self._max):
            self._gate.put(True)

    async def _send_async(self, command: Any) -> tuple[Any, Exception | None]:
        gate, began = None, time.monotonic()
        try:
            while True:
                try:
                    client, _, waited = await self._aclient()
                    if gate is None:  # one of this loop's connections, waiting for it up to timeout
                        await _take_slot(waited, self, self._max, self._timeout)
                        gate, began = waited, time.monotonic()
                    # A cluster's call is cut at the deadline: redis-py can wait for a stalled node twice.
                    sending, left = _sent(client, command), began + self._timeout - time.monotonic()
                    return await (asyncio.wait_for(sending, left) if self.cluster else sending), None
                except Exception as err:
                    if isinstance(err, asyncio.TimeoutError):  # no connection came, or the cluster deadline passed
                        err = _redis().exceptions.TimeoutError("no answer") if gate else _exhausted(self, self._max)
                    self._retry_or_raise(err, began, command)
                    await asyncio.sleep(0.05)
        except Exception as err:
            return None, err
        finally:
            if gate is not None:
                gate.release()

    def _retry_or_raise(self, err: Exception, began: float, command: Any) -> None:
        """Return if a cluster call that failed quickly (a moved slot, a failover) is tried again, else raise: it is
        during the first fifth of timeout, as a last try can take all of it."""
        exc = _redis().exceptions
        quick = (exc.ClusterError, exc.AskError, exc.TryAgainError, exc.ConnectionError, exc.RedisClusterException)
        if self.cluster and isinstance(err, (*quick, AttributeError)) and time.monotonic() - began < self._timeout / 5:
            if not isinstance(err, (exc.AuthenticationError, exc.MaxConnectionsError)):
                return
        raise self._problem(err, command) from err

    def _problem(self, err: Exception, command: Any) -> Exception:
        """The builtin error to raise for redis-py's `err` (the README's table); any other `err` is raised as it is."""
        exc = _redis().exceptions
        if not isinstance(err, (exc.RedisError, exc.RedisClusterException, AttributeError)):
            raise err  # not from redis-py (whose asyncio clients can raise AttributeError on a dropped connection)
        _, annotated, reason = str(err).rpartition("caused error: ")  # a pipeline's names the command and its values
        reason = " ".join((reason.strip("(',)") if annotated else reason).split())[:300] or type(err).__name__
        if annotated:
            err.args = (reason,)  # the cause, shown under a traceback, keeps no value either
        at = f"the Redis {'Cluster' if self.cluster else 'server'} at {self.location} (hash {self.hash_name!r})"
        if isinstance(err, exc.AuthenticationError):
            return PermissionError(f"{at} refused to authenticate ({reason}); check the user and password in the URL")
        if isinstance(err, exc.NoPermissionError):
            return PermissionError(f"{at} refused the command ({reason}); grant this user the hash commands")
        if isinstance(err, exc.OutOfMemoryError) or reason.startswith("OOM"):
            return MemoryError(f"{at} is out of memory ({reason}); nothing was stored: raise its maxmemory")
        if reason.startswith("MISCONF"):
            return OSError(f"{at} refuses writes: it cannot save to disk ({reason.split('. ')[0]}); nothing was stored")
        if reason.startswith("WRONGTYPE"):
            return ValueError(f"{at}: {self.hash_name!r} is not a hash; pass another hash_name or delete that key")
        if "DB index" in reason:
            return ValueError(f"{at} has no such database ({reason}); use a lower number in the URL")
        if isinstance(err, exc.AskError) and not self.cluster:
            return ValueError(f"{at}: this is a cluster node; use cluster=True (command line: redis+cluster://...)")
        if isinstance(err, exc.InvalidResponse):
            return ConnectionError(f"{at} did not answer as Redis ({reason}); check the host and port in the URL")
        if isinstance(err, exc.ResponseError | exc.DataError) and not isinstance(err, exc.ClusterError):
            return RuntimeError(f"{at} refused the command ({reason})")
        sent = isinstance(err, (exc.ConnectionError, exc.TimeoutError)) and "connecting" not in reason
        unknown = sent and (type(command) is list or command[0] not in {"HGET", "HKEYS", "HLEN", "HSCAN"})  # a write
        lost = "this write's outcome is unknown: it may have been stored; " if unknown else ""
        tls = "is the server TLS-enabled? rediss:// needs it; " if self._url[:7].lower() == "rediss:" else ""
        return ConnectionError(f"cannot reach {at} ({reason}); {lost}{tls}check that it runs and that the URL is right")

    def _drop_idle_connections(self) -> None:
        """Disconnect idle sync connections: an interrupted call gave one back whose reply the next call would take."""
        if (client := self._client) is None:
            return
        if self.cluster:
            pools = [node.redis_connection.connection_pool for node in client.get_nodes() if node.redis_connection]
        else:
            pools = [client.connection_pool]
        for pool in pools:
            pool.disconnect(inuse_connections=False)

    # -- clients --

    def _new_client(self, redis: Any) -> Any:
        """A client from `redis` (redis-py or redis.asyncio) that tries each call once: _send(_async) retries."""
        kind = redis.cluster.RedisCluster if self.cluster else redis.Redis
        timeouts = {"socket_timeout": self._timeout, "socket_connect_timeout": self._timeout}
        retry = redis.retry.Retry(_redis().backoff.NoBackoff(), 0)
        return kind.from_url(self._url, **timeouts, max_connections=self._max, retry=retry)

    def _connect(self) -> Any:
        """Create the sync client (the cluster one asks the nodes for the slot map here)."""
        with self._lock:
            if self._checked(self._client) is None:
                self._client = self._new_client(_redis())
            return self._client

    async def _aclient(self) -> tuple[Any, Any, Any]:
        """Return this loop's (asyncio client, closer, gate); the first call on a loop creates them."""
        loop = asyncio.get_running_loop()
        if (entry := self._checked(self._aclients).get(loop)) is None:
            for old in list(self._aclients):  # loops that ended without their client being closed
                if old.is_closed() and (stale := self._aclients.pop(old, None)) is not None:
                    self._starting.pop(old, None)
                    _drop_transports(stale[0])
            client = self._new_client(_redis().asyncio)
            closer = _close_at_loop_end(client.aclose)
            self._aclients[loop] = entry = (client, closer, asyncio.Semaphore(self._max))
            await closer.asend(None)  # registered with the loop: closed when the loop shuts down
            if self.cluster:
                # redis-py's asyncio cluster client can hand a half-made connection to one of several
                # commands sent at once before it knows the cluster: let it learn the slots first.
                self._starting[loop] = loop.create_task(client.initialize())
        if self._starting and (task := self._starting.get(loop)) is not None:  # wait until it knows the cluster
            try:
                await asyncio.shield(task)  # a cancelled caller must not cancel it for the others
            finally:
                if task.done():
                    self._starting.pop(loop, None)  # after a failure, redis-py tries again on the next command
        return entry

    def _detach(self, guard: Any, leaked: bool) -> dict[Any, tuple[Any, Any]]:
        with guard:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        entries, self._aclients, self._starting = self._aclients, {}, {}
        return {loop: (aclient, closer) for loop, (aclient, closer, _) in entries.items()}

    _drop = staticmethod(_drop_transports)  # a static method: the closes it is kept for hold no reference to the store

    def _leaked(self) -> bool:
        return self._client is not None or bool(self._aclients)


# --- PickleDBPostgres -------------------------------------------------------

# Keys sort by code point whatever the collation; json keeps each value's text as written (jsonb: 1e16 becomes an int).
_POSTGRES_COLUMNS = 'key text COLLATE "C" PRIMARY KEY, value json NOT NULL'
_POSTGRES_SHAPE = (  # a table's columns, as _POSTGRES_COLUMNS writes them
    "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE attcollation WHEN 950 "
    "THEN ' COLLATE \"C\"' ELSE '' END, ', ' ORDER BY attnum) FROM pg_attribute "  # 950: the C collation
    "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
)
# An operation is a statement, (what it gives: a kind of _shaped, or for _COUNT and _MANY the rows changed, SQL,
# parameters), as SQLite's are; or it yields them, is sent what each gives, and returns its result (BEGIN is its own).
_PgOp = Generator[tuple[int, str, Any], Any, Any]
_BEGIN, _COMMIT = (_COUNT, "BEGIN", ()), (_COUNT, "COMMIT", ())
# (SQLSTATE prefix, the error raised, the fix it names), in order; then a ConnectionError or a RuntimeError.
_POSTGRES_ERRORS = (
    ("28", PermissionError, "check the user and password"),
    ("42501", PermissionError, "grant this user the table"),
    ("3D000", ValueError, "no such database: create it or name another"),
    ("53200", MemoryError, "nothing was stored"),
    ("531", OSError, "nothing was stored"),
    ("54", RuntimeError, "the statement was refused"),
)


def _text_row(key: str, raw: bytes = b"") -> tuple[str, str]:
    """(key, the value as text); TypeError for a NUL, which text cannot hold (json can, but ->> then fails on it)."""
    if "\x00" in key or (b"\\u0000" in raw and b"\\u0000" in raw.replace(b"\\\\", b"")):  # not "\\" + "u0000"
        raise TypeError(f"cannot store key {_short(key)}: PostgreSQL text cannot hold a NUL character")
    return key, raw.decode()


@functools.cache
def _pg() -> Any:
    """psycopg, psycopg_pool, and the connection classes of PickleDBPostgres (imported on first use)."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError as err:
        hint = 'PickleDBPostgres needs psycopg 3: pip install "psycopg[binary]" psycopg-pool (with pickledb installed: '
        raise ImportError(hint + 'pip install "pickledb[postgres]")') from err

    # Every wait of a call ends at its deadline, even when the server is stopped (SIGSTOP) and its socket open.
    def wait(self: Any, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        return cast(Any, type(self).__mro__[1]).wait(self, gen, interval, max(0.0, self.deadline - _monotonic()))

    def usable(self: Any, ask: bool = True) -> bool:  # open, idle, and (ask) sent nothing: a restart sends a goodbye
        return bool(self.pgconn.transaction_status == 0 and not (ask and select.select([self.fileno()], [], [], 0)[0]))

    cur = functools.cached_property(lambda conn: conn.cursor())  # made once: a new one per statement costs ~15 µs
    body = {"deadline": math.inf, "wait": wait, "usable": usable, "cur": cur}
    conn, aconn = (type(kind.__name__, (kind,), body) for kind in (psycopg.Connection, psycopg.AsyncConnection))
    return types.SimpleNamespace(psycopg=psycopg, pool=psycopg_pool, conn=conn, aconn=aconn)


class PickleDBPostgres(PickleDBStore):
    """A key-value store in one PostgreSQL table, shared by every process and host that can reach the server.

    PickleDBPostgres(dsn="postgresql://localhost/postgres", table_name="kv", *, timeout=30.0, max_connections=20)

    dsn: a postgresql:// URL or "host=... dbname=..." (its password shows as ***). table_name: as
    PickleDBSQLite's, created if missing; one of another shape raises ValueError. timeout: seconds for each
    call, waiting for a connection included: an unreachable or stopped server raises ConnectionError within it
    (a write may then have been stored), callers beyond max_connections (as many for sync calls, and for each
    event loop) TimeoutError. SQL reads the values: SELECT value->>'name' FROM kv. NUL characters are refused.
    """

    def __init__(
        self,
        dsn: str = "postgresql://localhost/postgres",
        table_name: str = "kv",
        *,
        timeout: float = 30.0,
        max_connections: int = 20,
    ) -> None:
        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be a str, not {type(dsn).__name__}")
        _check_table_name(table_name)
        if len(table_name) > 63:
            raise ValueError(f"Invalid table name {table_name!r}: PostgreSQL names are at most 63 characters")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if type(max_connections) is not int or max_connections < 1:
            raise ValueError(f"max_connections must be a whole number of at least 1, not {max_connections!r}")
        conninfo = _pg().psycopg.conninfo
        try:
            masked = {k: "***" if k == "password" else v for k, v in conninfo.conninfo_to_dict(dsn).items()}
        except _pg().psycopg.Error:
            shown = _masked_url(dsn) if "://" in dsn else "the dsn given"
            raise ValueError(f"invalid PostgreSQL address {shown}; write postgresql://USER:PASS@HOST/DB") from None
        self.location = _masked_url(dsn) if "://" in dsn else conninfo.make_conninfo(**masked)
        self.table_name, self._dsn, self._timeout, self._max = table_name, dsn, float(timeout), max_connections
        self._kwargs = {"autocommit": True, "connect_timeout": max(2, math.ceil(timeout))}  # of every connection
        t = self._table = f'"{table_name}"'
        upsert = f"INSERT INTO {t} AS old (key, value) VALUES (%s, %s) ON CONFLICT (key) DO "
        self._sql_set = set_ = upsert + "UPDATE SET value = excluded.value"
        self._sql_add = add = upsert + "NOTHING RETURNING 1"
        self._sql_incr = upsert + (  # an int in range plus an int; anything else is updated by PickleDBStore's rules
            "UPDATE SET value = to_json(old.value::text::numeric + %s) WHERE old.value::text ~ '^-?[0-9]{1,20}$' AND "
            "old.value::text::numeric + %s BETWEEN -9223372036854775808 AND 9223372036854775807 RETURNING value::text"
        )
        self._sql_get = get = f"SELECT value::text FROM {t} WHERE key = %s"
        remove, purge = f"DELETE FROM {t} WHERE key = %s", f"DELETE FROM {t}"
        # The operations of one statement, as SQLite's: none holds the store, so that it can be collected.
        self._op_set = lambda key, raw: (_COUNT, set_, _text_row(key, raw))
        self._op_get = lambda key: (_ROW, get, _text_row(key)[:1])
        self._op_remove = lambda key: (_COUNT, remove, _text_row(key)[:1])
        self._op_add = lambda key, raw: (_ROW, add, _text_row(key, raw))
        self._op_purge = lambda: (_COUNT, purge, ())
        self._op_keys, self._op_count, self._op_page = _range_reads(t, "%s", "value::text", no_nul=True)
        self._lock, self._own = threading.Lock(), threading.Lock()  # the second: whose self._conn is (see _execute)
        self._pool = self._conn = cast(Any, None)  # the pool of sync calls, and a connection kept outside it
        self._apools: dict[Any, tuple[Any, Any]] = {}  # event loop -> ((idle connections, semaphore), their closer)
        self._closing, self._closed = [], False  # _closing: closes still running (see PickleDBStore._shut)
        _fork_aware(self)

    # -- the operations of several statements --

    def _op_set_many(self, rows: list[tuple[str, bytes]]) -> _PgOp:
        nul = "\x00" in "".join([key for key, _ in rows]) or b"\\u0000" in b"".join([raw for _, raw in rows])
        text = [_text_row(key, raw) if nul else (key, raw.decode()) for key, raw in rows]  # one by one if any may
        yield _BEGIN
        yield (_MANY, self._sql_set, text)
        yield _COMMIT

    def _op_update(self, key: str, change: Callable[[bytes | None], tuple[bytes, Any]]) -> _PgOp:
        yield _BEGIN
        while True:  # a missing key is inserted unless another client inserted it meanwhile: then read it again
            old = yield (_ROW, self._sql_get + " FOR UPDATE", _text_row(key)[:1])
            raw, new = change(old)
            row = _text_row(key, raw)
            if (yield (_COUNT, self._sql_set, row) if old is not None else (_ROW, self._sql_add, row)):
                yield _COMMIT
                return new

    def _op_incr(self, key: str, by: int | float) -> _PgOp:
        if type(by) is int and -_INT64 <= by < _INT64:  # else, or when the value is no int, by update's rules
            raw = yield (_ROW, self._sql_incr, (*_text_row(key, orjson.dumps(by)), by, by))
            if raw is not None:
                return orjson.loads(raw)
        return (yield from super()._op_incr(key, by))

    def _prepare(self) -> _PgOp:
        """Create the table if it is missing (once, whoever else starts at once); refuse one of another shape."""
        yield _BEGIN
        yield (_COUNT, "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"pickledb {self.table_name}",))
        found = yield (_ONE, _POSTGRES_SHAPE, (self._table,))
        if found is None:
            yield (_COUNT, f"CREATE TABLE {self._table} ({_POSTGRES_COLUMNS})", ())
        elif found != 'key text COLLATE "C", value json':
            raise _other_table(self.location, self.table_name, found, _POSTGRES_COLUMNS)
        yield _COMMIT

    # -- running them: sync on a kept connection or a pool's, async on its loop's own; a new one prepares the table --

    def _execute(self, op: Any) -> Any:
        began, alone = _monotonic(), self._max > 1 and self._own.acquire(False)
        try:
            if not alone:  # another sync call has the connection kept below (or max_connections is 1)
                return _driven(self._steps(self._pool or self._open(), op, began))
            # One call at a time: a kept connection, no pool; a read skips asking if it is closed, and retries once.
            for retry in (type(op) is tuple and op[0] < _COUNT, False):
                if self._conn is None or not self._conn.usable(not retry):
                    self._conn = self._conn and self._conn.close() or _driven(self._prepared(_pg().conn, began))
                if type(op) is not tuple:
                    return _driven(self._steps(None, op, began, self._conn))
                self._conn.deadline = began + self._timeout
                try:
                    cur = self._conn.cur.execute(op[1], op[2])
                    return cur.rowcount if op[0] >= _COUNT else _shaped(op[0], op[2], cur.fetchall())
                except _pg().psycopg.OperationalError:
                    if not retry or _monotonic() >= began + self._timeout:  # no answer in time: not again
                        raise
        except _pg().psycopg.Error as err:
            raise self._error(err, began) from err
        finally:
            if alone:
                self._own.release()
                if self._closed:
                    self._let_go()

    async def _execute_async(self, op: _PgOp) -> Any:
        began = _monotonic()
        try:
            idle, slots = await self._apool()
            await _take_slot(slots, self, self._max, began + self._timeout - _monotonic())
            try:
                while idle and not idle[-1].usable():  # the server closed it (a restart closes every idle one)
                    await idle.pop().close()
                conn = idle.pop() if idle else await _driven_async(self._prepared(_pg().aconn, began))
                try:
                    return await _driven_async(self._steps(None, op, began, conn))
                finally:
                    await conn.close() if self._closed else idle.append(conn)
            finally:
                slots.release()
        except _pg().psycopg.Error as err:
            raise self._error(err, began) from err

    def _steps(self, pool: Any, op: Any, began: float, conn: Any = None) -> Generator[Any, Any, Any]:
        """A call as steps, psycopg's calls whose results (awaited in async code) are sent back; without `conn`, on
        one of `pool` that the server has not closed (a restart closes every idle one)."""
        while conn is None:
            try:
                conn = yield pool.getconn(max(0.0, began + self._timeout - _monotonic()))
            except _pg().pool.PoolTimeout:  # every connection stayed busy, or none could be made
                if pool.get_stats().get("pool_size", 0) >= pool.max_size:
                    raise _exhausted(self, self._max) from None
                at, within = f"the PostgreSQL server at {self.location}", f"no connection within {self._timeout:g} s"
                raise ConnectionError(f"cannot reach {at}: {within}; check that it runs") from None
            if not conn.usable():
                yield conn.close()
                conn = yield pool.putconn(conn)  # None
        conn.deadline = began + self._timeout
        try:
            one = type(op) is tuple  # a statement, not steps of statements
            more, value = (True, op) if one else _advance(op, None, None)
            while more:
                how, sql, params = value
                cur = conn.cur
                yield cur.executemany(sql, params) if how == _MANY else cur.execute(sql, params)
                reply = cur.rowcount if how >= _COUNT else _shaped(how, params, (yield cur.fetchall()))
                more, value = (False, reply) if one else _advance(op, reply, None)
            return value
        finally:
            if conn.pgconn.transaction_status in (2, 3):  # in a transaction, or a failed one
                with contextlib.suppress(Exception):
                    yield conn.execute("ROLLBACK")
            yield None if pool is None else pool.putconn(conn)

    def _error(self, err: Any, began: float) -> Exception:
        """The builtin exception for psycopg's `err`, naming the masked address and the fix."""
        reason = " ".join(str(err).split())[:300]
        missing = "3D000" if "database" in reason and "does not exist" in reason else ""  # connecting: no SQLSTATE
        state = "28" if "password" in reason else err.sqlstate or missing
        late = f"no answer within {self._timeout:g} s; " * (_monotonic() >= began + self._timeout)
        lost = (ConnectionError, f"{late}cannot reach it; a write may have been stored: check that it runs")
        other = lost if isinstance(err, _pg().psycopg.OperationalError) else (RuntimeError, "the statement was refused")
        kind, fix = next(((kind, fix) for prefix, kind, fix in _POSTGRES_ERRORS if state.startswith(prefix)), other)
        return kind(f"the PostgreSQL server at {self.location} (table {self.table_name!r}): {reason}; {fix}")

    def _prepared(self, kind: Any, began: float) -> Generator[Any, Any, Any]:
        """Steps that return a new connection of `kind`, the table ready (its errors come at once; a pool's do not)."""
        left = max(2, math.ceil(began + self._timeout - _monotonic()))  # libpq gives up after 2 s at the earliest
        conn = yield kind.connect(self._dsn, **{**self._kwargs, "connect_timeout": left})
        try:
            yield from self._steps(None, self._prepare(), began, conn)
        except BaseException:
            yield conn.close()
            raise
        return conn

    def _open(self) -> Any:
        """Return the pool of sync calls, made once the table is prepared."""
        with self._lock:
            if self._checked(self._pool) is None:
                _driven(self._prepared(_pg().conn, _monotonic())).close()
                options = {"connection_class": _pg().conn, "kwargs": self._kwargs, "open": True}  # max_size: _execute
                self._pool = _pg().pool.ConnectionPool(self._dsn, min_size=0, max_size=max(1, self._max - 1), **options)
            return self._pool

    async def _apool(self) -> tuple[list[Any], asyncio.Semaphore]:
        """Return this event loop's idle connections (the latest last, closed when it ends) and its call semaphore."""
        loop = asyncio.get_running_loop()
        if (entry := self._checked(self._apools).get(loop)) is None:
            idle: list[Any] = []

            async def close() -> None:
                while idle:
                    await idle.pop().close()

            closer = _close_at_loop_end(close)
            await closer.asend(None)  # runs to its first yield, without a pause: no other task comes in between
            self._apools[loop] = entry = ((idle, asyncio.Semaphore(self._max)), closer)
        return entry[0]

    def _detach(self, guard: Any, leaked: bool) -> dict[Any, tuple[Any, Any]]:
        with guard:
            pool, self._pool = self._pool, None
        self._let_go()
        if pool is not None:
            pool.close(1 if leaked else 5)  # seconds for its threads to end
        entries, self._apools = self._apools, {}
        return entries

    def _let_go(self) -> None:
        """Close the connection kept for one sync call, unless a call is using it: that call does when it ends."""
        if self._own.acquire(False):
            self._conn = self._conn and self._conn.close()  # None
            self._own.release()

    def _leaked(self) -> bool:
        return self._pool is not None or self._conn is not None or bool(self._apools)

    def _after_fork(self) -> None:
        """In a forked child: leave the parent its connections, untouched (a close here would end its sessions)."""
        _abandon((self._conn, self._pool, self._apools))
        self._lock, self._own, self._conn, self._pool, self._apools = threading.Lock(), threading.Lock(), None, None, {}


# --- command line -------------------------------------------------------------
#
# `pickledb COMMAND ...` (the console script) and `python -m pickledb COMMAND ...`: look inside any store, edit it,
# dump it and copy it between backends, through the stores' public methods only; main() alone imports argparse.

_CLI_FORMS = (
    "FILE.json (PickleDB); FILE.sqlite, FILE.sqlite3, FILE.db or sqlite:PATH (PickleDBSQLite); "
    "redis://..., rediss://... or unix://... (PickleDBRedis; redis+cluster://HOST:PORT or rediss+cluster://... for "
    "a Redis Cluster, from any of its nodes); postgresql://... or postgres://... (PickleDBPostgres); end an "
    "SQLite, Redis or PostgreSQL address with #NAME to pick the table or hash (default kv)"
)
_CLI_SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
_CLI_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


class _CLIError(Exception):
    """A one-line answer of the command line, with its exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _cli_address(text: str) -> tuple[str, str, str]:
    """Return (backend, location, name) of a store address; backend is json, sqlite, redis or postgres."""
    lowered, kind = text.lower(), ""
    if lowered.startswith((*_CLI_REDIS_SCHEMES, "postgresql://", "postgres://")):
        kind = "redis" if lowered.startswith(_CLI_REDIS_SCHEMES) else "postgres"
        location, named, name = text.partition("#")  # a URL cannot hold a bare '#'
    else:
        location, named, name = (text[7:] if lowered.startswith("sqlite:") else text), "", ""
        if "#" in location and not location.lower().endswith((".json", *_CLI_SQLITE_SUFFIXES)):
            location, named, name = location.rpartition("#")
        if lowered.startswith("sqlite:") or location.lower().endswith(_CLI_SQLITE_SUFFIXES):
            kind = "sqlite"
        elif location.lower().endswith(".json"):
            if named:
                raise _CLIError(f"{text!r}: a JSON file holds one store; #NAME picks an SQLite table or a Redis hash")
            kind = "json"
    if not kind or not location or (named and not name):
        raise _CLIError(f"{_cli_shown(text)!r} is not a store address; use {_CLI_FORMS}")
    return kind, location, name or "kv"


def _cli_shown(address: str) -> str:
    """`address` as messages show it: the password of a URL masked as PickleDBRedis masks it."""
    return _masked_url(address) if "://" in address else address  # a file path may hold an '@'


def _cli_path(kind: str, location: str) -> str:
    """The absolute path of a JSON or SQLite store; an error shows an address of that backend."""
    return _path_of(location, "STORE", {"json": "data.json", "sqlite": "app.sqlite3 or sqlite:PATH"}[kind])


def _cli_file_start(path: str, existing: bool) -> bytes:
    """Return the first 2 bytes of the regular file at `path`, b"" if there is none (an error when `existing`)."""
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode):  # anything else is refused unread; O_NONBLOCK: a FIFO would wait forever
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _O_CLOEXEC)
            try:
                info = os.fstat(fd)  # what was opened, if it was swapped since the stat
                if stat.S_ISREG(info.st_mode):
                    return os.read(fd, 2)
            finally:
                os.close(fd)
        raise _not_a_file(info.st_mode)
    except FileNotFoundError:
        if existing:
            raise _CLIError(f"{path}: no such file") from None
        return b""
    except OSError as err:
        raise _CLIError(f"cannot open {path}: {err.strerror or err}") from None


def _cli_open(address: str, stack: Any, *, existing: bool) -> Any:
    """Open the store at `address`, a JSON store loaded; existing=True: a missing file or SQLite table is an error."""
    kind, location, name = _cli_address(address)
    if kind in ("redis", "postgres"):
        scheme, rest = location.split("://", 1)
        cluster = scheme.lower().endswith("+cluster")
        try:
            if kind == "postgres":
                server: PickleDBStore = PickleDBPostgres(location, name)
            else:
                server = PickleDBRedis(f"{scheme[:-8] if cluster else scheme}://{rest}", name, cluster=cluster)
        except ImportError as err:  # the driver is missing: the library's hint, naming the store
            raise _CLIError(f"{_cli_shown(address)}: {err}") from None
        return stack.enter_context(server)
    path = _cli_path(kind, location)
    start = _cli_file_start(path, existing)
    if kind == "json":
        db = PickleDB(path, pretty=start == b"{\n")  # an indented file stays indented
        db.load()
        return db
    if existing:  # its tables, read without PickleDBSQLite, which would create the table; mode=rw creates no file
        sqlite3 = _sqlite3()
        try:
            uri = f"file:{urllib.parse.quote(path)}?mode=rw"  # not read-only, which leaves -wal and -shm behind
            with contextlib.closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn:
                tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        except sqlite3.DatabaseError as err:
            raise _CLIError(f"{path} is not a usable SQLite database ({err})") from None
        if name not in tables:
            listed = ", ".join(repr(table) for table in tables) or "none"
            base = address[: -len(name) - 1] if address.endswith(f"#{name}") else address
            raise _CLIError(f"{path} has no table {name!r} (its tables: {listed}); pick one with {base}#TABLE")
    return stack.enter_context(PickleDBSQLite(path, name))


@contextlib.contextmanager
def _cli_held_interrupt(reraise: bool = True) -> Iterator[None]:
    """Hold Ctrl-C until the block is done (a second one raises at once), then raise it unless reraise=False."""
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, hold) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if caught and reraise:
        raise KeyboardInterrupt


def _cli_store_pairs(dst: Any, pairs: Iterator[tuple[str, Any]], total: int, args: Any) -> list[str]:
    """Store `pairs` into `dst`, --batch at a time (a JSON store saved once, at the end); return their keys in order."""
    stored: list[str] = []
    written = 0  # how many of `stored` are in the store, not only in memory
    save = getattr(dst, "save", None)  # a JSON store: written by its one save
    terminal, start = sys.stderr.isatty() and not args.quiet, time.monotonic()
    drawn: float | None = None  # when the progress line was last drawn

    def progress(final: bool = False) -> None:  # `copy done / total keys, rate`, redrawn at most ten times a second
        nonlocal drawn
        now = time.monotonic()
        if terminal and (drawn is None or final or now - drawn >= 0.1):
            drawn = now  # before the write: a Ctrl-C may land right after it
            rate = len(stored) / max(now - start, 1e-6)
            sys.stderr.write(f"\r{args.command} {len(stored):,} / {total:,} keys, {rate:,.0f} keys/s ")
            sys.stderr.flush()

    try:
        while chunk := list(itertools.islice(pairs, args.batch)):
            with _cli_held_interrupt():  # a Ctrl-C now is raised once the batch is stored and counted
                dst.set_many(chunk)
                stored.extend(key for key, _ in chunk)
                written = written if save else len(stored)
            progress()
        if save:
            with _cli_held_interrupt():
                save()
                written = len(stored)
        progress(final=True)
    except (KeyboardInterrupt, Exception) as err:  # a Ctrl-C, or a store that failed halfway: say what dst holds
        interrupted = isinstance(err, KeyboardInterrupt)
        if not written and not interrupted:
            raise
        if not written:
            raise _CLIError("interrupted: no key was written; the destination is as it was", 130) from None
        raise _CLIError(
            f"{'interrupted:' if interrupted else f'{err};'} {written} of {total} keys were written, in "
            f"complete batches: the first {written} in source order, {_short(stored[0])} to "
            f"{_short(stored[written - 1])}; run again with --merge to finish",
            130 if interrupted else 2,
        ) from None
    finally:
        if drawn is not None:  # end the progress line
            print(file=sys.stderr, flush=True)
    return stored


def _cli_replace(tmp: str, target: str, _: int) -> None:
    """Rename the written temp file over `target` durably (the output of dump -o)."""
    os.replace(tmp, target)
    fd = os.open(os.path.dirname(target), os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        _fsync_dir(fd)
    finally:
        os.close(fd)


def _cli_out(data: bytes) -> None:
    sys.stdout.flush()
    view = memoryview(data)
    while view:  # a large write into a pipe its reader closed can return short instead of raising
        view = view[sys.stdout.buffer.write(view) :]
    sys.stdout.buffer.flush()


def _cli_input(file: str) -> tuple[str, bytes]:
    """Return the name messages give `file` and its bytes; "-" is stdin."""
    name = "<stdin>" if file == "-" else file
    try:
        with contextlib.nullcontext(sys.stdin.buffer) if file == "-" else open(file, "rb") as opened:
            return name, opened.read()
    except OSError as err:
        raise _CLIError(f"cannot read {name}: {err.strerror or err}") from None


def _cli_json_arg(text: str | bytes, what: str, hint: str = "") -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise _CLIError(f"{what} is not valid JSON ({err}){hint}") from None


def _cli_run(args: Any, stack: Any) -> None:
    """Run a command on one store; the input of set and import is read and checked before the store is opened."""
    command = args.command
    if command == "set":
        name, raw = _cli_input("-") if args.value == "-" else ("VALUE", args.value)
        if not args.text:
            value = _cli_json_arg(raw, name, "; pass --text to store it as a string")
        else:
            value = raw.decode() if isinstance(raw, bytes) else raw
    elif command == "import":
        name, raw = _cli_input(args.file)
        if type(data := _cli_json_arg(raw, name)) is not dict:
            raise _CLIError(f"{name} holds a JSON {_json_kind(data)}; import needs one JSON object")
    store = _cli_open(args.store, stack, existing=command not in ("set", "import"))
    if command == "keys":
        keys = store.all(args.prefix)
        _cli_out(orjson.dumps(keys) + b"\n" if args.json else b"".join(key.encode() + b"\n" for key in keys))
    elif command == "get":
        gone = object()
        if (value := store.get(args.key, gone)) is gone:
            raise _CLIError(f"key {_short(args.key)} not found in {_cli_shown(args.store)}", 1)
        _cli_out((value.encode() if args.raw and type(value) is str else orjson.dumps(value)) + b"\n")
    elif command in ("set", "remove"):
        with _cli_held_interrupt(reraise=False):  # the command's last step: a Ctrl-C lets it finish
            done = store.set(args.key, value) if command == "set" else store.remove(args.key)
            if done is not False and hasattr(store, "save"):
                store.save()
        if done is False:
            raise _CLIError(f"key {_short(args.key)} not found in {_cli_shown(args.store)}", 1)
    elif command == "dump":
        option = orjson.OPT_APPEND_NEWLINE | (orjson.OPT_INDENT_2 if args.pretty else 0)
        payload = orjson.dumps(dict(store.items(args.prefix)), option=option)
        if args.output is None:
            _cli_out(payload)
        else:
            _atomic_write(_path_of(args.output, "-o", "dump.json"), payload, _cli_replace, force=False)
    elif command == "import":
        stored = _cli_store_pairs(store, iter(data.items()), len(data), args)
        if not args.quiet:
            print(f"imported {len(stored)} keys into {_cli_shown(args.store)}")
    else:  # info
        kind, _, name = _cli_address(args.store)
        path = store.location  # a server's URL has its password masked
        where = "file" if kind in ("json", "sqlite") else "url"
        fields: dict[str, Any] = {"backend": type(store).__name__, where: path}
        if kind != "json":
            fields["hash" if kind == "redis" else "table"] = name
        fields["keys"] = store.count()
        if where == "file":
            fields["file_bytes"] = os.path.getsize(path)
        if kind == "sqlite" and os.path.isfile(path + "-wal") and (wal := os.path.getsize(path + "-wal")):
            fields["wal_bytes"] = wal
        labels = {"file_bytes": "file size", "wal_bytes": "write-ahead log"}  # the text form, with " bytes"
        text = "\n".join(f"{labels[k]}: {v} bytes" if k in labels else f"{k}: {v}" for k, v in fields.items())
        _cli_out(orjson.dumps(fields) + b"\n" if args.json else text.encode() + b"\n")


def _cli_once(pairs: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The pairs of a Redis walk, each key once (HSCAN may return a key twice); it holds the keys seen."""
    seen: set[str] = set()
    for key, value in pairs:
        if key not in seen:
            seen.add(key)
            yield key, value


def _cli_copy(args: Any, stack: Any) -> None:
    def identity(address: str) -> tuple[str, str, str]:
        kind, location, name = _cli_address(address)
        return kind, location if "://" in location else os.path.realpath(_cli_path(kind, location)), name

    if identity(args.src) == identity(args.dst):
        raise _CLIError(f"{_cli_shown(args.src)} and {_cli_shown(args.dst)} are the same store")
    src = _cli_open(args.src, stack, existing=True)
    dst = _cli_open(args.dst, stack, existing=False)
    if (held := dst.count()) and not args.merge:
        raise _CLIError(
            f"{_cli_shown(args.dst)} already holds {held} keys; copy refuses a store that is not empty: "
            "pass --merge to copy into it (keys of the source overwrite)"
        )
    total = src.count(args.prefix)
    walk = _cli_once if _cli_address(args.src)[0] == "redis" else iter  # the others give each key once
    stored = _cli_store_pairs(dst, walk(src.items(args.prefix)), total, args)
    if hasattr(dst, "load"):  # check what the file holds, not what is in memory (dropped first)
        dst.purge()
        dst.load()
    present = set(dst.all())
    if missing := [key for key in stored if key not in present]:
        raise _CLIError(
            f"{_cli_shown(args.dst)} does not hold {len(missing)} of the {len(stored)} keys copied "
            f"(first: {_short(missing[0])}); another writer may have removed them"
        )
    if not args.quiet:
        print(f"copied {len(stored)} keys from {_cli_shown(args.src)} to {_cli_shown(args.dst)}")


def main(argv: list[str] | None = None) -> int:
    """Run the `pickledb` command line with `argv` (default sys.argv[1:]); return the exit status."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # one line, no usage text
            self.exit(2, f"pickledb: error: {message} (see {self.prog} --help)\n")

    def batch_size(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"invalid batch size {text!r}: use a whole number of at least 1")
        return int(text)

    parser = Parser(
        prog="pickledb",
        description="Look inside a pickledb store, edit it, dump it, or copy it to another backend.",
        epilog=f"STORE is one of: {_CLI_FORMS}. Exit status: 0 done, 1 not found, 2 error, 130 interrupted, "
        "141 output closed early by its reader.",
    )
    parser.add_argument("--version", action="version", version=f"pickledb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    flags = {  # each command's switch
        "keys": ("--json", "print one JSON array instead"),
        "get": ("--raw", "print a string value without JSON quotes, as jq -r does"),
        "set": ("--text", "store VALUE as a string, without parsing it"),
        "dump": ("--pretty", "indent the JSON"),
        "copy": ("--merge", "copy into a DST that is not empty (keys of SRC overwrite)"),
        "info": ("--json", "print the fields as one JSON object"),
    }

    def command(name: str, arguments: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}.")
        for argument in arguments.split():
            sub.add_argument(argument.lower(), metavar=argument)
        if name in flags:
            sub.add_argument(flags[name][0], action="store_true", help=flags[name][1])
        if name in ("keys", "dump", "copy"):
            sub.add_argument("--prefix", metavar="P", help="only the keys that start with P")
        if name in ("import", "copy"):
            sub.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary line")
            hint = "pairs per set_many (default %(default)s)"
            sub.add_argument("--batch", type=batch_size, default=10_000, metavar="N", help=hint)
        return sub

    command("keys", "STORE", "print every key, one per line")
    command("get", "STORE KEY", "print the value of KEY as JSON (exit 1 if missing)")
    command("set", "STORE KEY VALUE", "store VALUE, parsed as JSON, under KEY; a VALUE of - is read from stdin")
    command("remove", "STORE KEY", "remove KEY (exit 1 if it did not exist)")
    sub = command("dump", "STORE", "print the whole store as one JSON object")
    sub.add_argument("-o", "--output", metavar="FILE", help="write it to FILE (atomically) instead")
    sub = command("import", "STORE", "store every pair of one JSON object read from FILE (default: stdin)")
    sub.add_argument("file", metavar="FILE", nargs="?", default="-", help="a JSON file, or - for stdin")
    command("copy", "SRC DST", "copy every pair of SRC into DST, then check that DST holds them")
    command("info", "STORE", "print the backend, the key count and the file size")

    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 2
    try:
        with contextlib.ExitStack() as stack, _PausedGC():  # a short run that builds many containers
            (_cli_copy if args.command == "copy" else _cli_run)(args, stack)
        return 0
    except _CLIError as err:
        message, status = str(err), err.status
    except KeyboardInterrupt:
        message, status = "interrupted", 130
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ConflictError as err:
        message = f"{err.path} was changed by another writer while this command ran; nothing was written: run it again"
        status = 2
    except Exception as err:  # the errors of a store or its driver are one line; anything else is a bug
        drivers = [getattr(sys.modules.get(m), n, None) for m, n in [("sqlite3", "Error"), ("redis", "RedisError")]]
        handled = [OSError, ValueError, TypeError, ImportError, MemoryError, RuntimeError, *drivers]
        if not isinstance(err, tuple(kind for kind in handled if isinstance(kind, type))):
            raise
        message, status = str(err) or type(err).__name__, 2
    sys.stderr.write(f"pickledb: {' '.join(message.split())}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
