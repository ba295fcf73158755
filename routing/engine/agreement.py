"""Agreement between several answers to one request: a confidence and the answer to return.

Cheap models are often right when they agree with themselves (k samples of one model,
"self-consistency") or with other cheap models (cross-model agreement), and often wrong
when they scatter. `agreement()` turns k answers into:

- a score in [0, 1]: the vote share of the most common final answer (`answers.py`
  extracts and canonicalises it) when the answers state one; otherwise (free text, code)
  the mean similarity of the answer returned to the others, which is what a vote share
  measures too: the cosine of their embeddings from the `embed` callable, averaged with
  how alike their code reads where they hold Python (`codeshape.py`), clipped to [0, 1].
  Two embedders fit: the gateway's local MiniLM (`embeddings.embed`) and `lexical_embed`
  (hashed word 1-3-grams, no model, microseconds per answer), which on code answers
  agrees better with the tests than MiniLM, whose training is prose
  (docs/quality-benchmark.md has the figures);
- `representative`: the index of the answer to return, taken from the majority. The
  `preferred` answer (by default the first: the preferred model's, or the first sample)
  is returned whenever it is in the majority, and `preferred_agreed` says whether it was.

Model output is compared, never executed: two programs agree when they read alike.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from routing.engine import codeshape
from routing.engine.answers import answer_kind, extract_answer
from routing.engine.textfeatures import hashed_ngrams

Embedder = Callable[[Sequence[str]], NDArray[Any] | None]

VOTE: Final = "vote"
EMBEDDING: Final = "embedding"
SINGLE: Final = "single"
NONE: Final = "none"
# Characters of each answer that are embedded: MiniLM reads about this much anyway.
EMBED_CHARS: Final = 1_500
LEXICAL_BUCKETS: Final = 4096
LEXICAL_MAX_NGRAM: Final = 3
_FENCED = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class Agreement:
    """How much k answers agree, and which one to return.

    `method` is "vote" (extracted answers compared), "embedding" (cosine similarity),
    "single" (one answer: nothing to compare, score 1) or "none" (no answer could be
    compared and no embedder was given: score 0).
    """

    score: float
    representative: int
    method: str
    preferred: int = 0
    preferred_agreed: bool = True
    answers: tuple[str | None, ...] = ()
    votes: Mapping[str, int] = field(default_factory=dict)
    kind: str | None = None
    # How much the others back the preferred answer: its vote share, or its mean similarity.
    support: float = 1.0

    @property
    def majority(self) -> str | None:
        """The most common extracted answer (vote method only)."""
        return self.answers[self.representative] if self.method == VOTE else None

    @property
    def distinct(self) -> int:
        """How many different answers were given (vote method only; 0 otherwise)."""
        return len(self.votes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what a request record or routing header carries."""
        return {
            "score": self.score,
            "representative": self.representative,
            "method": self.method,
            "preferred_agreed": self.preferred_agreed,
            "votes": dict(self.votes),
            "kind": self.kind,
            "support": self.support,
        }


def agreement(
    texts: Sequence[str],
    *,
    kind: str = "auto",
    prompt: str | None = None,
    embed: Embedder | None = None,
    preferred: int = 0,
) -> Agreement:
    """The agreement of `texts` (k answers to `prompt`) and the index of the one to return.

    Votes on extracted answers when most answers state one of `kind` ("auto": decided
    from the prompt and the preferred answer); otherwise compares embeddings when
    `embed` is given. Texts may be bare answers ("05/01/2021", "18.0"): they extract to
    themselves.
    """
    if not texts:
        raise ValueError("agreement needs at least one answer")
    if not 0 <= preferred < len(texts):
        raise ValueError(f"preferred index {preferred} is out of range for {len(texts)} answers")
    resolved = resolved_kind(texts, kind=kind, prompt=prompt, preferred=preferred)
    answers = tuple(extract_answer(text, resolved, prompt=prompt) if resolved else None for text in texts)
    if len(texts) == 1:
        votes = {answers[0]: 1} if answers[0] is not None else {}
        return Agreement(1.0, 0, SINGLE, 0, True, answers, votes, resolved)
    stated = sum(answer is not None for answer in answers)
    if stated and (2 * stated >= len(texts) or embed is None):
        return vote(answers, preferred=preferred, kind=resolved)
    similar = by_embedding(texts, embed, preferred=preferred, answers=answers, kind=resolved) if embed else None
    if similar is not None:
        return similar
    if stated:
        return vote(answers, preferred=preferred, kind=resolved)
    return Agreement(0.0, preferred, NONE, preferred, False, answers, {}, resolved, 0.0)


def resolved_kind(texts: Sequence[str], *, kind: str, prompt: str | None, preferred: int) -> str | None:
    """`kind`, or for "auto" the prompt's kind, else the kind most answers look like."""
    if kind != "auto":
        return kind
    if prompt:
        return answer_kind(prompt, texts[preferred])
    kinds = Counter(answer_kind(None, text) for text in texts)
    return kinds.most_common(1)[0][0]


def vote(answers: Sequence[str | None], *, preferred: int = 0, kind: str | None = None) -> Agreement:
    """Majority vote over extracted answers; None (no answer stated) counts against every answer.

    Ties go to the preferred answer, then to the answer given first.
    """
    counts = Counter(answer for answer in answers if answer is not None)
    if not counts:
        raise ValueError("no answer to vote on")
    first_seen = {answer: answers.index(answer) for answer in counts}
    mine = answers[preferred]

    def rank(answer: str) -> tuple[int, int, int]:
        return (-counts[answer], 0 if answer == mine else 1, first_seen[answer])

    majority = min(counts, key=rank)
    agreed = mine == majority
    representative = preferred if agreed else first_seen[majority]
    ordered = dict(sorted(counts.items(), key=lambda item: rank(item[0])))
    score = counts[majority] / len(answers)
    support = counts[mine] / len(answers) if mine is not None else 0.0
    return Agreement(score, representative, VOTE, preferred, agreed, tuple(answers), ordered, kind, support)


def by_embedding(
    texts: Sequence[str],
    embed: Embedder,
    *,
    preferred: int = 0,
    answers: tuple[str | None, ...] = (),
    kind: str | None = None,
) -> Agreement | None:
    """Agreement by similarity (`similarity_matrix`), or None when nothing could be measured.

    The representative is the preferred answer when it is at least as central (mean
    similarity to the others) as the median answer, else the most central one; the score
    is the representative's centrality, as a vote's score is its answer's share.
    """
    similarity = similarity_matrix(texts, embed)
    if similarity is None:
        return None
    k = len(texts)
    off_diagonal = similarity[~np.eye(k, dtype=bool)].reshape(k, k - 1)
    centrality = off_diagonal.mean(axis=1)
    agreed = bool(centrality[preferred] >= float(np.median(centrality)) - 1e-12)
    representative = preferred if agreed else int(np.argmax(centrality))
    score = clip01(float(centrality[representative]))
    support = clip01(float(centrality[preferred]))
    return Agreement(score, representative, EMBEDDING, preferred, agreed, answers, {}, kind, support)


def similarity_matrix(texts: Sequence[str], embed: Embedder) -> NDArray[np.float64] | None:
    """Pairwise similarity of the answers: the cosine of their embeddings, averaged with how
    alike their code reads (`codeshape.py`) when at least two of them hold Python; None when
    neither can be measured."""
    vectors = embed([comparable_text(text) for text in texts])
    found = []
    if vectors is not None and len(vectors) == len(texts):
        found.append(cosine_matrix(np.asarray(vectors, dtype=np.float64)))
    code = codeshape.similarity_matrix(texts)
    if code is not None:
        found.append(code)
    if not found:
        return None
    result: NDArray[np.float64] = sum(found[1:], found[0]) / len(found)
    return result


def comparable_text(text: str) -> str:
    """What to embed: the code blocks of an answer that has them (the prose around code
    differs from model to model), else the text; at most `EMBED_CHARS` characters."""
    blocks = _FENCED.findall(text[: EMBED_CHARS * 4])
    chosen = "\n".join(blocks) if blocks else text
    return chosen.strip()[:EMBED_CHARS] or text[:EMBED_CHARS]


def cosine_matrix(vectors: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.nan_to_num(vectors / np.maximum(norms, 1e-12))
    result: NDArray[np.float64] = unit @ unit.T
    return result


def clip01(value: float) -> float:
    return 0.0 if math.isnan(value) else min(1.0, max(0.0, value))


def lexical_embed(texts: Sequence[str]) -> NDArray[np.float64]:
    """Unit vectors of hashed word 1-3-grams (`textfeatures.hashed_ngrams`): an embedder
    that needs no model, for answers whose wording is their content (code)."""
    vectors = np.zeros((len(texts), LEXICAL_BUCKETS), dtype=np.float64)
    for row, text in enumerate(texts):
        for slot, value in hashed_ngrams(
            text, field="answer", buckets=LEXICAL_BUCKETS, max_n=LEXICAL_MAX_NGRAM
        ).items():
            vectors[row, slot] = value
    return vectors
