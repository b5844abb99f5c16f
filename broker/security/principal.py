"""``ssl.principal.mapping.rules``: Kafka's rules turning a TLS client certificate's subject
(RFC 2253, e.g. ``CN=alice,OU=test,O=headrace``) into a principal name.  Pure.

    >>> mapper = PrincipalMapper.from_rules("RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,DEFAULT")
    >>> mapper.name("CN=Alice,OU=Sales,O=x")    # no rule but DEFAULT matches all of it
    'CN=Alice,OU=Sales,O=x'

Rules are tried in order; the first whose pattern matches the whole subject gives the name
(``$n`` are the pattern's groups; a trailing ``/L`` or ``/U`` lower- or upper-cases it);
``DEFAULT`` gives the subject unchanged.  A subject no rule matches raises NoMatchingRule, and
the connection is refused, as in Kafka.  Patterns are Java regular expressions in Kafka;
here they are Python's, which agree on the forms such rules use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..log.config import ConfigError

# One rule: DEFAULT, or RULE:pattern/replacement/[LU] (a "/" or "\\" inside pattern or
# replacement escaped by a backslash), or anything else (refused).
_RULE = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(?:,\s*|$)")
_PARSER = re.compile(_RULE)
_BACK_REFERENCE = re.compile(r"\$(\d+)")


class NoMatchingRule(Exception):
    """No mapping rule applies to a certificate's subject."""


@dataclass(frozen=True)
class Rule:
    """One mapping rule; ``pattern`` None is DEFAULT."""

    pattern: re.Pattern | None = None
    replacement: str = ""
    case: str = ""  # "L", "U" or ""

    def apply(self, subject: str) -> str | None:
        if self.pattern is None:
            return subject
        match = self.pattern.fullmatch(subject)
        if match is None:
            return None
        groups = self.pattern.groups

        def group(ref: re.Match) -> str:
            digits = ref.group(1)
            index = int(digits)
            # Java's replaceAll reads as many digits as make a group that exists.
            while index > groups and index >= 10:
                index //= 10
            if digits.startswith("0") or index > groups:
                return ref.group(0)
            rest = digits[len(str(index)) :]
            return (match.group(index) or "") + rest

        name = _BACK_REFERENCE.sub(group, _unescape(self.replacement))
        if self.case == "L":
            return name.lower()
        if self.case == "U":
            return name.upper()
        return name

    def __str__(self) -> str:
        if self.pattern is None:
            return "DEFAULT"
        return f"RULE:{self.pattern.pattern}/{self.replacement}/{self.case}"


def _unescape(text: str) -> str:
    """A replacement's ``\\/`` and ``\\\\`` as the characters they stand for."""
    return re.sub(r"\\(.)", r"\1", text)


@dataclass(frozen=True)
class PrincipalMapper:
    """The rules of ``ssl.principal.mapping.rules``, in order."""

    rules: tuple[Rule, ...]

    @classmethod
    def from_rules(cls, text: str | None) -> PrincipalMapper:
        """Parse the property's value (None: ``DEFAULT``); ConfigError on a bad rule."""
        if text is None:
            text = "DEFAULT"
        rules = []
        for found in _SPLITTER.finditer(text.strip()):
            rule = found.group(1)
            if found.start() == found.end() == len(text.strip()) and not rule:
                break
            parsed = _PARSER.match(rule)
            if parsed is None or parsed.end() != len(rule):
                raise ConfigError(f"ssl.principal.mapping.rules: invalid rule {rule!r}")
            if parsed.group(1) is not None:
                rules.append(Rule())
            elif parsed.group(2) is not None:
                try:
                    pattern = re.compile(parsed.group(2))
                except re.error as exc:
                    raise ConfigError(
                        f"ssl.principal.mapping.rules: bad pattern in {rule!r}: {exc}"
                    ) from None
                rules.append(Rule(pattern, parsed.group(3), parsed.group(4)))
            elif rule:
                raise ConfigError(f"ssl.principal.mapping.rules: invalid rule {rule!r}")
        return cls(tuple(rules))

    def name(self, subject: str) -> str:
        """The principal name for ``subject``; NoMatchingRule if no rule applies."""
        for rule in self.rules:
            name = rule.apply(subject)
            if name is not None:
                return name
        raise NoMatchingRule(
            f"no rules apply to {subject}, rules [{', '.join(str(r) for r in self.rules)}]"
        )
