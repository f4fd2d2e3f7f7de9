"""``python -m airflow_monid.testing``: run the emulator as a standalone process until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_monid.testing.emulator import Emulator


def seed_exa(emu: Emulator) -> None:
    """Demo monitors so a fresh process can serve an Exa sensor without any scripting."""
    emu.exa.add_monitor("mon_funding", family="search", name="Startup funding rounds")
    emu.exa.add_run("mon_funding", status="completed")
    emu.exa.add_monitor("wsmon_demo", family="websets", name="Websets demo monitor")
    emu.exa.add_run("wsmon_demo", status="completed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_monid.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--monid-key", default=None, help="required Monid key (default: accept any)")
    parser.add_argument("--exa-key", default=None, help="required Exa key (default: accept any)")
    parser.add_argument("--seed-exa", action="store_true", help="add demo monitors mon_funding, wsmon_demo")
    args = parser.parse_args(argv)

    emu = Emulator(monid_api_key=args.monid_key, exa_api_key=args.exa_key, host=args.host, port=args.port)
    if args.seed_exa:
        seed_exa(emu)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    emu.start()
    print(f"Emulator listening on {emu.url}", flush=True)
    try:
        # Event.wait with a timeout keeps the main thread responsive to signals on every platform.
        while not stop.wait(3600):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
