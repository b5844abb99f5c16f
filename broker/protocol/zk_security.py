"""ZooKeeper security, pure: the digest identity a process logs in with and the ACL each node
gets.  No kazoo, no I/O; ``zk_client.py`` applies these to a kazoo client.

    >>> credentials = parse_credentials('Client { org.apache.zookeeper.server.auth.'
    ...     'DigestLoginModule required username="kafka" password="s3cret"; };')
    >>> credentials.auth_data
    [('digest', 'kafka:s3cret')]
    >>> node_acl("/config/users/alice", secure=True)
    'private'

A process proves an identity with ZooKeeper's ``digest`` scheme (``addauth digest user:pw``),
which needs nothing configured on the server.  The identity comes from a JAAS file's
``Client`` section (Kafka's form: ``DigestLoginModule`` with ``username`` and ``password``)
or from the one line ``user:password``.  Kafka logs in with SASL DIGEST-MD5 from the same
section, so its ACLs name ``sasl:<user>``; ours name ``digest:<user>:<hash>``.

With ``zookeeper.set.acl`` (``secure``) every node is created as Kafka creates it
(``ZkData.defaultAcls``): its creator's identity gets ALL and everyone else READ
(``public``); under Kafka's sensitive roots (SCRAM credentials, dynamic broker configs,
delegation tokens) nobody else gets anything (``private``).  ``/consumers`` stays open to
all (``open``): the ZooKeeper groups and the loaders write their registrations and offsets
there without an identity.  Without ``secure`` every node is ``open``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .zookeeper import CONFIG_BROKERS, CONSUMERS

# Roots whose nodes carry no world READ when secure: Kafka's ZkData.SensitiveRootPaths.
CONFIG_USERS = "/config/users"  # SCRAM credentials, one node per user
DELEGATION_TOKENS = "/delegation_token/tokens"
SENSITIVE_ROOTS = (CONFIG_USERS, CONFIG_BROKERS, DELEGATION_TOKENS)

OPEN = "open"  # everyone ALL (ZooKeeper's OPEN_ACL_UNSAFE)
PUBLIC = "public"  # creator ALL, everyone READ (CREATOR_ALL_ACL + READ_ACL_UNSAFE)
PRIVATE = "private"  # creator ALL only (CREATOR_ALL_ACL)

DIGEST_LOGIN_MODULE = "org.apache.zookeeper.server.auth.DigestLoginModule"
JAAS_SECTION = "Client"  # Kafka's default for zookeeper.sasl.clientconfig


class ZkSecurityError(ValueError):
    """Credentials that cannot be read, or a setting that cannot work (for example
    ``zookeeper.set.acl`` without an identity)."""


@dataclass(frozen=True)
class ZkCredentials:
    """A ZooKeeper digest identity.  ``repr`` hides the password."""

    username: str
    password: str

    @property
    def auth_data(self) -> list[tuple[str, str]]:
        """kazoo's ``auth_data``: the digest scheme with ``user:password``."""
        return [("digest", f"{self.username}:{self.password}")]

    def __repr__(self) -> str:
        return f"ZkCredentials(username={self.username!r}, password='***')"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def node_acl(path: str, secure: bool) -> str:
    """Which ACL a node at ``path`` (under the chroot) gets: ``OPEN``, ``PUBLIC`` or
    ``PRIVATE``.  Only the ``/consumers`` subtree stays open when ``secure``."""
    if not secure or _under(path, CONSUMERS):
        return OPEN
    if any(_under(path, root) for root in SENSITIVE_ROOTS):
        return PRIVATE
    return PUBLIC


def parse_digest(text: str) -> ZkCredentials:
    """``user:password`` (the password may hold colons) as credentials."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise ZkSecurityError("ZooKeeper digest credentials must be of the form user:password")
    return ZkCredentials(user, password)


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/|#[^\n]*", re.S)
_SECTION = re.compile(r"([A-Za-z_][\w.-]*)\s*\{(.*?)\}\s*;", re.S)
_ENTRY = re.compile(r"^\s*([\w.$]+)\s+(required|requisite|sufficient|optional)\b(.*)$", re.S)
_OPTION = re.compile(r'([\w.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;"]+))')


def parse_jaas(text: str, section: str = JAAS_SECTION) -> ZkCredentials:
    """The ``username``/``password`` of the ``DigestLoginModule`` in a JAAS file's
    ``section``.  Any other login module (Kerberos) is refused: only digest is supported."""
    sections = {name: body for name, body in _SECTION.findall(_COMMENT.sub("", text))}
    if section not in sections:
        found = ", ".join(sorted(sections)) or "none"
        raise ZkSecurityError(f"the JAAS file has no {section} section (sections: {found})")
    entry = _ENTRY.match(sections[section].strip().rstrip(";"))
    if entry is None:
        raise ZkSecurityError(f"the JAAS {section} section names no login module")
    module, _, options_text = entry.groups()
    if module != DIGEST_LOGIN_MODULE:
        raise ZkSecurityError(
            f"the JAAS {section} section uses {module}; only {DIGEST_LOGIN_MODULE} "
            "(ZooKeeper digest credentials) is supported"
        )
    options = {
        key: re.sub(r"\\(.)", r"\1", quoted) if quoted or not bare else bare
        for key, quoted, bare in _OPTION.findall(options_text)
    }
    if not options.get("username") or not options.get("password"):
        raise ZkSecurityError(f"the JAAS {section} section needs username and password")
    return ZkCredentials(options["username"], options["password"])


def parse_credentials(text: str) -> ZkCredentials:
    """The contents of a ZooKeeper auth file: a JAAS ``Client`` section, or one line
    ``user:password`` (blank lines and ``#`` comments around it ignored)."""
    if "{" in text:
        return parse_jaas(text)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise ZkSecurityError(
            "a ZooKeeper auth file holds a JAAS Client section or one line user:password"
        )
    return parse_digest(lines[0])


def from_properties(
    properties: dict, read_file=None, secure_default: bool | None = None
) -> tuple[ZkCredentials | None, bool]:
    """(credentials, secure) from broker or tool properties: ``zookeeper.digest.credentials``
    (``user:password``), else ``zookeeper.jaas.config.file`` (read with ``read_file``), and
    ``zookeeper.set.acl`` (default ``secure_default``, else whether an identity was given, as
    Kafka's tools decide).  ``zookeeper.set.acl=true`` without an identity is an error."""
    credentials = None
    inline = properties.get("zookeeper.digest.credentials")
    jaas_file = properties.get("zookeeper.jaas.config.file")
    if inline:
        credentials = parse_digest(inline)
    elif jaas_file:
        if read_file is None:
            raise ZkSecurityError("zookeeper.jaas.config.file given but no way to read it")
        credentials = parse_jaas(read_file(jaas_file))
    secure = properties.get("zookeeper.set.acl")
    if secure is None:
        secure = credentials is not None if secure_default is None else secure_default
    elif isinstance(secure, str):
        secure = secure.strip().lower() == "true"
    if secure and credentials is None:
        raise ZkSecurityError(
            "zookeeper.set.acl is true but no ZooKeeper identity is configured: set "
            "zookeeper.jaas.config.file (a JAAS Client section) or zookeeper.digest.credentials"
        )
    return credentials, bool(secure)
