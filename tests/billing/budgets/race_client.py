"""One client process of the budget race test: N concurrent requests, status codes as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

import httpx


async def main(url: str, key: str, count: int, prompt: str) -> None:
    body = {"model": "race", "max_tokens": 6, "messages": [{"role": "user", "content": prompt}]}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(*(client.post(url, json=body) for _ in range(count)))
    print(json.dumps(Counter(str(r.status_code) for r in responses)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
