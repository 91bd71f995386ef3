"""An interstate machine in Python: `py-echo` answers every event X with X_ACK.

    python3 echo_machine.py [--bus NAME] [--id py-echo]

It joins the bus (`$INTERSTATE_BUS`, default "default", in `$INTERSTATE_DIR` or the default
bus directory), registers its id, and for every event `X` from machine `m` sends `X_ACK` with
the same payload back to `m` (the reply to its request, when `X` was one), until it receives
`STOP`. Standard library only.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interstate_client import Client, Deliver, DeliveryFailed, Disconnected  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bus", default=None, help="the bus name (default: $INTERSTATE_BUS or 'default')")
    ap.add_argument("--id", default="py-echo", help="the machine id to register")
    args = ap.parse_args()

    with Client.connect(bus=args.bus, executable="echo_machine.py", wait=10.0) as c:
        c.register(args.id)
        rtt = c.ping()
        print(f"{args.id}: registered on link {c.welcome.link} (hub pid {c.welcome.hub_pid}, "
              f"ping {rtt * 1000:.2f} ms)", flush=True)
        answered = 0
        while True:
            try:
                f = c.recv()
            except Disconnected as e:
                print(f"{args.id}: {e}", file=sys.stderr, flush=True)
                return 1
            if isinstance(f, Deliver):
                if f.to != args.id:
                    continue
                if f.event == "STOP":
                    print(f"{args.id}: STOP from {f.from_} after {answered} replies", flush=True)
                    c.close("stopped")
                    return 0
                c.reply(args.id, f, f.event + "_ACK", f.payload)
                answered += 1
                print(f"{args.id}: {f.event} from {f.from_} ({len(f.payload)} bytes) -> {f.event}_ACK",
                      flush=True)
            elif isinstance(f, DeliveryFailed):
                print(f"{args.id}: {f.event} to {f.to} not delivered: {f.reason}", file=sys.stderr,
                      flush=True)


if __name__ == "__main__":
    sys.exit(main())
