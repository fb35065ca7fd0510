"""A JSON-backed key-value store with one sync/async API and atomic, durable saves."""

# Copyright (c) 2026, the pickledb authors.
# SPDX-License-Identifier: BSD-3-Clause
# This file is the whole library: copy it into a project together with the
# LICENSE text and `pip install orjson aiofiles` (plus aiosqlite for async use
# of PickleDBSQLite).

from __future__ import annotations

import errno
import functools
import gc
import itertools
import os
import secrets
import signal
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

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None  # type: ignore[assignment]

__all__ = ("PickleDB", "PickleDBSQLite", "CorruptFileError", "ConflictError", "MISSING")
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

# The largest file PickleDB writes. orjson parses a file in one buffer of about
# 12 times its size, and inputs past about 2.1e9 bytes have failed to load;
# save() refuses to write a file that load() may not read back.
_MAX_FILE_BYTES = 2**31 - 1
# How deeply orjson nests containers when writing and reading.
_MAX_DEPTH_WRITE = 254  # the database's own object included
_MAX_DEPTH_READ = 1024
# The longest file name most file systems accept (NAME_MAX), in bytes.
_NAME_MAX = 255
# How long save() waits for another process's save of the same directory.
_LOCK_TIMEOUT = 30.0

_SQLITE_HINT = 'async use of PickleDBSQLite needs aiosqlite: pip install "pickledb[sqlite]"'


# --- exceptions -------------------------------------------------------------


class CorruptFileError(ValueError):
    """A database file exists but does not hold a JSON object; `.path` names it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}; the file was left as it is")
        self.path = path
        self.problem = problem


class ConflictError(RuntimeError):
    """save() refused to replace a file this PickleDB has not seen; `.path` names it.

    Nothing was written and memory is unchanged. Call load() (which replaces
    memory with the file) and redo the change, or save(force=True) to replace
    the file anyway.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"{path} {problem}; nothing was written. Call load() to read it (this replaces the data in "
            "memory) and redo your change, or save(force=True) to replace the file anyway"
        )
        self.path = path


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
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _async_caller():
            return _off_loop(functools.partial(blocking, self, *args, **kwargs))
        return blocking(self, *args, **kwargs)

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


# What a PickleDB remembers of its file after a load() or save(): None when the
# file was missing or empty, else (device, inode, size, mtime in ns). A rename
# keeps all four, so the temp file's fingerprint is the saved file's.
_Fingerprint = tuple[int, int, int, int]
# What a fresh instance remembers: nothing.
_NEVER = "never"

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _fingerprint(info: os.stat_result) -> _Fingerprint | None:
    if info.st_size == 0:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _not_a_file(mode: int) -> OSError:
    """The error for a path that is not a regular file (strerror only: callers add the path)."""
    if stat.S_ISDIR(mode):
        return IsADirectoryError(errno.EISDIR, "it is a directory, not a file")
    kinds = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}
    kind = kinds.get(stat.S_IFMT(mode), "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return OSError(errno.EINVAL, f"it is {kind}; pickledb reads and writes only regular files (or links to one)")


# signal.pthread_sigmask turns every signal number it returns into an enum
# member, which costs more than a save's other system calls together: call
# the C function of the _signal module it wraps (loaded by `import signal`),
# with every signal number worked out once.
_pthread_sigmask: Callable[[int, Iterable[int]], set[int]] | None = getattr(
    sys.modules.get("_signal"), "pthread_sigmask", None
)
_ALL_SIGNALS: frozenset[int] = frozenset()


class _SignalsHeld:
    """Hold back signal handlers while the save lock is held.

    A handler that raises (KeyboardInterrupt, a timeout) between two steps of
    a save's check and rename could leave a descriptor open or the lock held.
    Python runs handlers only in the main thread; there the signals are
    blocked for the locked section (fully effective when no other thread lets
    the signal in) and handled right after it, or during pause().
    """

    __slots__ = ("old",)

    def __enter__(self) -> _SignalsHeld:
        global _ALL_SIGNALS
        self.old: set[int] | None = None
        mask = _pthread_sigmask
        if mask is None or threading.current_thread() is not threading.main_thread():
            return self
        if not _ALL_SIGNALS:  # all but the faults, which faulthandler must still see
            faults = {getattr(signal, name, -1) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT")}
            _ALL_SIGNALS = frozenset(int(number) for number in signal.valid_signals() if number not in faults)
        old = mask(signal.SIG_BLOCK, ())  # pending handlers may run here: nothing is held yet
        self.old = old
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
        if self.old is None or _pthread_sigmask is None:
            time.sleep(seconds)
            return
        try:
            _pthread_sigmask(signal.SIG_SETMASK, self.old)
            time.sleep(seconds)
        finally:
            _pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _read_json(path: str) -> tuple[dict[str, Any], _Fingerprint | None]:
    """Return the JSON object stored at `path` and the fingerprint of the file read.

    A missing or empty file gives ({}, None). Anything but a regular file (or a
    link to one) is refused before it is opened: a FIFO would block, a device
    would be read until memory runs out.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
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
    fingerprint = _fingerprint(info)
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
    return data, fingerprint


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
    deadline = time.monotonic() + _LOCK_TIMEOUT
    pause = 0.0005
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


def _temp_path(directory: str, name: str) -> str:
    """A new temp file name beside `name`, short enough for the file system (NAME_MAX)."""
    suffix = f".{secrets.token_hex(8)}.tmp"
    room = _NAME_MAX - 1 - len(suffix)
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = os.fsdecode(encoded[:room])
    return os.path.join(directory, f".{name}{suffix}")


def _atomic_write(path: str, payload: bytes, commit: Callable[[str, str, _Fingerprint | None], None]) -> None:
    """Write `payload` to a new temp file beside `path`, then let `commit` rename it.

    The temp file is fsynced and keeps the mode of the file it replaces (a
    new one gets 0o666 minus the umask); commit(tmp, target, fingerprint)
    renames it over the target (or drops it) under the save locks. On any
    error, an interruption included, the temp file is removed, the old file
    is untouched unless the rename happened, and an OSError naming `path` is
    raised. A symbolic link at `path` is followed: its target is replaced,
    and anything but a regular file there is refused.
    """
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    tmp = ""
    try:
        try:
            try:
                info = os.stat(target)
            except FileNotFoundError:
                mode: int | None = None
            else:
                if not stat.S_ISREG(info.st_mode):
                    raise _not_a_file(info.st_mode)  # never replace a device node or a FIFO
                mode = stat.S_IMODE(info.st_mode)
            while True:
                tmp = _temp_path(directory, name)
                try:
                    # os.open as the opener: the descriptor belongs to the file
                    # object from the moment it exists.
                    file = open(tmp, "xb", buffering=0, opener=functools.partial(os.open, mode=0o666))
                    break
                except FileExistsError:  # pragma: no cover - 64 random bits collided
                    tmp = ""
                    continue
            with file:
                if mode is not None:
                    os.chmod(tmp, mode)
                fd = file.fileno()
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                fingerprint = _fingerprint(os.fstat(fd))
            commit(tmp, target, fingerprint)
        except BaseException:
            if tmp:
                _unlink(tmp)  # gone already when the rename happened
            raise
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
        # Every load() and save() takes a number from one counter: a save that
        # finds a newer save already done drops its older snapshot.
        self._numbers = itertools.count(1)
        # number -> fingerprint of the file as that load or save left it; the
        # highest number is what this instance has seen. Kept as dicts that are
        # only ever added to and pruned below the maximum, so that a save run
        # by a signal handler in the middle of another can never be undone.
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

    def load(self) -> Any:
        """Replace the data in memory with the file's; return True.

        A missing or empty file gives an empty database. A file that is not a
        JSON object raises CorruptFileError (a ValueError) naming it, and
        anything but a regular file raises OSError naming it; either way
        memory and file are unchanged. Awaitable in async code; a cancelled
        load changes nothing in memory.
        """
        if _async_caller():
            return self._load_async()
        number = next(self._numbers)
        data, fingerprint = _read_json(self.location)
        self._loaded(number, data, fingerprint)
        return True

    async def _load_async(self) -> bool:
        number = next(self._numbers)
        data, fingerprint = await _off_loop(_read_json, self.location)
        # Memory changes here, on the loop, only if the read was not cancelled.
        self._loaded(number, data, fingerprint)
        return True

    def _loaded(self, number: int, data: dict[str, Any], fingerprint: _Fingerprint | None) -> None:
        self._check_fork()
        with self._lock:
            self._data = data
            self._remember(number, fingerprint, saved=False)

    @_dual
    def save(self, force: bool = False) -> bool:
        """Write the whole database to the file atomically and durably; return True.

        Refuses with ConflictError when the file exists and is not the one
        this instance last loaded or saved (another program or instance wrote
        it, or it was never loaded); force=True replaces it anyway. A value
        JSON cannot hold raises TypeError naming its key; an I/O failure
        raises OSError naming the file. In every case the file on disk and
        the data in memory stay as they were. Awaitable in async code.
        """
        self._check_fork()
        number = next(self._numbers)  # before the snapshot: a higher number holds a later one
        payload = self._encode()
        if len(payload) > _MAX_FILE_BYTES:
            raise ValueError(
                f"cannot save {self.location}: the file would be {len(payload)} bytes, more than the "
                f"{_MAX_FILE_BYTES} bytes orjson can load back; the file was not changed. Keep data this "
                "large in PickleDBSQLite, which stores one row per key"
            )
        _atomic_write(self.location, payload, functools.partial(self._commit, number, force))
        return True

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's locks and temp files are not ours
            fd = self._dir_fd
            self._fresh_locks()
            if fd >= 0:
                try:
                    os.close(fd)  # the parent's own descriptor keeps its lock
                except OSError:
                    pass

    def _seen(self) -> object:
        marks = self._marks
        return marks[max(marks)] if marks else _NEVER

    def _remember(self, number: int, fingerprint: _Fingerprint | None, *, saved: bool) -> None:
        marks, saves = self._marks, self._saves
        marks[number] = fingerprint
        if saved:
            saves.add(number)
        newest = max(marks)
        for old in [n for n in marks if n < newest]:
            marks.pop(old, None)
        newest_save = max(saves, default=0)
        for old in [n for n in saves if n < newest_save]:
            saves.discard(old)

    def _commit(self, number: int, force: bool, tmp: str, target: str, fingerprint: _Fingerprint | None) -> None:
        """Check the file and rename the temp file over it, under both save locks.

        The cross-process lock is an flock on the directory, which every
        pickledb save of a file there takes; the kernel drops it when a
        process dies, so a crash never leaves a stale lock, and no lock file
        is needed. A save run by a signal handler in the middle of this one
        (same thread) shares the open directory instead of waiting for itself.
        """
        with self._lock, _SignalsHeld() as held:
            owner = self._dir_fd < 0
            if owner and fcntl is not None:
                self._dir_fd = os.open(os.path.dirname(target), os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
            try:
                if self._dir_fd >= 0:
                    _flock(self._dir_fd, os.path.dirname(target), held)
                if self._replace(number, force, tmp, target, fingerprint) and self._dir_fd >= 0:
                    _fsync_dir(self._dir_fd)
            finally:
                if owner and self._dir_fd >= 0:
                    fd, self._dir_fd = self._dir_fd, -1
                    try:
                        assert fcntl is not None
                        fcntl.flock(fd, fcntl.LOCK_UN)  # also if a forked child shares the descriptor
                    finally:
                        os.close(fd)

    def _replace(self, number: int, force: bool, tmp: str, target: str, fingerprint: _Fingerprint | None) -> bool:
        """Rename tmp over target unless a later snapshot is saved; return True if it did."""
        inflight = self._inflight
        inflight[number] = (tmp, fingerprint)
        try:
            # Other entries belong to a save of this thread that a signal handler
            # interrupted: remove their temp files, so that they cannot rename
            # an older snapshot over this one when they resume.
            for other, (other_tmp, _) in list(inflight.items()):
                if other < number:
                    _unlink(other_tmp)
            if max(self._saves, default=0) > number:  # a later snapshot is already saved
                _unlink(tmp)
                return False
            if not force:
                try:
                    self._check_unchanged(target)
                except ConflictError:
                    if max(self._saves, default=0) > number:  # a handler saved between the stat and the check
                        _unlink(tmp)
                        return False
                    raise
            try:
                os.replace(tmp, target)
            except FileNotFoundError:
                if max(self._saves, default=0) > number:  # a handler's later save removed our temp file
                    return False
                raise
            self._remember(number, fingerprint, saved=True)
            return True
        except BaseException:
            # Interrupted (a signal handler raised) after the rename: the file is
            # the one we wrote, so remember it, or the next save would conflict.
            try:
                if fingerprint is not None and _fingerprint(os.stat(target)) == fingerprint:
                    self._remember(number, fingerprint, saved=True)
            except OSError:
                pass
            raise
        finally:
            inflight.pop(number, None)

    def _check_unchanged(self, target: str) -> None:
        try:
            info = os.stat(target)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file(info.st_mode)
        on_disk = _fingerprint(info)
        if on_disk is None:  # an empty file holds nothing to lose
            return
        seen = self._seen()
        if on_disk == seen or any(on_disk == other for _, other in list(self._inflight.values())):
            return
        if seen == _NEVER:
            raise ConflictError(self.location, "exists and this PickleDB never loaded it")
        raise ConflictError(self.location, "was changed on disk since this PickleDB last loaded or saved it")

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
