"""What every simulator shares: ``with`` around start/stop, the foreground
loop of its ``python -m`` entry point (until Ctrl-C or SIGTERM), and the
slow-drip answer."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Self

from werkzeug.wrappers import Response

# A slow-drip answer sends one byte of its body per this many seconds.
DRIP_INTERVAL_SECONDS = 0.5


def dripping(response: Response, interval_seconds: float = DRIP_INTERVAL_SECONDS) -> Response:
    """``response`` with its status and headers at once and then its body one byte per
    ``interval_seconds``: every read a client makes succeeds, so only a deadline on the whole
    call (not a per-read timeout) ends the wait. ``Content-Length`` keeps the full length."""
    body = response.get_data()

    def trickle() -> Iterator[bytes]:
        for index in range(len(body)):
            if index:
                time.sleep(interval_seconds)
            yield body[index : index + 1]

    return Response(trickle(), status=response.status, headers=list(response.headers.items()))


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
