"""Kafka's one-line JAAS configuration (``sasl.jaas.config``), read without Java:

    >>> j = parse_jaas('org.apache.kafka.common.security.scram.ScramLoginModule required '
    ...                'username="admin" password="a\\\\"b";')
    >>> j.module.rsplit(".", 1)[-1], j.options["username"], j.options["password"]
    ('ScramLoginModule', 'admin', 'a"b')

A line is a login module's class, a control flag (required, requisite, sufficient,
optional), ``key=value`` options (values quoted with ``"``, in which ``\\`` escapes the next
character, or bare words) and a closing ``;``.  Broker-side PLAIN reads its users from the
options named ``user_<name>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FLAGS = ("required", "requisite", "sufficient", "optional")
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"

_TOKEN = re.compile(
    r'\s*(?:(?P<word>[^\s=;"]+)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s;"]+))'
    r"|(?P<end>;))",
    re.S,
)
_HEAD = re.compile(r"\s*(?P<module>[\w.$]+)\s+(?P<flag>\w+)", re.S)


class JaasConfigError(ValueError):
    """A ``sasl.jaas.config`` line that does not parse."""


@dataclass(frozen=True)
class JaasConfig:
    """One login module's entry: its class, control flag and options."""

    module: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def plain_users(self) -> dict[str, str]:
        """PLAIN's users on a broker: ``user_<name>="<password>"`` options."""
        return {k[5:]: v for k, v in self.options.items() if k.startswith("user_") and k[5:]}


def parse_jaas(text: str) -> JaasConfig:
    """The entry in ``text``; JaasConfigError says what is wrong and where."""
    head = _HEAD.match(text)
    if head is None:
        raise JaasConfigError("sasl.jaas.config must start with a login module class and a flag")
    flag = head["flag"].lower()
    if flag not in FLAGS:
        raise JaasConfigError(f"sasl.jaas.config: {head['flag']!r} is not one of {FLAGS}")
    options: dict[str, str] = {}
    pos = head.end()
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise JaasConfigError(f"sasl.jaas.config: cannot read it from {text[pos : pos + 20]!r}")
        pos = m.end()
        if m["end"]:
            break
        value = m["bare"] if m["quoted"] is None else re.sub(r"\\(.)", r"\1", m["quoted"])
        options[m["word"]] = value
    if text[pos:].strip():
        raise JaasConfigError("sasl.jaas.config holds one login module; text follows its ';'")
    return JaasConfig(head["module"], flag, options)


__all__ = ["PLAIN_MODULE", "SCRAM_MODULE", "JaasConfig", "JaasConfigError", "parse_jaas"]
