"""``headrace dashboard --zookeeper HOST:PORT[/chroot] [--port 8080] [--bind 127.0.0.1]
[--warehouse URL] [--nice idle|0-19]``: the web dashboard and its JSON API on the reactor, until
SIGTERM/SIGINT.  It lowers its own CPU priority (``--nice``): an observer must not slow what it
observes, so on a machine it shares with brokers or producers they come first, and under CPU
pressure its counts arrive later, never wrong.  ``idle`` (the default) is Linux's SCHED_IDLE
class as well as nice 19: the dashboard then runs only on CPU time nothing else wants."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_BIND = "127.0.0.1"  # a live tail must not be open to the network by default
IDLE = "idle"
DEFAULT_NICE: int | str = IDLE


def add_parser(sub) -> None:
    p = sub.add_parser("dashboard", help="a live web dashboard of the cluster, topics and groups")
    p.add_argument("--zookeeper", required=True, help="host:port[,host:port...][/chroot]")
    from ..zk_auth import add_auth_argument

    add_auth_argument(p)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--bind", default=DEFAULT_BIND, help=f"address to listen on (default {DEFAULT_BIND})"
    )
    p.add_argument(
        "--warehouse",
        help="warehouse URL of loaders that did not record theirs (for their _SUCCESS hours)",
    )
    p.add_argument(
        "--nice",
        default=str(DEFAULT_NICE),
        help=f"lower the dashboard's CPU priority by this much, 0-19, or 'idle' for Linux's "
        f"SCHED_IDLE class (default {DEFAULT_NICE}), so brokers on the same machine come first",
    )
    p.add_argument(
        "--users-file",
        metavar="FILE",
        help="ask for a login checked against this file of user=password lines (a PLAIN "
        "cluster's users); with a SASL --command-config and no file, logins are checked "
        "against the SCRAM credentials in ZooKeeper, as the brokers check them",
    )
    p.set_defaults(func=run)


def login_check(args, sampler):
    """``check(user, password)`` for the dashboard's login, or None when security is off
    (no SASL in the command config and no ``--users-file``).  CredentialsError for a users
    file that cannot be read, or a PLAIN cluster without one."""
    from .credentials import CredentialsError, PasswordFile

    if args.users_file:
        return PasswordFile.read(args.users_file).check
    security = args.security
    if not security.uses_sasl:
        return None
    if not security.sasl_mechanism.startswith("SCRAM-"):
        raise CredentialsError(
            f"sasl.mechanism {security.sasl_mechanism}: the dashboard checks logins against "
            "SCRAM credentials in ZooKeeper; give --users-file for other mechanisms"
        )
    return scram_check(sampler, security.sasl_mechanism)


def niceness(text: str) -> int | str | None:
    """``--nice``: a whole number 0-19, or ``idle``; None for anything else."""
    if text == IDLE:
        return IDLE
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value <= 19 else None


def _threads() -> list[int]:
    """This process's threads: numpy's OpenBLAS starts some at import, before ``run``."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]  # no /proc: the calling thread


def lower_priority(nice: int | str) -> None:
    """Take the CPU priority ``--nice`` asks for, in every thread there is (Linux keeps both
    per thread) and so in every thread started later."""
    step = 19 if nice == IDLE else int(nice)
    for tid in _threads():
        if step:
            os.setpriority(
                os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + step)
            )
        if nice == IDLE:
            try:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            except (AttributeError, OSError) as exc:  # nice 19 alone, then
                log.warning("SCHED_IDLE is not available here (%r); running at nice 19", exc)
                return


def run(args) -> int:
    from twisted.internet import error, reactor

    from .audit import AuditView
    from .credentials import CredentialsError
    from .feeds import Feeds
    from .sampler import Sampler
    from .server import build_site

    if not 0 <= args.port < 65536:
        print(f"headrace dashboard: --port {args.port}: give 0-65535", file=sys.stderr)
        return 2
    nice = niceness(args.nice)
    if nice is None:
        print(f"headrace dashboard: --nice {args.nice}: give 0-19 or {IDLE}", file=sys.stderr)
        return 2
    lower_priority(nice)  # for its threads too: they are started after this
    from ..zk_auth import credentials_from_args

    sampler = Sampler(
        args.zookeeper,
        reactor,
        args.warehouse,
        zookeeper_credentials=credentials_from_args(args),
        security=args.security,
    )
    try:
        login = login_check(args, sampler)
    except CredentialsError as exc:
        print(f"headrace dashboard: {exc}", file=sys.stderr)
        return 2
    feeds = Feeds(args.zookeeper, reactor, sampler)
    try:
        audit = AuditView(args.zookeeper, reactor, args.warehouse, sampler)
        site = build_site(sampler, feeds, audit=audit, login=login, reactor=reactor)
        port = reactor.listenTCP(args.port, site, interface=args.bind)
    except error.CannotListenError as exc:
        print(
            f"headrace dashboard: cannot listen on {args.bind}:{args.port}: {exc.socketError}",
            file=sys.stderr,
        )
        return 2
    sampler.start()

    def shut_down():
        feeds.stop()  # first: it deletes its groups through the sampler's ZooKeeper session
        sampler.stop()

    reactor.addSystemEventTrigger("before", "shutdown", shut_down)
    host = args.bind if args.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
    print(
        f"dashboard at http://{host}:{port.getHost().port}/"
        + (" (log in first)" if login is not None else ""),
        flush=True,
    )
    reactor.run()
    return 0


def scram_check(sampler, mechanism: str):
    """``check(user, password)`` against the SCRAM credentials in ZooKeeper (read through the
    sampler's session at each login, so a user added or deleted counts at once)."""
    from kazoo.exceptions import NoNodeError

    from broker.protocol.security_nodes import decode_user_config, user_path

    from .credentials import ScramUsers

    def read_config(user: str) -> dict[str, str]:
        path = user_path(user)
        try:
            data = sampler.zk.get(path)[0]
        except NoNodeError:
            return {}
        return decode_user_config(data, path)

    return ScramUsers(read_config, [mechanism]).check
