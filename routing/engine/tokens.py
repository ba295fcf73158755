"""Token estimates for text whose provider reported no usage (replay, budgets' worst case)."""

from __future__ import annotations

import math

from routing.engine.types import ChatRequest

# About four characters a token for English text with the common BPE vocabularies; the
# RouteLLM GSM8K answers average 301 and 419 characters, which this puts at 75 and 105.
CHARS_PER_TOKEN = 4
# Role markers and separators the chat templates add to every message.
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    """Tokens in `text`, estimated from its length; at least 1 for non-empty text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def estimate_prompt_tokens(chat: ChatRequest) -> int:
    """Tokens the whole conversation costs as input."""
    return sum(estimate_tokens(m.content) + TOKENS_PER_MESSAGE for m in chat.messages)


def max_prompt_tokens(chat: ChatRequest) -> int:
    """The most tokens the conversation can cost as input, whatever the tokenizer.

    Byte-level BPE vocabularies never make a token of less than one byte, so the UTF-8
    length bounds the count. The four-characters estimate above is right for English
    and far too low for CJK text (three bytes a character, often a token each) or code;
    a budget reservation must not be too low for any of them.
    """
    return sum(len(m.content.encode()) + TOKENS_PER_MESSAGE for m in chat.messages)
