"""The OpenAI-compatible request and response bodies the engine simulators speak.

Requests are validated into a `Completion` (token counts, limits, streaming options); answers
are built chunk by chunk from the tokens the model emits. There is no tokenizer: a prompt's
token count is its count of words and punctuation marks, which tracks real BPE counts closely
enough for load (about 1.3 tokens a word on English). Prompts given as token ids count exactly.
The generated text is words from a fixed vocabulary, one per token.
"""

from __future__ import annotations

import re
import time
import uuid
import zlib
from dataclasses import dataclass

_PIECES = re.compile(r"\w+|[^\w\s]")
# Chat templates add a few tokens per message (role markers) and a few for the reply header.
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3

_VOCABULARY = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "so no will more out up into do any your what some can only other new time could these "
    "two may first then them than our most over such made after also did many before must "
    "through back where much well way even because good each those people how too little "
    "state very make world still own see men work long here get both between life being "
    "under never day same another know while last might us great old year off come since "
    "against go came right used take three"
)
_WORDS = _VOCABULARY.split()


class ApiError(Exception):
    """A request the simulator refuses, with the HTTP status an engine would answer."""

    def __init__(
        self, status: int, message: str, param: str | None = None, kind: str = "validation"
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind  # TGI's error_type


def count_tokens(text: str) -> int:
    return len(_PIECES.findall(text))


def token_text(request_id: str, index: int) -> str:
    """The text of one generated token: a word with its leading space."""
    return " " + _WORDS[(zlib.crc32(request_id.encode()) + 7 * index) % len(_WORDS)]


@dataclass(frozen=True)
class Completion:
    """A validated `/v1/completions` or `/v1/chat/completions` request."""

    chat: bool
    prompt_tokens: int
    max_tokens: int | None
    ignore_eos: bool
    min_tokens: int
    stream: bool
    include_usage: bool
    model: str | None


def _int_field(body: dict, name: str, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ApiError(400, f"{name} must be an integer >= {low}, got {value!r}", name)
    return value


def _prompt_tokens(prompt: object) -> int:
    if isinstance(prompt, str):
        return max(1, count_tokens(prompt))
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return len(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        return _prompt_tokens(prompt[0])
    if isinstance(prompt, list) and len(prompt) > 1:
        raise ApiError(
            400,
            "batched prompts (a list of several prompts) are not supported by "
            "the simulator; send one prompt per request",
            "prompt",
        )
    raise ApiError(
        400, "prompt must be a string, a list of token ids, or a one-element list", "prompt"
    )


def _content_tokens(content: object) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if not isinstance(part, dict):
                raise ApiError(400, "message content parts must be objects", "messages")
            if part.get("type") == "text":
                total += count_tokens(str(part.get("text", "")))
            else:
                raise ApiError(
                    400,
                    f"content part type {part.get('type')!r} is not supported "
                    "by the simulator (text only)",
                    "messages",
                )
        return total
    raise ApiError(400, "message content must be a string or a list of parts", "messages")


def _messages_tokens(messages: object) -> int:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "messages")
    total = TOKENS_PER_REPLY
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, "each message needs a string role", "messages")
        total += TOKENS_PER_MESSAGE + _content_tokens(m.get("content"))
    return total


def parse(body: object, chat: bool) -> Completion:
    """Validate a request body; ApiError says what is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if chat:
        prompt = _messages_tokens(body.get("messages"))
        max_tokens = _int_field(body, "max_completion_tokens", 1)
        if max_tokens is None:
            max_tokens = _int_field(body, "max_tokens", 1)
    else:
        if "prompt" not in body:
            raise ApiError(400, "prompt is required", "prompt")
        prompt = _prompt_tokens(body["prompt"])
        max_tokens = _int_field(body, "max_tokens", 1)
    n = _int_field(body, "n", 1)
    if n is not None and n > 1:
        raise ApiError(400, "n > 1 is not supported by the simulator", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be a boolean", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", "stream_options")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "model must be a string", "model")
    return Completion(
        chat=chat,
        prompt_tokens=prompt,
        max_tokens=max_tokens,
        ignore_eos=bool(body.get("ignore_eos", False)),
        min_tokens=_int_field(body, "min_tokens", 0) or 0,
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        model=model,
    )


class Answer:
    """Builds the response bodies for one request."""

    def __init__(self, completion: Completion, model: str, request_id: str):
        self.c = completion
        self.model = model
        self.request_id = request_id
        prefix = "chatcmpl" if completion.chat else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.object = "chat.completion" if completion.chat else "text_completion"

    def usage(self, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": self.c.prompt_tokens,
            "total_tokens": self.c.prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": None,
        }

    def text(self, tokens: int) -> str:
        return "".join(token_text(self.request_id, i) for i in range(tokens))

    def full(self, tokens: int, finish_reason: str) -> dict:
        if self.c.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": self.text(tokens)},
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        else:
            choice = {
                "index": 0,
                "text": self.text(tokens),
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(tokens),
        }

    def chunk(
        self, text: str | None, finish_reason: str | None = None, first: bool = False
    ) -> dict:
        if self.c.chat:
            delta: dict = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            obj = "chat.completion.chunk"
        else:
            choice = {
                "index": 0,
                "text": text or "",
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def usage_chunk(self, tokens: int) -> dict:
        obj = "chat.completion.chunk" if self.c.chat else "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(tokens),
        }
