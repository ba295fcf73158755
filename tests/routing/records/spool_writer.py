"""A process appending request records to a spool, for the tests that kill it or race it.

`python -m tests.routing.records.spool_writer --spool DIR --count N` appends N records (a copy of
`--template`'s JSON with a fresh id each), prints each id once its append returned (the
moment the gateway would answer), prints `done`, then exits or, with `--then wait`,
waits to be killed with its segment still open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--template", type=Path, help="a record payload to copy (default: an id only)")
    parser.add_argument("--segment-seconds", type=float, default=0.5)
    parser.add_argument("--pad", type=int, default=0, help="characters of padding in each record")
    parser.add_argument("--then", choices=["exit", "wait"], default="exit")
    return parser.parse_args()


async def append_all(buffer: Any, template: dict[str, Any], args: argparse.Namespace) -> None:
    for n in range(args.count):
        payload = {**template, "id": str(uuid.uuid4()), "n": n, "pad": "x" * args.pad}
        await buffer.append(payload)
        print(payload["id"], flush=True)
    print("done", flush=True)
    if args.then == "wait":
        await asyncio.sleep(3600)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cascadeops.settings")
    import django

    django.setup()
    from routing.records.buffers import SpoolBuffer

    buffer = SpoolBuffer(args.spool, claim_timeout_s=30.0, segment_s=args.segment_seconds)
    template = json.loads(args.template.read_text()) if args.template else {}
    asyncio.run(append_all(buffer, template, args))


if __name__ == "__main__":
    main()
