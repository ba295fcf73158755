"""How alike two programs read: their Python syntax trees and token streams, never run.

Two answers to a coding request agree when their code has the same structure, whatever
their prose, comments, docstrings, layout or example calls. `shape_of(text)` finds the
code of an answer (its fenced blocks, or `[PYTHON]`-style tagged blocks, else the whole
text), parses it with `ast` (parsing runs nothing), drops docstrings and keeps the
definitions (functions, classes, imports) when there are any, so a usage example that
differs from model to model does not count. What remains is compared two ways:

- the node types of the tree, as a set of 1-3-grams in walk order (Jaccard): the same
  algorithm written with other names reads alike;
- the token stream of the tree written back out (`ast.unparse`: no comments, one layout),
  by `difflib`'s matching ratio: the same names and constants read alike.

`similarity_matrix(texts)` is their mean for each pair of answers that both hold Python,
0 for a pair where only one does (another language, or code that does not parse), and
None when fewer than two answers hold Python: then there is nothing to compare here.
"""

from __future__ import annotations

import ast
import difflib
import functools
import io
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

# Enough for any function an answer writes; a bound on the work a hostile text can cause.
MAX_CODE_CHARS: Final = 8_000
MAX_TOKENS: Final = 600
MAX_NODES: Final = 2_000
NODE_NGRAM: Final = 3
_FENCED = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_TAGGED = re.compile(r"\[([A-Z]+)\]\n?(.*?)(?:\[/\1\]|\Z)", re.DOTALL)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
_SKIPPED_TOKENS = frozenset(
    {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
)


@dataclass(frozen=True)
class CodeShape:
    """What is compared of one answer's Python code."""

    nodes: frozenset[tuple[str, ...]]
    tokens: tuple[str, ...]


def code_of(text: str) -> tuple[str, bool]:
    """(the answer's code, whether it came from marked blocks) from its fenced or tagged blocks, else the text."""
    head = text[: MAX_CODE_CHARS * 2]
    blocks = _FENCED.findall(head) or [body for language, body in _TAGGED.findall(head) if language != "TESTS"]
    if blocks:
        return "\n".join(blocks)[:MAX_CODE_CHARS], True
    return head[:MAX_CODE_CHARS], False


def shape_of(text: str) -> CodeShape | None:
    """The answer's Python code as trees and tokens, or None when it holds no Python.

    Text outside code blocks counts as code only when it parses and defines something
    (a bare word such as "Paris" parses too, as an expression).
    """
    return shape_of_code(*code_of(text))


# A gate compares each answer with every other, and the benchmark meets each answer again
# at every labelled share: parse each piece of code once (keys are at most MAX_CODE_CHARS).
@functools.lru_cache(maxsize=1024)
def shape_of_code(code: str, marked: bool) -> CodeShape | None:
    tree = parsed(code)
    if tree is None:
        return None
    definitions = [node for node in tree.body if isinstance(node, _DEFINITIONS)]
    if not definitions and not (marked and tree.body):
        return None
    kept = [without_docstrings(node) for node in definitions or tree.body]
    return CodeShape(nodes=node_ngrams(kept), tokens=code_tokens(kept))


def parsed(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def without_docstrings(node: ast.stmt) -> ast.stmt:
    for inner in ast.walk(node):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and is_docstring(inner.body[0]):
            inner.body = inner.body[1:] or [ast.Pass()]
    return node


def is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def node_ngrams(nodes: Sequence[ast.stmt]) -> frozenset[tuple[str, ...]]:
    names = [type(inner).__name__ for node in nodes for inner in ast.walk(node)][:MAX_NODES]
    return frozenset(tuple(names[i : i + n]) for n in range(1, NODE_NGRAM + 1) for i in range(len(names) - n + 1))


def code_tokens(nodes: Sequence[ast.stmt]) -> tuple[str, ...]:
    """The tokens of the code written back out; string literals all read as one token."""
    try:
        source = "\n".join(ast.unparse(node) for node in nodes)
        found = tokenize.generate_tokens(io.StringIO(source).readline)
        kept = [("STR" if t.type == tokenize.STRING else t.string) for t in found if t.type not in _SKIPPED_TOKENS]
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError):
        return ()
    return tuple(kept[:MAX_TOKENS])


def similarity(first: CodeShape, second: CodeShape) -> float:
    """How alike two programs read, in [0, 1]: tree shape and token stream, equally weighted."""
    union = first.nodes | second.nodes
    trees = len(first.nodes & second.nodes) / len(union) if union else 1.0
    tokens = difflib.SequenceMatcher(None, first.tokens, second.tokens, autojunk=False).ratio()
    return (trees + tokens) / 2.0


def similarity_matrix(texts: Sequence[str]) -> NDArray[np.float64] | None:
    """Pairwise `similarity` of the answers' code (1 on the diagonal), or None with fewer than two in Python."""
    shapes = [shape_of(text) for text in texts]
    if sum(shape is not None for shape in shapes) < 2:
        return None
    k = len(texts)
    matrix = np.eye(k, dtype=np.float64)
    for i in range(k):
        for j in range(i + 1, k):
            first, second = shapes[i], shapes[j]
            value = similarity(first, second) if first is not None and second is not None else 0.0
            matrix[i, j] = matrix[j, i] = value
    return matrix
