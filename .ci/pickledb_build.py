"""The build backend: flit_core's, with pickledb's types added to the wheel.

mypy reads the types of an installed module only from a package marked
py.typed (PEP 561), which a single-file module cannot carry. So the wheel
also holds pickledb-stubs/__init__.pyi, a stub-only package that is a copy of
the wheel's own pickledb.py, made as the wheel is built: it cannot drift from
the code. Editable installs (which run the checkout's file) get no stub. This
file lives in .ci/ beside the CI script, away from the library's own files.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from typing import Any

from flit_core import buildapi
from flit_core.buildapi import (  # noqa: F401 - the other hooks, as flit_core has them
    build_editable,
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

STUB = "pickledb-stubs/__init__.pyi"


def build_wheel(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    """Build flit_core's wheel, then add the stub to it; return the wheel's file name."""
    name: str = buildapi.build_wheel(wheel_directory, config_settings, metadata_directory)
    add_stub(os.path.join(wheel_directory, name))
    return name


def add_stub(wheel: str) -> None:
    """Rewrite `wheel` with STUB, a copy of its pickledb.py, listed in its RECORD."""
    temp = wheel + ".part"
    with zipfile.ZipFile(wheel) as old, zipfile.ZipFile(temp, "w") as new:
        entries = old.infolist()
        record = next(info for info in entries if info.filename.endswith(".dist-info/RECORD"))
        for info in entries:
            if info is not record:
                new.writestr(info, old.read(info))
        module = old.getinfo("pickledb.py")
        data = old.read(module)
        stub = zipfile.ZipInfo(STUB, module.date_time)
        stub.external_attr, stub.compress_type = module.external_attr, module.compress_type
        new.writestr(stub, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines = old.read(record).decode().splitlines(keepends=True)
        lines.insert(-1, f"{STUB},sha256={digest},{len(data)}\n")  # RECORD's own line stays last
        new.writestr(record, "".join(lines))
    os.replace(temp, wheel)
