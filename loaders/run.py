"""``headrace load``: plan a run, start the worker processes, report, mark complete hours.

    headrace load --zookeeper 127.0.0.1:2181 --topic access --group warehouse \\
        --to ./warehouse --workers 2 --format json --time-field ts --until-caught-up

Scheduled mode (``--until-caught-up``, the default): snapshot every partition's end offset
into the run plan, load exactly up to it, print a summary and exit 0; any failure gives a
message and a non-zero exit.  ``--follow`` plans again every ``--interval`` seconds and keeps
loading with the same commit protocol until interrupted.  After a complete run, every
``dt=/hour=`` directory whose hour ended before the plan was taken gets a ``_SUCCESS`` marker.
"""

from __future__ import annotations

import logging
import signal
import sys
import time

from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from broker.protocol import zookeeper as layout
from broker.protocol.errors import KafkaError
from broker.protocol.zk_client import zookeeper_client
from consumers.cluster import ClusterClient
from consumers.metrics import MetricsPortError, serve_metrics

from .config import LoaderConfig
from .metrics import LoaderMetrics
from .pool import Replacements, WorkerPool, replace_dead
from .progress import (
    check_plan,
    events_left,
    mark_complete_hours,
    progress_left,
    read_plan_partitions,
)
from .registry import LoaderError, make_plan, record_last_run, warehouse_url
from .report import Stats, print_summary, progress_line
from .schema import SchemaError, load_declared_schema
from .storage import Storage, StorageError

log = logging.getLogger(__name__)


def load(config: LoaderConfig, out=None, err=None) -> int:
    """Run a load; returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    started = time.monotonic()
    try:
        store = Storage(config.url, config.storage_options)
        store.check()  # fail now, not in every worker, if the warehouse is unreachable
        _check_declared_schema(config)
    except (StorageError, SchemaError) as exc:
        print(f"headrace load: {exc}", file=err)
        return 2
    pool = WorkerPool.start(config)  # before this process starts any thread of its own
    zk = zookeeper_client(config.zookeeper, config.zookeeper_credentials, timeout=10)
    try:
        zk.start(timeout=15)
    except Exception as exc:
        pool.terminate()
        print(f"headrace load: cannot reach ZooKeeper at {config.zookeeper}: {exc}", file=err)
        return 2
    cluster = ClusterClient(
        zookeeper=config.zookeeper,
        client_id="headrace-loader",
        zookeeper_credentials=config.zookeeper_credentials,
        security=config.security,
    )
    metrics = LoaderMetrics(config.group)
    page = None
    try:
        page = serve_metrics(metrics.registry, config.metrics_port, config.metrics_host)
        if page is not None:
            log.info("metrics on http://%s:%d/metrics", page.host, page.port)
        for topic in config.topics:
            if not zk.exists(layout.topic_path(topic)):
                pool.terminate()
                print(f"headrace load: unknown topic {topic!r}", file=err)
                return 2
        check_plan(zk, config.group)
        stats = Stats()
        while True:
            supervisor = Supervisor(
                config, zk, cluster, err, stats, pool or WorkerPool.start(config), metrics
            )
            pool = None  # a second pass starts new ones
            status = supervisor.run()
            if (
                status
                or config.follow
                or not supervisor.plan["resumed"]
                or not progress_left(zk, cluster, config)[0]
            ):
                break
            # This run finished the plan of an interrupted one (same chunks, same files); now
            # load what arrived since, up to the current end.
            log.info("finished an interrupted run's plan; planning again")
        complete, lag = progress_left(zk, cluster, config)
        metrics.lag(lag)
        if complete and not config.follow:
            marked = mark_complete_hours(store, config, read_plan_partitions(zk, config))
        else:
            marked = 0
        seconds = time.monotonic() - started
        print_summary(out, stats, lag, marked, seconds)
        record_last_run(zk, config.group, run_record(stats, seconds, config))
        for message in stats.errors:
            print(f"headrace load: {message}", file=err)
        if not complete and not config.follow:
            left = sum(v for v in lag.values() if v > 0)
            print(
                f"headrace load: the run did not finish its plan ({left} messages left); "
                "run it again to resume from the committed offsets",
                file=err,
            )
            return 1
        return status
    except MetricsPortError as exc:
        print(f"headrace load: {exc}", file=err)
        return 2
    except (LoaderError, StorageError) as exc:
        print(f"headrace load: {exc}", file=err)
        return 1
    except (KazooException, KazooTimeoutError) as exc:
        print(
            f"headrace load: ZooKeeper at {config.zookeeper} failed the load: "
            f"{type(exc).__name__} {exc}".rstrip(),
            file=err,
        )
        return 1
    finally:
        if pool is not None:  # never let go
            pool.terminate()
        cluster.close()
        zk.stop()
        zk.close()
        if page is not None:
            page.close()


def _check_declared_schema(config: LoaderConfig) -> None:
    """SchemaError if the declared schema file does not read, or lacks the time field."""
    if not config.schema_file:
        return
    declared = load_declared_schema(config.schema_file)
    field = config.time_field
    if field and any(field not in fields for fields in declared.values()):
        raise SchemaError(
            f"--time-field {field} is not in the declared schema "
            f"{config.schema_file}; declare it (e.g. as string or double)"
        )


class Supervisor:
    """One pass of a load: plan while the workers start up, let them go, collect their
    reports (``stats``), and, with --follow, plan again every interval and replace the
    workers that die.  ``run`` returns the pass's exit status; ``plan`` is its plan."""

    def __init__(
        self,
        config: LoaderConfig,
        zk,
        cluster,
        err,
        stats: Stats,
        pool: WorkerPool,
        metrics: LoaderMetrics | None = None,
    ):
        self.config, self.zk, self.cluster, self.err = config, zk, cluster, err
        self.stats, self.pool = stats, pool
        self.metrics = metrics
        self.plan: dict = {}
        self.stopping: list[int] = []  # the signals received
        self.terminated: set[int] = set()  # workers stopped because another one failed
        self.replacements = Replacements()
        self.next_plan = time.monotonic() + config.interval
        self.started = time.monotonic()
        self.recorded: tuple | None = None  # the counts last recorded with --follow

    def run(self) -> int:
        old = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        tty = self.err.isatty()
        try:
            try:
                self.plan = make_plan(
                    self.zk,
                    self.cluster,
                    self.config.group,
                    self.config.topics,
                    value_schema_ids=reader_ids(self.config),
                )
                total = events_left(self.zk, self.config, self.plan)
            except BaseException:
                self.pool.terminate()
                raise
            self.pool.release()
            t0 = time.monotonic()
            while True:
                for event in self.pool.reports(timeout=0.05):
                    self._add(event)
                if tty:
                    done = self.stats.total("rows") + self.stats.total("dead_letters")
                    line = progress_line(done, total, time.monotonic() - t0, self.config.follow)
                    print(line, end="", file=self.err, flush=True)
                if not self.step():
                    break
            self.pool.join()
            for event in self.pool.reports():
                self._add(event)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if tty:
                print(file=self.err)
        return exit_status(self.pool.exit_codes(), self.stats, self.stopping, self.terminated)

    def _add(self, event: dict) -> None:
        self.stats.add(event)
        if self.metrics is not None:
            self.metrics.observe(event)

    def _stop(self, signum, frame) -> None:
        self.stopping.append(signum)

    def step(self) -> bool:
        """One turn of the pass after the reports are in; False once no worker is left."""
        if self.stopping:
            self.pool.terminate()
        elif self.config.follow:
            if time.monotonic() >= self.next_plan:
                self.next_plan = time.monotonic() + self.config.interval
                replan(self.zk, self.cluster, self.config)
                self.record_so_far()
            replace_dead(self.pool, self.replacements, self.err)
            if self.metrics is not None and self.metrics.lag_due():
                self.measure_lag()
        if not self.pool.any_alive():
            return False
        if self.stats.failed and not self.config.follow:
            # one worker failed: the run has failed; stop the rest
            self.terminated |= self.pool.terminate(spare=self.stats.failed | self.terminated)
        return True

    def record_so_far(self) -> None:
        """With --follow: the run so far as the group's last run, each interval, so the
        dashboard shows a following loader's progress (only when it changed)."""
        counts = tuple(self.stats.total(k) for k in ("rows", "dead_letters", "files"))
        if counts == self.recorded:
            return
        seconds = time.monotonic() - self.started
        try:
            record_last_run(
                self.zk, self.config.group, run_record(self.stats, seconds, self.config)
            )
            self.recorded = counts
        except KazooException as exc:
            log.info("cannot record the run so far now: %s", exc)

    def measure_lag(self) -> None:
        """The lag gauges; a broker or ZooKeeper that fails now is asked again later."""
        try:
            self.metrics.lag(progress_left(self.zk, self.cluster, self.config)[1])
        except (KafkaError, OSError, KazooException) as exc:
            log.info("cannot measure the lag now: %s", exc)


def reader_ids(config: LoaderConfig) -> dict[str, int] | None:
    """An Avro load's reader schema id per topic (the subjects' latest versions), for the
    plan; None for the other formats."""
    if config.format != "avro":
        return None
    from .avroschemas import RegistrySchemas

    return RegistrySchemas(config).reader_ids()


def run_record(stats: Stats, seconds: float, config: LoaderConfig) -> dict:
    """What ``/consumers/<group>/loader/last_run`` says of a run (or, with --follow, of the
    run so far): when, its counts, how long, and the warehouse it writes to."""
    return {
        "finished_at": int(time.time() * 1000),
        "rows": stats.total("rows"),
        "dead_letters": stats.total("dead_letters"),
        "files": stats.total("files"),
        "seconds": round(seconds, 3),
        "warehouse": warehouse_url(config.url),
    }


def replan(zk, cluster, config: LoaderConfig) -> None:
    """With --follow: mark the hours every partition is past, then plan again up to the
    current end; a broker or ZooKeeper that fails now is tried again next interval."""
    try:
        mark_complete_hours(
            Storage(config.url, config.storage_options),
            config,
            read_plan_partitions(zk, config),
            only_complete=True,
            zk=zk,
        )
        make_plan(zk, cluster, config.group, config.topics, value_schema_ids=reader_ids(config))
    except (KafkaError, OSError, KazooException, LoaderError) as exc:  # a broker, ZooKeeper
        # or the schema registry
        log.warning("cannot plan now (%s); trying again in %.0f s", exc, config.interval)
        try:
            cluster.refresh(list(config.topics), allow_auto_create=False)
        except (KafkaError, OSError):
            pass


def exit_status(codes: list[int | None], stats: Stats, stopping: list[int], terminated) -> int:
    """A pass's exit status from its workers' exit codes: 0, 1 if a worker failed (each one
    that died without reporting why gets a line in ``stats.errors``), 130 or 143 when the
    load was interrupted by SIGINT or SIGTERM."""
    status = 0
    for i, code in enumerate(codes):
        if code not in (0, None) and not stopping:
            if code < 0 and i not in terminated:
                stats.errors.append(f"worker {i} was killed by signal {-code}")
            elif code > 0 and i not in stats.failed:
                stats.errors.append(f"worker {i} died (exit status {code})")
            status = 1
    if stats.errors:
        status = 1
    if stopping:
        status = 130 if stopping[0] == signal.SIGINT else 143
    return status
