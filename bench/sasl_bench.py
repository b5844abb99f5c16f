"""What a SCRAM login costs: connection set-up with SCRAM-SHA-512 (4096 iterations) against a
plain connection, same machine, same run.

    python bench/sasl_bench.py [--quick] [--logins 300] [--reps 3] [--json PATH]

What is started: ZooKeeper and two brokers on free ports of 127.0.0.1, one with a PLAINTEXT
listener (``benchlib.running_broker``), one with a SASL_PLAINTEXT listener whose SCRAM user is
written to ZooKeeper first.  What is measured, one connection after another from this
process: on the SASL broker, connect + SaslHandshake + two SaslAuthenticate round trips (our
client, ``consumers/sasl.py``: the client's PBKDF2 and the server's proof check both count)
+ ApiVersions + close; on the PLAINTEXT one, connect + ApiVersions + close.  The two alternate
``--reps`` times.  Reported: logins per second and plain connections per second (medians),
their ratio, and the SASL broker's CPU per login (utime + stime of its process).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from benchlib import (
    BenchmarkError,
    add_count_args,
    add_output_args,
    bench_parser,
    check_count_args,
    finish,
    header,
    main_in_tmp_dir,
    new_meta,
    print_table,
    running_broker,
    signals_ignored,
    stat_cpu,
    step,
)
from kazoo.client import KazooClient

from broker.protocol.registry import ApiKey
from broker.protocol.security_nodes import scram_credential
from broker.security.credentials import write_credential
from consumers.client import BrokerConnection
from consumers.security import PLAINTEXT, ClientSecurity
from headrace.devcluster import BrokerProcess, free_port

USER, PASSWORD, MECHANISM, ITERATIONS = "bench", "bench-password", "SCRAM-SHA-512", 4096
SCRAM = ClientSecurity.from_properties(
    {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": MECHANISM,
        "sasl.username": USER,
        "sasl.password": PASSWORD,
    }
)


class SaslBrokerProcess(BrokerProcess):
    """Ready when the bench user can log in."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchmarkError(f"SASL broker exited: see {self.log_path}")
            try:
                BrokerConnection("127.0.0.1", self.port, timeout=2, security=SCRAM).close()
                return
            except Exception:  # not listening, or the user not seen yet
                time.sleep(0.1)
        raise BenchmarkError(f"SASL broker not ready within {timeout} s")


def connections(port: int, security: ClientSecurity, count: int, pid: int) -> dict:
    """``count`` connections, each set up, asked ApiVersions and closed, one after another."""
    cpu = stat_cpu(f"/proc/{pid}/stat")
    start = time.perf_counter()
    for _ in range(count):
        with BrokerConnection("127.0.0.1", port, timeout=10, security=security) as conn:
            conn.request(ApiKey.API_VERSIONS, {})
    seconds = time.perf_counter() - start
    broker_cpu = stat_cpu(f"/proc/{pid}/stat") - cpu
    return {
        "per_s": count / seconds,
        "seconds": seconds,
        "broker_cpu_us_each": broker_cpu / count * 1e6,
    }


def run(args, workdir: Path) -> dict:
    count = args.logins or (100 if args.quick else 300)
    meta = new_meta(args.quick, workdir, logins=count, reps=args.reps, iterations=ITERATIONS)
    print(header("SASL logins", meta))
    runs: dict[str, list[dict]] = {"scram": [], "plain": []}
    with running_broker(workdir, meta) as plain_broker:
        hosts = plain_broker.zookeeper_connect.rsplit("/", 1)[0]
        connect = f"{hosts}/headrace-bench-sasl"
        client = KazooClient(hosts=hosts, timeout=10)
        client.start(timeout=15)
        try:
            client.ensure_path("/headrace-bench-sasl")
        finally:
            client.stop()
            client.close()
        client = KazooClient(hosts=connect, timeout=10)
        client.start(timeout=15)
        try:
            credential = scram_credential(MECHANISM, PASSWORD, iterations=ITERATIONS)
            write_credential(client, USER, credential)
        finally:
            client.stop()
            client.close()
        port = free_port()
        sasl_broker = SaslBrokerProcess(
            workdir / "sasl",
            2,
            connect,
            port,
            overrides={
                "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}",
                "inter.broker.listener.name": "SASL_PLAINTEXT",
                "sasl.enabled.mechanisms": MECHANISM,
                "sasl.mechanism.inter.broker.protocol": MECHANISM,
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{USER}" password="{PASSWORD}";'
                ),
            },
        )
        try:
            step(f"starting the SASL broker on {sasl_broker.bootstrap}", sasl_broker.start)
            pids = {"scram": sasl_broker.process.pid, "plain": plain_broker.process.pid}
            ports = {"scram": port, "plain": plain_broker.port}
            securities = {"scram": SCRAM, "plain": PLAINTEXT}
            for rep in range(args.reps):
                order = ("scram", "plain") if rep % 2 == 0 else ("plain", "scram")
                for kind in order:
                    r = connections(ports[kind], securities[kind], count, pids[kind])
                    runs[kind].append(r)
                    print(
                        f"  rep {rep}: {kind:5} {r['per_s']:>8,.0f} connections/s, "
                        f"{r['broker_cpu_us_each']:,.0f} us broker CPU each"
                    )
        finally:
            with signals_ignored():
                sasl_broker.stop()
    median = {k: statistics.median(r["per_s"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["broker_cpu_us_each"] for r in v) for k, v in runs.items()}
    results = {
        "meta": meta,
        "logins_per_s": median["scram"],
        "plain_connections_per_s": median["plain"],
        "ratio": median["scram"] / median["plain"],
        "broker_cpu_us_per_connection": cpu,
        "runs": runs,
    }
    print_table(
        f"{count} connections one after another, median of {args.reps} reps",
        ["set-up", "per second", "broker CPU each"],
        [
            [f"{MECHANISM} login", f"{median['scram']:,.0f}", f"{cpu['scram']:,.0f} us"],
            ["PLAINTEXT", f"{median['plain']:,.0f}", f"{cpu['plain']:,.0f} us"],
            ["ratio", f"{results['ratio']:.3f}", ""],
        ],
    )
    finish(results, [], "; ", args.json)
    return results


def main() -> int:
    parser = bench_parser(__doc__, "100 connections per run")
    add_count_args(parser, "--logins", "per run (default 300)", "alternations (default 3)")
    add_output_args(parser)
    args = parser.parse_args()
    check_count_args(parser, args, "logins")
    return main_in_tmp_dir(args, "sasl-bench-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
