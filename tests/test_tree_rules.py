"""The tree's structural rules (ARCHITECTURE.md, "Rules"), checked by reading the source.

Each rule is a test, so a change that breaks one fails here with the module and line that did.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("broker", "consumers", "loaders", "headrace")
MAX_LINES = 600


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def _violations(packages: tuple[str, ...], allowed, forbidden_roots) -> list[str]:
    bad = []
    for path in _modules(*packages):
        for line, name in _imports(path):
            root = name.split(".")[0]
            if root in forbidden_roots and not allowed(name):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


def test_clients_and_loaders_import_only_the_contract_from_the_broker_tier():
    bad = _violations(
        ("consumers", "loaders"),
        allowed=lambda name: name == "broker.protocol" or name.startswith("broker.protocol."),
        forbidden_roots={"broker", "headrace"},
    )
    assert bad == []


def test_the_contract_imports_nothing_else_of_ours():
    bad = []
    for path in _modules("broker/protocol"):
        for line, name in _imports(path):
            if name.split(".")[0] in PACKAGES and not name.startswith("broker.protocol"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []


def test_the_broker_tier_does_not_import_clients_loaders_or_tools():
    bad = _violations(
        ("broker",),
        allowed=lambda name: False,
        forbidden_roots={"consumers", "loaders", "headrace"},
    )
    assert bad == []


def test_storage_does_not_import_the_server():
    bad = []
    for path in _modules("broker/log"):
        for line, name in _imports(path):
            if name.startswith("broker.") and not name.startswith(
                ("broker.log", "broker.protocol")
            ):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []


def test_the_codec_opens_no_sockets_and_runs_no_reactor():
    io_modules = {"socket", "twisted", "kazoo", "subprocess", "threading", "asyncio"}
    allowed_io = {  # the offset registry works through a client passed in; zk_client makes them
        "offsets.py": {"kazoo"},
        "zk_client.py": {"kazoo"},
    }
    bad = []
    for path in _modules("broker/protocol"):
        for line, name in _imports(path):
            root = name.split(".")[0]
            if root in io_modules and root not in allowed_io.get(path.name, ()):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert bad == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_600_lines(package):
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _modules(package)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []


ZK_ROOTS = (
    "/brokers",
    "/consumers",
    "/config",
    "/controller",
    "/admin",
    "/isr_change",
    "/cluster",
    "/latest_producer_id_block",
    "/schema-registry",
    "/kafka-acl",
)


LAYOUT_MODULES = (
    ROOT / "broker" / "protocol" / "zookeeper.py",
    ROOT / "broker" / "protocol" / "schema_nodes.py",
    ROOT / "broker" / "protocol" / "security_nodes.py",
    ROOT / "broker" / "protocol" / "broker_nodes.py",
    ROOT / "broker" / "protocol" / "zk_security.py",
    ROOT / "broker" / "protocol" / "acl_nodes.py",
)


def _root_names() -> set[str]:
    """Module-level names the layout modules bind to a path (``CONSUMERS = "/consumers"``,
    ``SCHEMA_IDS = f"{SCHEMA_REGISTRY}/ids"``)."""
    names = set()
    for layout in LAYOUT_MODULES:
        for node in ast.parse(layout.read_text()).body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target, value = node.targets[0], node.value
            if not isinstance(target, ast.Name):
                continue
            if isinstance(value, ast.JoinedStr) or (
                isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and value.value.startswith(ZK_ROOTS)
            ):
                names.add(target.id)
    return names


def _names_a_root(node: ast.AST, roots: set[str]) -> bool:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return name in roots


def _path_building(tree: ast.AST, roots: set[str]) -> list[tuple[int, str]]:
    """(line, text) of each literal path, and each f-string or ``+`` that extends a root the
    layout modules name, in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith(ZK_ROOTS) and "\n" not in text and " " not in text:
                found.append((node.lineno, text))
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant):
                text = first.value
                if text.startswith(ZK_ROOTS) and "\n" not in text and " " not in text:
                    found.append((node.lineno, ast.unparse(node)))
            elif any(
                isinstance(v, ast.FormattedValue) and _names_a_root(v.value, roots)
                for v in node.values
            ):
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Add)
            and (_names_a_root(node.left, roots) or _names_a_root(node.right, roots))
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_path_check_catches_literals_and_extended_roots():
    sample = ast.parse(
        "a = '/consumers/g'\n"
        "b = f'/brokers/ids/{n}'\n"
        "c = f'{CONSUMERS}/{group}/offsets'\n"
        "d = zookeeper.BROKER_TOPICS + '/t'\n"
        "e = f'{zk.SCHEMA_IDS}/{i}'\n"
        "ok = zookeeper.offset_path(group, topic, 0)\n"
    )
    roots = {"CONSUMERS", "BROKER_TOPICS", "SCHEMA_IDS"}
    assert sorted({line for line, _ in _path_building(sample, roots)}) == [1, 2, 3, 4, 5]


def test_every_zookeeper_path_is_built_in_the_layout_modules():
    """Paths are built only in ``broker/protocol/zookeeper.py`` and, for the schema
    registry, ``broker/protocol/schema_nodes.py``, for SCRAM credentials
    ``broker/protocol/security_nodes.py``, and for ZooKeeper security's sensitive roots
    ``broker/protocol/zk_security.py`` (ARCHITECTURE.md, "ZooKeeper layout")."""
    roots = _root_names()
    bad = []
    for path in _modules(*PACKAGES):
        if path in LAYOUT_MODULES:
            continue
        for line, text in _path_building(ast.parse(path.read_text()), roots):
            bad.append(f"{path.relative_to(ROOT)}:{line} {text!r}")
    assert bad == []


def test_requests_name_their_api():
    """No call passes a bare number where an API key goes (``request(node, 3, ...)``)."""
    bad = []
    for path in _modules(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if "request" not in name:
                continue
            for arg in node.args[:2]:
                if isinstance(arg, ast.Constant) and type(arg.value) is int:
                    bad.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {name}(..., {arg.value}, ...)"
                    )
    assert bad == []


# Clients that open connections to brokers: each is made with the caller's security settings
SECURED_CLIENTS = frozenset(
    {
        "BrokerConnection",
        "InFlightConnection",
        "connect_any",
        "ClusterClient",
        "Producer",
        "Consumer",
        "GroupConsumer",
        "KafkaGroupConsumer",
        "AggregateFeed",
    }
)


def _unsecured_clients(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, call) of each client made without ``security=`` (nor ``**options`` that may
    carry it, nor a ``cluster=`` that brings its own)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in SECURED_CLIENTS:
            continue
        keywords = {k.arg for k in node.keywords}
        if keywords & {"security", "cluster", None}:  # None: a ``**mapping``
            continue
        found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_security_check_catches_clients_made_without_it():
    sample = ast.parse(
        "a = BrokerConnection(host, port)\n"
        "b = cluster.ClusterClient(bootstrap, client_id='x')\n"
        "c = connect_any(servers, 10.0)\n"
        "d = Producer(bootstrap, acks='all')\n"
        "ok = BrokerConnection(host, port, security=security)\n"
        "ok = Consumer(cluster=cluster)\n"
        "ok = Producer(bootstrap, **options)\n"
        "ok = Thing(host, port)\n"
    )
    assert [line for line, _ in _unsecured_clients(sample)] == [1, 2, 3, 4]


def test_every_broker_client_is_made_with_security_settings():
    """Every connection to a broker made in ``consumers/``, ``loaders/`` or ``headrace/``
    passes ``security=`` (TLS and SASL settings, ``consumers/security.py``): code that forgets
    it would connect in plaintext, without a login (ARCHITECTURE.md, "Security everywhere")."""
    bad = []
    for path in _modules("consumers", "loaders", "headrace"):
        for line, text in _unsecured_clients(ast.parse(path.read_text())):
            bad.append(f"{path.relative_to(ROOT)}:{line} {text}")
    assert bad == []


def test_mypy_checks_every_security_module():
    """mypy's file list names the whole security package, so a new module there is checked."""
    import tomllib

    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    covered = [ROOT / f for f in files]
    missed = [
        str(p.relative_to(ROOT))
        for p in _modules("broker/security")
        if not any(p == c or c in p.parents for c in covered)
    ]
    assert not missed, f"mypy does not check {missed}"
