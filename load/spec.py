"""What one load run does: the target, the load shape, the requests and when to stop.

`LoadSpec` is the one place for the defaults; the CLI and `run_load` both build one, and it
refuses a bad combination with a message that names the option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_PROMPT_TOKENS = 128
DEFAULT_MAX_TOKENS = 64
DEFAULT_DURATION = 30.0  # seconds, when neither a duration nor a request count is given
DEFAULT_TIMEOUT = 60.0  # seconds, per request
MAX_CONCURRENCY = 10_000

COMPLETIONS_PATH = "/v1/completions"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class LoadSpecError(ValueError):
    """A load run asked for something impossible; the message names the option."""


def parse_duration(text: str) -> float:
    """`30`, `30s`, `500ms`, `2m`, `1h` to seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise LoadSpecError(f"--duration {text!r}: expected a number of seconds, e.g. 30s, 2m")
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
    if seconds <= 0:
        raise LoadSpecError(f"--duration {text!r}: must be more than zero")
    return seconds


def base_url(target: str) -> str:
    """The server's root URL: `http://h:8000`, `http://h:8000/` and `http://h:8000/v1` agree."""
    parts = urlsplit(target.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadSpecError(
            f"--target {target!r}: expected the server's http(s) URL, e.g. http://127.0.0.1:8000"
        )
    try:
        parts.port  # noqa: B018 - a bad port only shows when read
    except ValueError:
        raise LoadSpecError(f"--target {target!r}: the port is not a number 1-65535") from None
    if parts.query or parts.fragment:
        raise LoadSpecError(f"--target {target!r}: give the server's URL without ? or #")
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass
class LoadSpec:
    """One load run. Give `concurrency` (closed loop) or `rate` (open loop, Poisson arrivals
    in requests per second), not both; with neither, one request at a time. It stops after
    `duration` seconds or `requests` requests, whichever comes first; with neither, after
    `DEFAULT_DURATION` seconds. Requests in flight at the end are waited for."""

    target: str
    concurrency: int | None = None
    rate: float | None = None
    duration: float | None = None
    requests: int | None = None
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    max_tokens: int = DEFAULT_MAX_TOKENS
    stream: bool = False
    chat: bool = False
    model: str | None = None  # None: the first model the server lists
    seed: int = 0
    # Ask for exactly `max_tokens` tokens (vLLM's and SGLang's `ignore_eos` and `min_tokens`);
    # turn off for servers that refuse unknown fields.
    ignore_eos: bool = True
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        self.base_url = base_url(self.target)
        if self.concurrency is not None and self.rate is not None:
            raise LoadSpecError("give --concurrency (closed loop) or --rate (open loop), not both")
        if self.rate is None and self.concurrency is None:
            self.concurrency = 1
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise LoadSpecError(f"--concurrency {self.concurrency}: must be 1-{MAX_CONCURRENCY}")
        if self.rate is not None and not self.rate > 0:
            raise LoadSpecError(f"--rate {self.rate}: must be more than zero requests per second")
        if self.duration is not None and not self.duration > 0:
            raise LoadSpecError(f"--duration {self.duration}: must be more than zero seconds")
        if self.requests is not None and self.requests < 1:
            raise LoadSpecError(f"--requests {self.requests}: must be at least 1")
        if self.duration is None and self.requests is None:
            self.duration = DEFAULT_DURATION
        if self.prompt_tokens < 1:
            raise LoadSpecError(f"--prompt-tokens {self.prompt_tokens}: must be at least 1")
        if self.max_tokens < 1:
            raise LoadSpecError(f"--max-tokens {self.max_tokens}: must be at least 1")
        if not self.timeout > 0:
            raise LoadSpecError(f"--timeout {self.timeout}: must be more than zero seconds")
        if self.model is not None and not self.model.strip():
            raise LoadSpecError("--model: the name is empty")

    @property
    def mode(self) -> Literal["closed", "open"]:
        return "open" if self.rate is not None else "closed"

    @property
    def path(self) -> str:
        return CHAT_PATH if self.chat else COMPLETIONS_PATH

    @property
    def url(self) -> str:
        return self.base_url + self.path
