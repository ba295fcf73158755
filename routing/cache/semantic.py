"""The semantic cache: a prompt close enough in meaning to an earlier one gets its answer.

Per policy and off by default (`Policy.semantic_cache`): after an exact miss, the last user
message is embedded and compared with the policy's recent prompts; everything else, and the
prompt's numbers and negations, must match exactly. A share of hits is re-asked off the
answer path (`verify.semantic_check_run`) to measure false hits. See docs/cache.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
from django.conf import settings
from numpy.typing import NDArray
from redis.typing import EncodableT, FieldT

from common import redis as shared_redis
from routing.cache.exact import CachedAnswer, CacheHit, answer_loads, policy_namespace, redis_guard, request_digest
from routing.engine import embeddings
from routing.engine.types import ChatRequest, PolicySnapshot

logger = logging.getLogger(__name__)

Vector = NDArray[np.float32]
PRECONTEXT_ROLES = frozenset({"system", "developer"})
# Index windows start this small and double up to CASCADEOPS_SEMANTIC_INDEX_SIZE.
INITIAL_ROWS = 64
# Embedded mode: windows of this many policy versions are kept; older ones are dropped.
MAX_LOCAL_NAMESPACES = 64

# A minus sign counts unless it joins two numbers ("3-5" is a range, not -5).
NUMBER = re.compile(r"(?:(?<![\w.])-)?\d+(?:[.,]\d+)*")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen")  # fmt: skip
NUMBER_WORDS = {word: str(value) for value, word in enumerate(UNITS.split(" "))} | {
    "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70",
    "eighty": "80", "ninety": "90", "hundred": "100", "thousand": "1000", "million": "1000000",
    "billion": "1000000000", "dozen": "12", "half": "0.5", "twice": "2",
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6",
    "seventh": "7", "eighth": "8", "ninth": "9", "tenth": "10",
}  # fmt: skip
NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "without", "cannot"}
)
# Contractions typed without their apostrophe: each is a "not" too.
BARE_CONTRACTIONS = frozenset({
    "isnt", "arent", "wasnt", "werent", "dont", "doesnt", "didnt", "cant", "couldnt", "wont", "wouldnt",
    "shouldnt", "hasnt", "havent", "hadnt", "mustnt", "neednt", "aint",
})  # fmt: skip


# --- Which requests, and what must match exactly -----------------------------------------


def conversation_allowed(policy: PolicySnapshot, chat: ChatRequest) -> bool:
    """A request ending in a user message; single-turn unless the policy allows more."""
    if not chat.messages or chat.messages[-1].role != "user":
        return False
    earlier = chat.messages[:-1]
    return policy.semantic_multi_turn or all(m.role in PRECONTEXT_ROLES for m in earlier)


def numbers_in(text: str) -> list[str]:
    """The numbers a prompt mentions, digits or words, normalised ("1,000" and "1000" alike)."""
    found = []
    for raw in NUMBER.findall(text):
        cleaned = raw.replace(",", "")
        try:
            found.append(format(Decimal(cleaned).normalize(), "f"))
        except ArithmeticError:
            found.append(cleaned)
    found += [NUMBER_WORDS[w] for w in WORD.findall(text.lower()) if w in NUMBER_WORDS]
    return sorted(found)


def negations_in(text: str) -> list[str]:
    """The prompt's negation words; every "n't" (or "nt" without its apostrophe) and "cannot" is "not"."""
    words = WORD.findall(text.lower().replace("’", "'"))
    return sorted(_negation(w) for w in words if w in NEGATIONS or w in BARE_CONTRACTIONS or w.endswith("n't"))


def _negation(word: str) -> str:
    return "not" if word.endswith("n't") or word in BARE_CONTRACTIONS or word == "cannot" else word


def guard_signature(prompt: str) -> str:
    """What two prompts must share, whatever their embeddings say: numbers and negations."""
    return json.dumps([numbers_in(prompt), negations_in(prompt)], separators=(",", ":"))


def match_key(chat: ChatRequest) -> int:
    """One 64-bit key for everything that must match exactly (see docs/cache.md)."""
    context = request_digest(replace(chat, messages=chat.messages[:-1]))
    raw = f"{context}|{guard_signature(chat.messages[-1].content)}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True, slots=True)
class Probe:
    """A request as the semantic index sees it: its namespace, exact-match key and vector."""

    namespace: str
    match: int
    vector: Vector


async def probe(policy: PolicySnapshot, chat: ChatRequest) -> Probe | None:
    """The request's probe, or None when the policy or the request takes no part."""
    if not policy.semantic_cache or not conversation_allowed(policy, chat):
        return None
    if chat.structured or chat.options:
        # A nearby prompt's answer is no answer to other tools, another schema or other sampling
        # parameters: such requests are matched exactly or not at all.
        return None
    prompt = chat.messages[-1].content
    if not prompt.strip():
        return None
    vector = await _embed_off_loop(prompt)
    if vector is None:
        return None
    namespace = f"{settings.CASCADEOPS_CACHE_PREFIX}:semantic:{policy_namespace(policy)}"
    return Probe(namespace=namespace, match=match_key(chat), vector=vector)


async def _embed_off_loop(text: str) -> Vector | None:
    try:
        return await asyncio.get_running_loop().run_in_executor(None, embeddings.embed_whole, text)
    except Exception:
        logger.exception("Semantic cache: the prompt could not be embedded; exact matches only")
        return None


# --- The index -----------------------------------------------------------------------------


class VectorWindow:
    """The most recent `capacity` prompt vectors of one policy, searched by brute force."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 1)
        rows = min(INITIAL_ROWS, self.capacity)
        self.vectors = np.zeros((rows, embeddings.DIMENSIONS), dtype=np.float32)
        self.matches = np.zeros(rows, dtype=np.int64)
        self.expires = np.zeros(rows, dtype=np.float64)  # wall-clock seconds
        self.ids: list[str] = [""] * rows
        self.added = 0

    def add(self, entry_id: str, vector: Vector, match: int, expires_at: float) -> str:
        """Add one entry; returns the id of the entry it pushed out ("" if none)."""
        if self.added >= len(self.ids) and len(self.ids) < self.capacity:
            self._grow()
        slot = self.added % len(self.ids)
        evicted = self.ids[slot]
        self.vectors[slot], self.matches[slot], self.expires[slot], self.ids[slot] = vector, match, expires_at, entry_id
        self.added += 1
        return evicted

    def nearest(self, vector: Vector, match: int, threshold: float, now: float) -> tuple[str, float] | None:
        """The most similar live entry with the same match key, if it reaches `threshold`."""
        filled = min(self.added, len(self.ids))
        candidates = np.flatnonzero((self.matches[:filled] == match) & (self.expires[:filled] > now))
        if candidates.size == 0:
            return None
        similarities = self.vectors[candidates] @ vector
        best = int(np.argmax(similarities))
        similarity = float(similarities[best])
        return (self.ids[int(candidates[best])], similarity) if similarity >= threshold else None

    def _grow(self) -> None:
        rows = min(len(self.ids) * 2, self.capacity)
        extra = rows - len(self.ids)
        self.vectors = np.concatenate([self.vectors, np.zeros((extra, self.vectors.shape[1]), dtype=np.float32)])
        self.matches = np.concatenate([self.matches, np.zeros(extra, dtype=np.int64)])
        self.expires = np.concatenate([self.expires, np.zeros(extra, dtype=np.float64)])
        self.ids += [""] * extra


class SemanticIndex(Protocol):
    async def nearest(self, probe: Probe, threshold: float) -> tuple[CachedAnswer, float] | None: ...

    async def add(self, probe: Probe, answer: CachedAnswer, ttl_s: int) -> None: ...


class LocalIndex:
    """Vectors and answers in the process (embedded mode)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.windows: OrderedDict[str, VectorWindow] = OrderedDict()
        self.answers: dict[str, CachedAnswer] = {}

    async def nearest(self, probe: Probe, threshold: float) -> tuple[CachedAnswer, float] | None:
        window = self.windows.get(probe.namespace)
        found = window.nearest(probe.vector, probe.match, threshold, time.time()) if window else None
        if found is None:
            return None
        answer = self.answers.get(found[0])
        return (answer, found[1]) if answer is not None else None

    async def add(self, probe: Probe, answer: CachedAnswer, ttl_s: int) -> None:
        entry_id = uuid.uuid4().hex
        evicted = self._window(probe.namespace).add(entry_id, probe.vector, probe.match, time.time() + ttl_s)
        self.answers.pop(evicted, None)
        self.answers[entry_id] = answer

    def _window(self, namespace: str) -> VectorWindow:
        window = self.windows.get(namespace)
        if window is None:
            window = self.windows[namespace] = VectorWindow(self.capacity)
            while len(self.windows) > MAX_LOCAL_NAMESPACES:
                _, dropped = self.windows.popitem(last=False)
                for entry_id in dropped.ids:
                    self.answers.pop(entry_id, None)
        self.windows.move_to_end(namespace)
        return window


class RedisIndex:
    """Vectors in a capped Redis stream per policy, mirrored by each worker; answers as keys.

    A lookup reads only the stream entries added since this worker's last look (usually
    none or a few), searches its mirror, and GETs the one answer it picked.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.windows: OrderedDict[str, tuple[VectorWindow, str]] = OrderedDict()  # namespace → (window, last id)

    async def nearest(self, probe: Probe, threshold: float) -> tuple[CachedAnswer, float] | None:
        window = await self._synced(probe.namespace)
        found = window.nearest(probe.vector, probe.match, threshold, time.time()) if window else None
        if found is None:
            return None
        key = f"{probe.namespace}:entry:{found[0]}"
        value = await redis_guard.run("GET", lambda: shared_redis.async_client().get(key))
        answer = answer_loads(value) if isinstance(value, bytes) else None
        return (answer, found[1]) if answer is not None else None

    async def add(self, probe: Probe, answer: CachedAnswer, ttl_s: int) -> None:
        entry_id = uuid.uuid4().hex
        value = answer.dumps()
        fields: dict[FieldT, EncodableT] = {
            "id": entry_id,
            "m": str(probe.match),
            "x": repr(time.time() + ttl_s),
            "v": probe.vector.tobytes(),
        }

        async def write() -> None:
            pipe = shared_redis.async_client().pipeline(transaction=False)
            pipe.set(f"{probe.namespace}:entry:{entry_id}", value, ex=ttl_s)
            pipe.xadd(f"{probe.namespace}:vectors", fields, maxlen=self.capacity, approximate=True)
            # The stream outlives its newest entry by nothing: a policy version no one
            # uses any more leaves nothing behind.
            pipe.expire(f"{probe.namespace}:vectors", ttl_s)
            await pipe.execute()

        await redis_guard.run("semantic store", write)

    async def _synced(self, namespace: str) -> VectorWindow | None:
        known = self.windows.get(namespace)
        stream = f"{namespace}:vectors"
        if known is None:
            entries = await redis_guard.run(
                "XREVRANGE", lambda: shared_redis.async_client().xrevrange(stream, count=self.capacity)
            )
            entries = list(reversed(entries)) if entries is not None else None
        else:
            last = known[1]
            entries = await redis_guard.run(
                "XRANGE", lambda: shared_redis.async_client().xrange(stream, min=f"({last}", count=self.capacity)
            )
        if entries is None:
            return known[0] if known else None
        return self._apply(namespace, entries)

    def _apply(self, namespace: str, entries: list[Any]) -> VectorWindow:
        # No await from here on: concurrent lookups on this loop never apply an entry twice.
        window, last = self.windows.get(namespace) or (VectorWindow(self.capacity), "0-0")
        for raw_id, fields in entries:
            stream_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            if _stream_order(stream_id) <= _stream_order(last):
                continue
            vector = np.frombuffer(fields[b"v"], dtype=np.float32)
            window.add(fields[b"id"].decode(), vector, int(fields[b"m"]), float(fields[b"x"]))
            last = stream_id
        self.windows[namespace] = (window, last)
        self.windows.move_to_end(namespace)
        while len(self.windows) > MAX_LOCAL_NAMESPACES:
            self.windows.popitem(last=False)
        return window


def _stream_order(stream_id: str) -> tuple[int, int]:
    millis, _, sequence = stream_id.partition("-")
    return int(millis), int(sequence or 0)


_indexes: dict[tuple[str, bool], SemanticIndex] = {}


def semantic_index() -> SemanticIndex:
    """This process's index: mirrored from Redis when `REDIS_URL` is set, else in-process."""
    key = (settings.CASCADEOPS_CACHE_PREFIX, bool(settings.REDIS_URL))
    index = _indexes.get(key)
    if index is None:
        size = settings.CASCADEOPS_SEMANTIC_INDEX_SIZE
        index = _indexes[key] = RedisIndex(size) if key[1] else LocalIndex(size)
    return index


def semantic_clear() -> None:
    """Forget every in-process index (tests)."""
    _indexes.clear()


async def semantic_lookup(policy: PolicySnapshot, probe: Probe, started: float) -> CacheHit | None:
    """The answer to the nearest earlier prompt, when it is near enough."""
    found = await semantic_index().nearest(probe, policy.semantic_threshold)
    if found is None:
        return None
    return CacheHit(
        kind="semantic",
        answer=found[0],
        lookup_ms=(time.perf_counter() - started) * 1000.0,
        similarity=found[1],
        verify=random.random() < policy.semantic_verify_rate,
    )


async def semantic_store(policy: PolicySnapshot, probe: Probe, answer: CachedAnswer) -> None:
    await semantic_index().add(probe, answer, policy.cache_ttl_s)


# --- Verification: re-ask a share of the hits ----------------------------------------------
