"""Safe PromQL from untrusted names: every label value that reaches a query goes through here.

Two defences, used together. Names Kubernetes constrains (namespace, deployment, SLO name) are
validated by regex, so a bad one is refused with a clear message before any query is built.
Free text (model names, user values) is escaped into a PromQL string literal, so whatever it
holds (`"} or vector(1) #`, newlines, backslashes, any unicode) stays one label value and no
query changes meaning. Regex matchers built from exact values escape RE2 metacharacters too.

    >>> selector(namespace=validate_namespace("llm"), model='a"} or vector(1) #')
    '{namespace="llm",model="a\\\\"} or vector(1) #"}'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# A namespace (and an SLO name) is a DNS-1123 label; a workload name a DNS-1123 subdomain.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
_DURATION_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
OPERATORS = ("=", "!=", "=~", "!~")
# RE2 metacharacters; everything else in an exact value matches itself.
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


class UnsafeName(ValueError):
    """A name that may not reach a query."""


def escape(value: str) -> str:
    """`value` as the body of a double-quoted PromQL string (Go string syntax).

    Backslash and quote are escaped; control characters become `\\n`, `\\t` or `\\u00XX`, so the
    literal stays on one line; everything else, unicode included, is kept as it is.
    """
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def quote(value: str) -> str:
    """`value` as a double-quoted PromQL string literal."""
    return f'"{escape(value)}"'


def regex_exact(values: Iterable[str]) -> str:
    """An RE2 pattern matching exactly these values (PromQL anchors regex matchers)."""
    values = list(values)
    if not values:
        raise ValueError("a regex over no values matches nothing; select without it")
    return "|".join(_RE2_META.sub(r"\\\1", v) for v in values)


def _check(pattern: re.Pattern[str], value: str, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise UnsafeName(f"{what} {value!r} is not valid: {rule}")
    return value


def validate_label_name(name: str) -> str:
    return _check(LABEL_NAME, name, "label name", "letters, digits and '_', not first a digit")


def validate_metric_name(name: str) -> str:
    return _check(METRIC_NAME, name, "metric name", "letters, digits, '_' and ':'")


def validate_namespace(name: str) -> str:
    return _check(DNS_LABEL, name, "namespace", _DNS_LABEL_RULE)


def validate_slo_name(name: str) -> str:
    return _check(DNS_LABEL, name, "SLO name", _DNS_LABEL_RULE)


def validate_deployment(name: str) -> str:
    return _check(
        DNS_SUBDOMAIN, name, "deployment", "lowercase letters, digits, '-' and '.', at most 253"
    )


def validate_model(name: str) -> str:
    """Model names are free text (`meta-llama/Llama-3.1-8B`); only control characters are out."""
    if not isinstance(name, str) or not name or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise UnsafeName(f"model {name!r} is empty or has control characters")
    return name


_DNS_LABEL_RULE = (
    "lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit"
)


def validate_duration(text: str) -> str:
    """A Prometheus duration such as `5m`, `1h30m`, `28d`."""
    if not isinstance(text, str) or not text or not DURATION.fullmatch(text):
        raise UnsafeName(f"duration {text!r} is not a Prometheus duration such as 30s, 5m, 1h")
    return text


def seconds(duration: str) -> int:
    """The length of a Prometheus duration in whole seconds (milliseconds are dropped)."""
    validate_duration(duration)
    total = 0
    for amount, unit in re.findall(r"(\d+)(ms|[ywdhms])", duration):
        if unit != "ms":
            total += int(amount) * _DURATION_UNITS[unit]
    return total


def number(value: float) -> str:
    """A number as PromQL text without float noise: `0.999`, `14.4`, `10`."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value} has no place in a threshold")
    text = repr(float(value))
    return text.removesuffix(".0") if "e" not in text else text


@dataclass(frozen=True)
class Matcher:
    """One label matcher, validated on construction."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        validate_label_name(self.name)
        if self.op not in OPERATORS:
            raise UnsafeName(f"matcher operator {self.op!r} is not one of {', '.join(OPERATORS)}")
        if not isinstance(self.value, str):
            raise UnsafeName(f"matcher value for {self.name} must be text, not {self.value!r}")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise UnsafeName(f"matcher {self.name}{self.op}: bad regex: {exc}") from None

    def render(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"


def eq(name: str, value: str) -> Matcher:
    return Matcher(name, "=", value)


def one_of(name: str, values: Iterable[str]) -> Matcher:
    """`name="v"` for one value, `name=~"v1|v2"` (escaped) for several."""
    values = list(values)
    if len(values) == 1:
        return Matcher(name, "=", values[0])
    return Matcher(name, "=~", regex_exact(values))


def selector(*matchers: Matcher | str, **labels: str) -> str:
    """`{...}` from matchers, parsed matcher text, and exact `name=value` pairs, in that order."""
    parts: list[Matcher] = []
    for m in matchers:
        parts.extend(parse_matchers(m) if isinstance(m, str) else [m])
    parts.extend(eq(name, value) for name, value in labels.items())
    return "{" + ",".join(m.render() for m in parts) + "}"


def series(metric: str, *matchers: Matcher | str, **labels: str) -> str:
    """A vector selector: `metric{...}`, or just `metric` without matchers."""
    validate_metric_name(metric)
    body = selector(*matchers, **labels)
    return metric if body == "{}" else metric + body


_MATCHER_TEXT = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\\n]|\\.)*)"\s*(?:,|$)'
)
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _UNESCAPES:
            out.append(_UNESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise UnsafeName(f"unsupported escape \\{nxt} in a matcher value")
    return "".join(out)


def parse_matchers(text: str) -> list[Matcher]:
    """Matchers written as PromQL (`namespace=~"llm-.*", team="a"`), checked and re-rendered.

    Anything else (a second selector, an operator, a brace) is refused, so text from a config
    file can narrow a query but never change it.
    """
    text = text.strip().removeprefix("{").removesuffix("}") if text.strip() else ""
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(text):
        m = _MATCHER_TEXT.match(text, pos)
        if m is None:
            raise UnsafeName(
                f"cannot read matchers {text!r} at {text[pos:]!r}: expected "
                'name="value" (=, !=, =~, !~), separated by commas'
            )
        matchers.append(Matcher(m.group(1), m.group(2), _unescape(m.group(3))))
        pos = m.end()
    return matchers


def matchers_text(matchers: Mapping[str, str] | Iterable[Matcher]) -> str:
    """Matchers rendered without braces, for splicing next to others."""
    items = [eq(k, v) for k, v in matchers.items()] if isinstance(matchers, Mapping) else matchers
    return ",".join(m.render() for m in items)
