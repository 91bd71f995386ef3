"""An interstate machine in Python: `py-echo` answers every event X with X_ACK.

    python3 python/examples/echo_machine.py [--bus NAME] [--id py-echo]

It joins the bus (`$INTERSTATE_BUS`, default "default", in `$INTERSTATE_DIR` or the default
bus directory), registers its id, and for every event `X` from machine `m` sends `X_ACK` with
the same payload back to `m` (the reply to its request, when `X` was one), until it receives
`STOP`.
"""

from __future__ import annotations

import argparse
import sys

from interstate import Client, DeliveryError, Event, Machine


def main() -> int:
    ap = argparse.ArgumentParser(description="py-echo answers every event X with X_ACK")
    ap.add_argument("--bus", default=None, help="the bus name (default: $INTERSTATE_BUS or 'default')")
    ap.add_argument("--id", default="py-echo", help="the machine id to register")
    args = ap.parse_args()

    with Client.connect(bus=args.bus, executable="echo_machine.py", wait=10.0) as client:
        echo = Machine(client, args.id, state="answering")
        rtt = client.ping()
        welcome = client.link.welcome if client.link else None
        print(f"{args.id}: registered on link {welcome.link if welcome else '?'} "
              f"(hub pid {welcome.hub_pid if welcome else '?'}, ping {rtt * 1000:.2f} ms)", flush=True)
        answered = 0

        @echo.on("STOP")
        def stop(ev: Event) -> None:
            print(f"{args.id}: STOP from {ev.sender} after {answered} replies", flush=True)
            echo.stop()

        @echo.on("*")
        def answer(ev: Event) -> None:
            nonlocal answered
            ev.reply(ev.name + "_ACK", ev.payload)
            answered += 1
            print(f"{args.id}: {ev.name} from {ev.sender} ({len(ev.payload)} bytes) -> {ev.name}_ACK",
                  flush=True)

        @echo.on_failure
        def failed(e: DeliveryError) -> None:
            print(f"{args.id}: {e}", file=sys.stderr, flush=True)

        echo.run()
        # Every reply acknowledged or reported before leaving: nothing goes unconfirmed.
        try:
            client.flush(timeout=5.0)
        except (DeliveryError, TimeoutError) as e:
            print(f"{args.id}: {e}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
