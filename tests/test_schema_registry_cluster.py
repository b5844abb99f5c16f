"""Two ``headrace schema-registry`` processes on one ZooKeeper serve one registry: what one
registers the other serves at once, and registering from both at the same time never hands
out one id for two schemas nor two ids for one schema."""

from __future__ import annotations

import json
import threading

import pytest
from schema_registry_process import RegistryProcess, call

from consumers.schemas import AvroDecoder, AvroEncoder, RegistryClient


def schema(n: int) -> str:
    return json.dumps(
        {"type": "record", "name": f"E{n}", "fields": [{"name": "n", "type": "long"}]}
    )


@pytest.fixture(scope="module")
def pair(zookeeper):
    chroot = f"{zookeeper.connect}/registry-pair"
    first = RegistryProcess(chroot)
    second = RegistryProcess(chroot)
    yield first, second
    first.stop()
    second.stop()


def test_a_registration_on_one_is_read_on_the_other_at_once(pair):
    one, other = pair
    for n in range(5):  # each read follows its write at once, no waiting
        schema_id = RegistryClient(one.url).register(f"ryw-{n}", schema(100 + n))
        client = RegistryClient(other.url)
        assert json.loads(client.schema_by_id(schema_id))["name"] == f"E{100 + n}"
        assert client.latest(f"ryw-{n}").schema_id == schema_id
    value = AvroEncoder(RegistryClient(one.url), "ryw-avro", schema(200)).encode({"n": 7})
    assert AvroDecoder(RegistryClient(other.url)).decode(value) == {"n": 7}


def test_configs_set_on_one_hold_on_the_other(pair):
    one, other = pair
    call(one.url, "PUT", "/config/cfg-value", {"compatibility": "FULL_TRANSITIVE"})
    assert call(other.url, "GET", "/config/cfg-value")[1] == {
        "compatibilityLevel": "FULL_TRANSITIVE"
    }


def test_concurrent_registrations_from_both_agree_on_every_id(pair):
    """Eight threads, half on each process, register twelve schemas under three subjects
    each (every schema under every subject, in a different order per thread)."""
    schemas = [schema(n) for n in range(12)]
    subjects = ["race-a", "race-b", "race-c"]
    got: list[tuple[str, int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(t: int) -> None:
        client = RegistryClient(pair[t % 2].url, timeout=30)
        call(pair[t % 2].url, "PUT", "/config", {"compatibility": "NONE"})
        start.wait()
        try:
            order = [(s, n) for n in range(12) for s in subjects]
            for subject, n in order[t:] + order[:t]:
                schema_id = client.register(subject, schemas[n])
                with lock:
                    got.append((subject, n, schema_id))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    ids_of: dict[int, set[int]] = {}
    for _, n, schema_id in got:
        ids_of.setdefault(n, set()).add(schema_id)
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of  # one id per schema
    assert len({ids.pop() for ids in ids_of.values()}) == 12  # no id for two schemas
    for subject in subjects:  # each schema once per subject: no duplicate versions
        versions = RegistryClient(pair[0].url).versions(subject)
        assert len(versions) == 12, versions
    call(pair[0].url, "PUT", "/config", {"compatibility": "BACKWARD"})


def test_a_registry_killed_mid_registration_leaves_nothing_half_done(pair, zookeeper):
    """Registrations stream into a third process, which is SIGKILLed among them; registering
    every schema again through a survivor gives each its one id and each subject one version
    per schema, whatever the dead process had written."""
    victim = RegistryProcess(f"{zookeeper.connect}/registry-pair")
    call(victim.url, "PUT", "/config/kill-value", {"compatibility": "NONE"})
    schemas = [schema(300 + n) for n in range(40)]
    stop = threading.Event()
    sent: list[int] = []

    def stream() -> None:
        client = RegistryClient(victim.url, timeout=5)
        for n, text in enumerate(schemas):
            if stop.is_set():
                return
            try:
                client.register("kill-value", text)
                sent.append(n)
            except Exception:  # the process died under the request
                return

    thread = threading.Thread(target=stream)
    thread.start()
    while len(sent) < 5 and thread.is_alive():
        threading.Event().wait(0.01)
    victim.process.kill()
    victim.process.wait(10)
    stop.set()
    thread.join(30)
    assert 5 <= len(sent) < len(schemas)

    survivor = RegistryClient(pair[0].url)
    ids = [survivor.register("kill-value", text) for text in schemas]
    assert len(set(ids)) == len(schemas)
    versions = survivor.versions("kill-value")
    assert len(versions) == len(schemas)
    assert sorted(survivor.version("kill-value", v).schema_id for v in versions) == sorted(ids)
    for n in sent:  # what was acknowledged before the kill kept its id
        assert survivor.lookup("kill-value", schemas[n]) is not None


def test_two_incompatible_schemas_registered_at_once_are_never_both_taken(pair):
    """Each of two schemas may follow the first version, but not each other: registered at
    the same moment through the two processes, one wins and the other is refused (409)."""
    base = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    with_b = [
        json.dumps(base | {"fields": [*base["fields"], {"name": "b", "type": t, "default": d}]})
        for t, d in (("int", 0), ("string", ""))
    ]
    for round_ in range(8):
        subject = f"duel-{round_}"
        RegistryClient(pair[0].url).register(subject, json.dumps(base))
        start = threading.Barrier(2)
        statuses: list[int] = []

        def register(side: int, subject=subject, start=start, statuses=statuses) -> None:
            start.wait()
            status, _, _ = call(
                pair[side].url, "POST", f"/subjects/{subject}/versions", {"schema": with_b[side]}
            )
            statuses.append(status)

        threads = [threading.Thread(target=register, args=(side,)) for side in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [200, 409], statuses
        assert RegistryClient(pair[1].url).versions(subject) == [1, 2]
