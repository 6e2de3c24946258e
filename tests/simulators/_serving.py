"""What every simulator shares: ``with`` around start/stop, and the foreground
loop of its ``python -m`` entry point (until Ctrl-C or SIGTERM)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Mapping
from typing import Self


class ServedInThread:
    """Mixin: ``with Simulator(...) as running:`` starts it and always stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def print_exports(banner: str, env: Mapping[str, str]) -> None:
    """The banner, then one ``export NAME=value`` line per setting the service reads."""
    print(banner)
    for name, value in env.items():
        print(f"export {name}={value}")
    sys.stdout.flush()


def serve_until_stopped() -> None:
    """Block the main thread while the simulator serves in its own; return on Ctrl-C or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
