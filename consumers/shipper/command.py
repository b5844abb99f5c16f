"""The shipping agent's command: its options (for ``headrace ship`` and ``python -m
consumers.shipper``), and a run that stops cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from broker.protocol.compression import CODECS_BY_NAME
from broker.protocol.errors import KafkaError

from ..metrics import MetricsPortError, add_metrics_arguments, serve_metrics
from ..producer import audit
from ..sasl import SaslAuthenticationError
from ..security import add_security_arguments, security_from_args
from .agent import Shipper
from .metrics import shipper_registry
from .state import StateError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The shipper's options, for ``python -m consumers.shipper`` and ``headrace ship``."""
    parser.add_argument("files", nargs="+", help="files or glob patterns to follow (quote globs)")
    parser.add_argument("--topic", required=True)
    parser.add_argument(
        "--bootstrap-server", help="host:port[,host:port...] of any broker (default 127.0.0.1:9092)"
    )
    parser.add_argument("--zookeeper", help="host:port[/chroot] to find the brokers instead")
    parser.add_argument(
        "--state-file",
        help="where read positions are kept (JSON); without it "
        "a restart starts at the files' ends again",
    )
    parser.add_argument("--key-field", help="a JSON field of each line to key the message by")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="read files that have no saved position from their start",
    )
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds (default 0.25)")
    parser.add_argument("--compression", default="none", choices=sorted(CODECS_BY_NAME))
    audit.add_arguments(parser, on_by_default=True)
    add_metrics_arguments(parser)
    add_security_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Ship until SIGTERM or SIGINT, then deliver what was sent, commit and return 0; 2 for
    bad arguments or an unusable state file."""
    bootstrap = getattr(args, "bootstrap_server", None)
    zookeeper = getattr(args, "zookeeper", None)
    if not bootstrap and not zookeeper:
        bootstrap = "127.0.0.1:9092"
    state_file = getattr(args, "state_file", None)
    try:
        shipper = Shipper(
            args.topic,
            list(args.files),
            bootstrap_servers=bootstrap,
            zookeeper=zookeeper,
            state_file=state_file,
            key_field=getattr(args, "key_field", None),
            from_beginning=bool(getattr(args, "from_beginning", False)),
            poll_interval=float(getattr(args, "poll_interval", None) or 0.25),
            compression=getattr(args, "compression", None) or "none",
            enable_idempotence=getattr(args, "idempotence", None),
            producer_config={
                **audit.options_from(args),
                "security": getattr(args, "security", None) or security_from_args(args),
            },
        )
    except (ValueError, KafkaError) as exc:
        log.error("%s", exc)
        return 2
    if not state_file:
        log.warning("no state file: read positions are not kept across restarts")
    try:
        page = serve_metrics(
            shipper_registry(shipper),
            getattr(args, "metrics_port", None),
            getattr(args, "metrics_host", None) or "127.0.0.1",
        )
    except MetricsPortError as exc:
        log.error("%s", exc)
        shipper.close(0)
        return 2
    if page is not None:
        log.info("metrics on http://%s:%d/metrics", page.host, page.port)

    def on_signal(signum, frame):  # no logging here: it may interrupt a log call
        shipper.request_stop(signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        log.info("shipping %s to %s", " ".join(shipper.patterns), shipper.topic)
        shipper.run()
    except (StateError, SaslAuthenticationError) as exc:
        log.error("%s", exc)
        shipper.close(0)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if page is not None:
            page.close()
    log.info("stopped: %d lines sent, %d acknowledged", shipper.lines_sent, shipper.lines_acked)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consumers.shipper",
        description="Follow log files and send their lines to a topic.",
    )
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(args)
