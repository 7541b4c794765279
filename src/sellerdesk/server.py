"""The API server process: what `sellerdesk serve` becomes once its checks pass.

`sellerdesk serve` checks the settings, the database and the port with the command-line tool
loaded (typer, its helpers), then replaces itself with `python -m sellerdesk.server` (exec: the
same process id, so signals, a container's PID 1 and supervisors see one process). The fresh
interpreter loads only what serving needs, before anything else:

- glibc's malloc is tuned (`kit.memory`: argon2's 19 MiB blocks are returned after each hash),
  and the heap that exists once the app has started is frozen out of the garbage collector's
  full passes (`kit.memory.heap_started`);
- with JSON logs (`LOG_JSON`, by default outside development) `rich` is left out: structlog
  imports it, and pygments with it, whenever it is installed, for the development console
  renderer that JSON logs never use (~4 MiB);
- without `AUTH_SUPABASE_JWKS_URL`, `cryptography` is left out: PyJWT imports it whenever it is
  installed, for the asymmetric algorithms that only Supabase's JWKS tokens use (~10 MiB). Our
  own access tokens are HMAC (`ALGORITHM` is HS256, HS384 or HS512), Supabase's shared-secret
  tokens are HS256.

An import of a module left out fails with `ModuleNotFoundError` naming the setting that would
bring it back. Worker processes (`--workers N`, `--reload`) import this module as their main
module, so they are prepared the same way.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

from sellerdesk.config import Settings, get_settings
from sellerdesk.kit.memory import MMAP_THRESHOLD_BYTES, freeze_heap_after_start, tune_malloc

# Why each module may be left out, and what brings it back.
LEAVE_OUT_REASONS = {
    "rich": "left out of the server process with JSON logs (LOG_JSON=false brings it back)",
    "cryptography": (
        "left out of the server process without AUTH_SUPABASE_JWKS_URL (setting it brings it back)"
    ),
}


def left_out(settings: Settings) -> frozenset[str]:
    """The top-level packages this server process does not need with these settings."""
    names = set()
    if settings.log_json:
        names.add("rich")
    if not settings.AUTH_SUPABASE_JWKS_URL:
        names.add("cryptography")
    return frozenset(names)


class LeftOut(importlib.abc.MetaPathFinder):
    """Refuses to import the given top-level packages and their submodules, as if they were
    not installed (the libraries that import them optionally fall back as they would then)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in self.names:
            reason = LEAVE_OUT_REASONS.get(top, "left out of the server process")
            raise ModuleNotFoundError(f"No module named {fullname!r} ({reason})", name=fullname)
        return None


@dataclass(frozen=True)
class Prepared:
    """What `prepare` did to this process (logged once the server's logging is set up)."""

    malloc_tuned: bool
    left_out: frozenset[str]


PREPARED: Prepared | None = None


def prepare(settings: Settings) -> Prepared:
    """Tune malloc and leave out what this server does not need.

    Call before the app or structlog is imported: a module already imported stays.
    """
    global PREPARED
    tuned = tune_malloc()
    freeze_heap_after_start()
    names = frozenset(left_out(settings) - sys.modules.keys())
    if names and not any(isinstance(finder, LeftOut) for finder in sys.meta_path):
        sys.meta_path.insert(0, LeftOut(names))
    PREPARED = Prepared(malloc_tuned=tuned, left_out=names)
    return PREPARED


def command(host: str, port: int, workers: int, reload: bool) -> list[str]:
    """The command line `sellerdesk serve` execs into (`-P`: the working directory is not
    put on sys.path, as it is not for the `sellerdesk` script)."""
    argv = [sys.executable, "-P", "-m", "sellerdesk.server"]
    argv += ["--host", host, "--port", str(port), "--workers", str(workers)]
    return [*argv, "--reload"] if reload else argv


def exec_server(
    host: str, port: int, workers: int, reload: bool, environ: Mapping[str, str] | None = None
) -> None:
    """Replace this process with the server process (never returns)."""
    argv = command(host, port, workers, reload)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, dict(os.environ if environ is None else environ))  # noqa: S606


def serve(host: str, port: int, workers: int, reload: bool) -> None:
    """Run uvicorn on the app (`sellerdesk serve`'s settings; its checks already passed)."""
    import structlog
    import uvicorn

    from sellerdesk.kit.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.LOG_LEVEL, json=settings.log_json)
    if PREPARED is not None:
        structlog.get_logger(__name__).info(
            "server_process_prepared",
            malloc_mmap_threshold=MMAP_THRESHOLD_BYTES if PREPARED.malloc_tuned else None,
            left_out=sorted(PREPARED.left_out),
        )
    uvicorn.run(
        "sellerdesk.main:app",
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        access_log=False,  # our middleware writes one structured line per request
        log_config=None,  # uvicorn's own lines go through our handler and format
        log_level=settings.LOG_LEVEL.lower(),
        timeout_graceful_shutdown=settings.GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=True,
        forwarded_allow_ips=settings.FORWARDED_ALLOW_IPS,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sellerdesk.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reload", action="store_true")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.workers, args.reload)


if __name__ in {"__main__", "__mp_main__"}:
    # `__mp_main__`: a uvicorn worker or reloader child imports this module first.
    prepare(get_settings())

if __name__ == "__main__":
    main()
