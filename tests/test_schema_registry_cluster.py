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
