"""``headrace mirror --from-bootstrap-server``: the mirror's workers are members of a Kafka
consumer group that the source brokers coordinate (``KafkaGroupConsumer``), with no access
to the source's ZooKeeper.  Killed with SIGKILL and restarted mid-stream, it copies every
record once."""

from __future__ import annotations

from conftest import create_topic, metadata, wait_for
from mirror_helpers import MirrorProcess, SteadyProducer
from test_mirror_exactly_once import _assert_mirrored_once, _committed, _target_count


def test_a_mirror_by_bootstrap_server_copies_every_record_once(make_cluster, tmp_path):
    source = make_cluster(
        1, group_initial_rebalance_delay_ms=300, group_min_session_timeout_ms=1000
    )
    target = make_cluster(1)
    cluster_id = metadata(source.brokers[0].port)["cluster_id"]
    create_topic(source.brokers[0].port, "clicks", 3)
    clicks = SteadyProducer(source.bootstrap, "clicks", 1500)
    clicks.start()
    mirror = MirrorProcess(tmp_path / "mirror.log", source, target, "mirror-kg", "clicks")
    at = mirror.args.index("--from-zookeeper")
    mirror.args[at : at + 2] = ["--from-bootstrap-server", source.bootstrap]
    mirror.args += ["--workers", "2", "--offset-commit-interval-ms", "200"]
    try:
        mirror.start()
        wait_for(lambda: _target_count(target, "clicks", 3) >= 300, 60)
        mirror.kill()  # SIGKILL: the restart resumes from the commits and the target's headers
        mirror.start()
        clicks.join(60)
        assert clicks.error is None
        wait_for(lambda: _target_count(target, "clicks", 3) >= 1500, 60)
        wait_for(
            lambda: sum(o or 0 for o in _committed(source, "mirror-kg", "clicks", 3)) == 1500, 30
        )
        assert mirror.terminate() == 0, mirror.log()
    finally:
        if mirror.process is not None and mirror.process.poll() is None:
            mirror.kill()
    assert _assert_mirrored_once(source, target, "clicks", 3, cluster_id) == 1500
