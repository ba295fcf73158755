"""Token estimates for text whose provider reported no usage (replay, budgets' worst case)."""

from __future__ import annotations

import json
import math

from routing.engine.types import ChatRequest, Message

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
    tokens = sum(estimate_tokens(m.content) + TOKENS_PER_MESSAGE for m in chat.messages)
    return tokens + estimate_tokens(structure_text(chat))


def structure_text(chat: ChatRequest) -> str:
    """The input besides message texts that a model reads: tool definitions, the schema, earlier tool calls."""
    if not chat.structured and not any(m.tool_calls for m in chat.messages):
        return ""
    calls = [c.arguments for m in chat.messages for c in m.tool_calls]
    return json.dumps([[dict(t) for t in chat.tools], chat.response_format and dict(chat.response_format), calls])


def _message_bytes(message: Message) -> int:
    return len(message.content.encode()) + TOKENS_PER_MESSAGE


def max_prompt_tokens(chat: ChatRequest) -> int:
    """The most tokens the conversation can cost as input, whatever the tokenizer.

    Byte-level BPE vocabularies never make a token of less than one byte, so the UTF-8
    length bounds the count. The four-characters estimate above is right for English
    and far too low for CJK text (three bytes a character, often a token each) or code;
    a budget reservation must not be too low for any of them.
    """
    return sum(_message_bytes(m) for m in chat.messages) + len(structure_text(chat).encode())
