"""The load's workers: processes (threads for memory://), started, let go, stopped, replaced.

Workers start before the loader plans, so they are forked from a process with no thread yet,
and wait until the plan is saved; a worker that dies under ``--follow`` is replaced after a
back-off that doubles up to a minute while it keeps dying (see ``Replacements``).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import threading
import time

from kazoo.exceptions import KazooException

from broker.protocol.errors import KafkaError

from .config import LoaderConfig
from .registry import LoaderError
from .storage import Storage
from .worker import Worker

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


def run_worker(
    config: LoaderConfig, queue, index: int, parent_pid: int | None = None, stop_event=None
) -> int:
    """Run one worker to the end; failures are reported on ``queue``.  Returns an exit status."""
    try:
        Worker(config, report=queue.put, parent_pid=parent_pid, stop_event=stop_event).run()
    except (LoaderError, OSError, KafkaError, ValueError) as exc:
        queue.put({"type": "error", "worker": index, "message": str(exc)})
        return 1
    except KazooException as exc:
        queue.put(
            {
                "type": "error",
                "worker": index,
                "message": f"lost ZooKeeper ({type(exc).__name__}: {exc}); rerun to resume",
            }
        )
        return 1
    except Exception as exc:  # a bug: say so plainly
        log.exception("worker %d failed", index)
        queue.put({"type": "error", "worker": index, "message": f"{type(exc).__name__}: {exc}"})
        return 1
    queue.put({"type": "done", "worker": index})
    return 0


def worker_main(config: LoaderConfig, queue, index: int, parent_pid: int, go=None) -> None:
    """Entry point of a worker process (``multiprocessing`` spawn); it starts work once
    ``go`` is set (the run plan is saved)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while go is not None and not go.wait(0.1):
        if os.getppid() != parent_pid:
            sys.exit(1)

    logging.basicConfig(
        level=config.log_level,
        format=f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger().setLevel(config.log_level)  # forked: the parent's set-up
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    # Everything imported so far lives as long as the process, and the records in flight are
    # many small objects: collect rarely and never scan the permanent ones.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    sys.exit(run_worker(config, queue, index, parent_pid))


class ThreadWorker(threading.Thread):
    """A worker as a thread, with the bits of multiprocessing.Process that a pool uses."""

    def __init__(self, config: LoaderConfig, events, index: int, stop_event):
        super().__init__(name=f"loader-worker-{index}", daemon=True)
        self.args = (config, events, index)
        self.stop_event = stop_event
        self.exitcode = None

    def run(self):
        self.exitcode = 1  # until run_worker returns: a thread that dies failed
        self.exitcode = run_worker(*self.args, parent_pid=None, stop_event=self.stop_event)

    def terminate(self):
        self.stop_event.set()


class WorkerPool:
    """The workers of one pass of a load, their report queue, and the event that lets them go
    (None for threads, which start when let go)."""

    def __init__(self, config: LoaderConfig, procs: list, events, go):
        self.config, self.procs, self.events, self.go = config, procs, events, go

    @classmethod
    def start(cls, config: LoaderConfig) -> WorkerPool:
        """Worker processes start now and wait for the plan; they are forked when this process
        has no other thread yet (nothing to import again), spawned otherwise.  memory:// lives
        inside one process, so its workers are threads of this one, started when let go."""
        if Storage(config.url, config.storage_options).protocol == "memory":
            events = queue_module.Queue()
            stop_event = threading.Event()
            workers = [ThreadWorker(config, events, i, stop_event) for i in range(config.workers)]
            return cls(config, workers, events, None)
        fork = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if fork else "spawn")
        # Made in the spawn context: forked workers inherit them, and replacements started
        # later (spawned, as this process runs threads by then) can be handed them too.
        shared = multiprocessing.get_context("spawn")
        events = shared.Queue()
        go = shared.Event()  # set once the plan is saved
        procs = [
            ctx.Process(target=worker_main, args=(config, events, i, os.getpid(), go), daemon=True)
            for i in range(config.workers)
        ]
        for p in procs:
            p.start()
        return cls(config, procs, events, go)

    def release(self) -> None:
        """Let the workers go: the plan is saved."""
        if self.go is None:
            for p in self.procs:
                p.start()
        else:
            self.go.set()

    def reports(self, timeout: float = 0.0) -> list[dict]:
        """The workers' reports so far, waiting up to ``timeout`` for the first."""
        got = []
        try:
            got.append(self.events.get(timeout=timeout) if timeout else self.events.get_nowait())
            while True:
                got.append(self.events.get_nowait())
        except queue_module.Empty:
            pass
        return got

    def any_alive(self) -> bool:
        return any(p.is_alive() for p in self.procs)

    def terminate(self, spare: set[int] = frozenset()) -> set[int]:
        """Stop every live worker not in ``spare``; returns the indexes stopped."""
        stopped = set()
        for i, p in enumerate(self.procs):
            if i not in spare and p.ident is not None and p.is_alive():
                p.terminate()
                stopped.add(i)
        return stopped

    def join(self) -> None:
        for p in self.procs:
            p.join()

    def exit_codes(self) -> list[int | None]:
        return [p.exitcode for p in self.procs]

    def replace(self, index: int) -> None:
        """Start a new worker in place of worker ``index`` (dead)."""
        old = self.procs[index]
        if isinstance(old, ThreadWorker):
            new = ThreadWorker(self.config, self.events, index, old.stop_event)
        else:  # this process runs threads now: spawn, not fork
            new = multiprocessing.get_context("spawn").Process(
                target=worker_main,
                args=(self.config, self.events, index, os.getpid(), None),
                daemon=True,
            )
        new.start()
        self.procs[index] = new

    def dead(self) -> list[int]:
        """Workers that stopped (a process not yet started is not dead)."""
        return [
            i
            for i, p in enumerate(self.procs)
            if not p.is_alive() and (p.exitcode is not None or isinstance(p, ThreadWorker))
        ]


class Replacements:
    """With --follow, when to replace each dead worker: ``due`` notices a death (the first
    time it sees it, it schedules a replacement after the back-off) and says which ones are
    due now; the back-off doubles up to a minute while a worker keeps dying."""

    def __init__(self):
        self.pending: dict[int, float] = {}  # worker -> when it may be replaced
        self.backoff: dict[int, float] = {}  # worker -> its next back-off

    def due(self, dead: list[int], now: float, say) -> list[int]:
        ready = []
        for i in dead:
            when = self.pending.get(i)
            if when is None:  # just noticed
                backoff = self.backoff.get(i, 1.0)
                self.pending[i] = now + backoff
                say(i, backoff)
            elif now >= when:
                ready.append(i)
        for i in ready:
            del self.pending[i]
            self.backoff[i] = min(self.backoff.get(i, 1.0) * 2, MAX_BACKOFF_S)
        return ready


def replace_dead(pool: WorkerPool, replacements: Replacements, err) -> None:
    """Replace the workers of ``pool`` that are due (``--follow``), telling ``err`` of each
    death when it is noticed."""

    def say(i: int, backoff: float) -> None:
        print(
            f"headrace load: worker {i} stopped (exit status {pool.procs[i].exitcode}); "
            f"starting another in {backoff:.0f} s",
            file=err,
        )

    for i in replacements.due(pool.dead(), time.monotonic(), say):
        pool.replace(i)
