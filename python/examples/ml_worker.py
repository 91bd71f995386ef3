"""The seed's language-interop scenario, the Python side: an "ML" worker on the bus.

    python3 python/examples/ml_worker.py [--bus NAME] [--id ml-worker]

It registers `ml-worker` and answers each `PREDICT` request, whose payload is
`{"features": [x, y]}`, with `PREDICTION` `{"label": "a"|"b", "p": 0.97}` from a logistic
regression it trained at start (pure Python: a stand-in for a real model, which would load
its weights here instead). The UI is a JSON chart run by the Rust runtime,
python/examples/ui.json; docs/python.md shows the commands. A `STOP` event ends it.
Its state (`loading`, `ready`, `predicting`) shows in `interstate status ml-worker`.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from typing import List, Tuple

from interstate import Client, Event, Machine


def train(seed: int = 7) -> Tuple[float, float, float]:
    """A logistic regression on two Gaussian blobs: class a around (-1, -1), b around (1, 1)."""
    rng = random.Random(seed)
    data: List[Tuple[float, float, int]] = []
    for label, centre in ((0, -1.0), (1, 1.0)):
        for _ in range(200):
            data.append((rng.gauss(centre, 0.6), rng.gauss(centre, 0.6), label))
    w0 = w1 = b = 0.0
    for _ in range(200):
        g0 = g1 = gb = 0.0
        for x, y, label in data:
            p = 1.0 / (1.0 + math.exp(-(w0 * x + w1 * y + b)))
            g0 += (p - label) * x
            g1 += (p - label) * y
            gb += p - label
        n = len(data)
        w0 -= 0.5 * g0 / n
        w1 -= 0.5 * g1 / n
        b -= 0.5 * gb / n
    return w0, w1, b


def main() -> int:
    ap = argparse.ArgumentParser(description="an ML worker answering PREDICT requests")
    ap.add_argument("--bus", default=None, help="the bus name (default: $INTERSTATE_BUS or 'default')")
    ap.add_argument("--id", default="ml-worker", help="the machine id to register")
    args = ap.parse_args()

    with Client.connect(bus=args.bus, executable="ml_worker.py", wait=10.0) as client:
        worker = Machine(client, args.id, state="loading")
        w0, w1, b = train()
        worker.state = "ready"
        worker.context["model"] = {"w": [round(w0, 3), round(w1, 3)], "b": round(b, 3)}
        served = 0

        @worker.on("PREDICT")
        def predict(ev: Event) -> None:
            nonlocal served
            worker.state = "predicting"
            features = (ev.data() or {}).get("features", [0.0, 0.0])
            x, y = float(features[0]), float(features[1])
            p = 1.0 / (1.0 + math.exp(-(w0 * x + w1 * y + b)))
            label = "b" if p >= 0.5 else "a"
            print(f"{args.id}: PREDICT {features} from {ev.sender} -> {label}", flush=True)
            ev.reply("PREDICTION", {"label": label, "p": round(max(p, 1 - p), 3)})
            served += 1
            worker.context["served"] = served
            worker.state = "ready"

        @worker.on("STOP")
        def stop(ev: Event) -> None:
            print(f"{args.id}: STOP from {ev.sender} after {served} predictions", flush=True)
            worker.stop()

        print(f"{args.id}: ready on bus {client.path}", flush=True)
        worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
