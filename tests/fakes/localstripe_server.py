"""Run localstripe (a Stripe emulator; GPL, a test tool only) on 127.0.0.1 with its store in a
directory of our choosing: `python -m tests.fakes.localstripe_server PORT STORE_DIR`.

localstripe's own `start()` listens on every interface and pickles to /tmp/localstripe.pickle,
which parallel test runs would share; this wrapper binds loopback and moves the store.
"""

from __future__ import annotations

import logging
import pickle
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from localstripe import resources, server


def main() -> None:
    port = int(sys.argv[1])
    store_file = Path(sys.argv[2]) / "localstripe.pickle"

    def dump_to_disk(self: Any) -> None:
        with store_file.open("wb") as f:
            pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
