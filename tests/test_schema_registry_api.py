"""``headrace schema-registry``'s REST API endpoint by endpoint, over HTTP to a real registry
process on a real ZooKeeper: answers, Confluent's error codes, compatibility levels, deletes,
configs; the client library against it; hostile bodies; the command's own errors."""

from __future__ import annotations

import json
import subprocess

import pytest
from command_lines import HEADRACE, ROOT
from conftest import wait_for, zk_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schema_registry_process import RegistryProcess, call

from consumers.schemas import (
    AvroDecoder,
    AvroEncoder,
    RegistryClient,
    RegistryError,
    RegistryUnavailableError,
    SchemaNotFoundError,
)
from headrace.devcluster import ZooKeeperProcess, free_port


def record(*fields) -> str:
    """A record schema ``R`` with ``fields`` given as (name, type) or (name, type, default)."""
    return json.dumps(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": f[0], "type": f[1], **({"default": f[2]} if len(f) > 2 else {})}
                for f in fields
            ],
        }
    )


V1 = record(("a", "int"))
V2 = record(("a", "int"), ("b", "string", "x"))  # adds a field with a default: FULL both ways
V3 = record(("a", "int"), ("b", "string", "x"), ("c", "long"))  # adds one without: not BACKWARD


@pytest.fixture(scope="module")
def registry(zookeeper):
    process = RegistryProcess(f"{zookeeper.connect}/registry-api")
    yield process
    process.stop()


@pytest.fixture
def subject(request) -> str:
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)
    return f"{name}-value"


def register(registry, subject: str, schema: str, **extra):
    return call(registry.url, "POST", f"/subjects/{subject}/versions", {"schema": schema, **extra})


def test_register_then_read_every_way(registry, subject):
    status, body, kind = register(registry, subject, V1)
    assert status == 200 and kind == "application/vnd.schemaregistry.v1+json"
    schema_id = body["id"]
    assert call(registry.url, "GET", f"/subjects/{subject}/versions")[:2] == (200, [1])
    status, doc, _ = call(registry.url, "GET", f"/subjects/{subject}/versions/1")
    assert status == 200
    assert (doc["subject"], doc["version"], doc["id"]) == (subject, 1, schema_id)
    assert json.loads(doc["schema"]) == json.loads(V1) | {"fields": [{"name": "a", "type": "int"}]}
    assert call(registry.url, "GET", f"/subjects/{subject}/versions/latest")[1] == doc
    assert call(registry.url, "GET", f"/subjects/{subject}/versions/-1")[1] == doc
    raw = call(registry.url, "GET", f"/subjects/{subject}/versions/1/schema")[1]
    assert raw == json.loads(doc["schema"])
    assert call(registry.url, "GET", f"/schemas/ids/{schema_id}")[1] == {"schema": doc["schema"]}
    assert call(registry.url, "GET", f"/schemas/ids/{schema_id}/versions")[1] == [
        {"subject": subject, "version": 1}
    ]
    assert subject in call(registry.url, "GET", "/subjects")[1]
    assert call(registry.url, "GET", "/schemas/types")[1] == ["AVRO"]
    assert call(registry.url, "GET", "/mode")[1] == {"mode": "READWRITE"}


def test_reregistering_returns_the_same_id_and_no_new_version(registry, subject):
    first = register(registry, subject, V1)[1]["id"]
    spaced = json.dumps(json.loads(V1), indent=4)  # the same schema, written another way
    assert register(registry, subject, spaced)[1]["id"] == first
    assert call(registry.url, "GET", f"/subjects/{subject}/versions")[1] == [1]


def test_ids_are_global_and_one_schema_has_one_id_in_every_subject(registry, subject):
    one = register(registry, f"{subject}-1", V1)[1]["id"]
    two = register(registry, f"{subject}-2", V1)[1]["id"]
    other = register(registry, f"{subject}-2", V2)[1]["id"]
    assert one == two != other
    assert call(registry.url, "GET", f"/subjects/{subject}-2/versions")[1] == [1, 2]
    versions = call(registry.url, "GET", f"/schemas/ids/{one}/versions")[1]
    assert {"subject": f"{subject}-1", "version": 1} in versions
    assert {"subject": f"{subject}-2", "version": 1} in versions


def test_lookup_finds_the_version_or_says_which_is_missing(registry, subject):
    register(registry, subject, V1)
    status, doc, _ = call(registry.url, "POST", f"/subjects/{subject}", {"schema": V1})
    assert status == 200 and (doc["version"], doc["subject"]) == (1, subject)
    status, doc, _ = call(registry.url, "POST", f"/subjects/{subject}", {"schema": V2})
    assert (status, doc["error_code"]) == (404, 40403)
    status, doc, _ = call(registry.url, "POST", f"/subjects/{subject}-none", {"schema": V1})
    assert (status, doc["error_code"]) == (404, 40401)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/subjects/nobody/versions", 404, 40401),
        ("GET", "/subjects/nobody/versions/1", 404, 40401),
        ("GET", "/subjects/{s}/versions/7", 404, 40402),
        ("GET", "/subjects/{s}/versions/0", 422, 42202),
        ("GET", "/subjects/{s}/versions/first", 422, 42202),
        ("GET", "/schemas/ids/999999", 404, 40403),
        ("GET", "/schemas/ids/x", 404, 40403),
        ("DELETE", "/subjects/nobody", 404, 40401),
        ("GET", "/no/such/thing", 404, 404),
        ("PATCH", "/subjects", 405, 405),
        ("GET", "/config/{s}", 404, 40408),
    ],
)
def test_errors_carry_confluents_codes(registry, subject, method, path, status, code):
    register(registry, subject, V1)
    got, doc, kind = call(registry.url, method, path.format(s=subject))
    assert (got, doc["error_code"]) == (status, code)
    assert isinstance(doc["message"], str) and doc["message"]
    assert kind == "application/vnd.schemaregistry.v1+json"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"schema": '{"type": "nosuch"}'}, "Invalid schema"),
        ({"schema": "not json"}, "Invalid schema"),
        ({"schema": '{"type": "record", "name": "R"}'}, "Invalid schema"),
        ({"schema": ""}, "Empty schema"),
        ({"schema": V1, "schemaType": "PROTOBUF"}, "AVRO"),
        ({"schema": V1, "schemaType": "JSON"}, "AVRO"),
        ({"schema": V1, "references": [{"name": "x", "subject": "y", "version": 1}]}, "refer"),
    ],
)
def test_a_schema_that_is_not_avro_is_42201(registry, subject, body, reason):
    status, doc, _ = call(registry.url, "POST", f"/subjects/{subject}/versions", body)
    assert (status, doc["error_code"]) == (422, 42201)
    assert reason in doc["message"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/vnd.schemaregistry+json"]
)
def test_json_content_types_are_accepted(registry, subject, content_type):
    raw = json.dumps({"schema": V1}).encode()
    status, doc, _ = call(
        registry.url, "POST", f"/subjects/{subject}/versions", raw=raw, content_type=content_type
    )
    assert status == 200 and "id" in doc


def test_another_content_type_is_415(registry, subject):
    raw = json.dumps({"schema": V1}).encode()
    status, doc, _ = call(
        registry.url, "POST", f"/subjects/{subject}/versions", raw=raw, content_type="text/xml"
    )
    assert (status, doc["error_code"]) == (415, 415)


def test_backward_by_default_refuses_a_field_without_default_with_409(registry, subject):
    register(registry, subject, V1)
    register(registry, subject, V2)
    status, doc, _ = register(registry, subject, V3)
    assert (status, doc["error_code"]) == (409, 409)
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in doc["message"]
    assert call(registry.url, "GET", f"/subjects/{subject}/versions")[1] == [1, 2]
    path = f"/compatibility/subjects/{subject}/versions/latest"
    assert call(registry.url, "POST", path, {"schema": V3})[1] == {"is_compatible": False}
    verbose = call(registry.url, "POST", path + "?verbose=true", {"schema": V3})[1]
    assert verbose["is_compatible"] is False and "c" in verbose["messages"][0]
    assert call(registry.url, "POST", path, {"schema": V2})[1] == {"is_compatible": True}


def test_levels_per_subject_fall_back_to_global(registry, subject):
    assert call(registry.url, "GET", "/config")[1] == {"compatibilityLevel": "BACKWARD"}
    register(registry, subject, V1)
    status, doc, _ = call(registry.url, "PUT", f"/config/{subject}", {"compatibility": "NONE"})
    assert (status, doc) == (200, {"compatibility": "NONE"})
    assert call(registry.url, "GET", f"/config/{subject}")[1] == {"compatibilityLevel": "NONE"}
    assert register(registry, subject, V3)[0] == 200  # NONE lets anything follow
    status, doc, _ = call(registry.url, "PUT", f"/config/{subject}", {"compatibility": "SIDEWAYS"})
    assert (status, doc["error_code"]) == (422, 42203)
    assert call(registry.url, "DELETE", f"/config/{subject}")[1] == {"compatibilityLevel": "NONE"}
    assert call(registry.url, "GET", f"/config/{subject}?defaultToGlobal=true")[1] == {
        "compatibilityLevel": "BACKWARD"
    }
    status, doc, _ = call(registry.url, "PUT", "/config", {"compatibility": "FOO"})
    assert (status, doc["error_code"]) == (422, 42203)


def test_forward_refuses_a_schema_the_old_one_cannot_read(registry, subject):
    drop_a = record(("b", "string", "x"))  # the latest (reading) needs "a", which has no default
    call(registry.url, "PUT", f"/config/{subject}", {"compatibility": "FORWARD"})
    register(registry, subject, V1)
    assert register(registry, subject, drop_a)[0] == 409
    assert register(registry, subject, V2)[0] == 200  # V1 reads V2's data: it ignores "b"


def test_full_needs_both_directions(registry, subject):
    call(registry.url, "PUT", f"/config/{subject}", {"compatibility": "FULL"})
    register(registry, subject, V1)
    assert register(registry, subject, V3)[1]["error_code"] == 409  # not backward
    assert register(registry, subject, V2)[0] == 200


def test_transitive_checks_every_version_not_only_the_latest(registry, subject):
    first = record(("a", "long"))
    middle = record(("b", "int", 0))  # drops "a"
    last = record(("b", "int", 0), ("a", "int", 0))  # reads middle; cannot read first's long
    for level, expected in (("BACKWARD", 200), ("BACKWARD_TRANSITIVE", 409)):
        s = f"{subject}-{level}"
        call(registry.url, "PUT", f"/config/{s}", {"compatibility": "NONE"})
        assert register(registry, s, first)[0] == register(registry, s, middle)[0] == 200
        call(registry.url, "PUT", f"/config/{s}", {"compatibility": level})
        assert register(registry, s, last)[0] == expected, level
    forward = f"{subject}-FORWARD_TRANSITIVE"  # the same history read the other way round
    call(registry.url, "PUT", f"/config/{forward}", {"compatibility": "NONE"})
    register(registry, forward, record(("a", "int")))
    register(registry, forward, record(("b", "int", 0)))
    call(registry.url, "PUT", f"/config/{forward}", {"compatibility": "FORWARD_TRANSITIVE"})
    assert register(registry, forward, record(("b", "int", 0), ("a", "long", 0)))[0] == 409


def test_soft_then_hard_delete_of_a_version_and_a_subject(registry, subject):
    register(registry, subject, V1)
    register(registry, subject, V2)
    status, doc, _ = call(registry.url, "DELETE", f"/subjects/{subject}/versions/2?permanent=true")
    assert (status, doc["error_code"]) == (404, 40407)
    assert call(registry.url, "DELETE", f"/subjects/{subject}/versions/2")[:2] == (200, 2)
    assert call(registry.url, "GET", f"/subjects/{subject}/versions")[1] == [1]
    assert call(registry.url, "GET", f"/subjects/{subject}/versions?deleted=true")[1] == [1, 2]
    assert call(registry.url, "GET", f"/subjects/{subject}/versions/2")[1]["error_code"] == 40402
    assert call(registry.url, "GET", f"/subjects/{subject}/versions/2?deleted=true")[0] == 200
    assert call(registry.url, "DELETE", f"/subjects/{subject}/versions/2?permanent=true")[1] == 2

    status, doc, _ = call(registry.url, "DELETE", f"/subjects/{subject}?permanent=true")
    assert (status, doc["error_code"]) == (404, 40405)
    assert call(registry.url, "DELETE", f"/subjects/{subject}")[:2] == (200, [1])
    assert subject not in call(registry.url, "GET", "/subjects")[1]
    assert subject in call(registry.url, "GET", "/subjects?deleted=true")[1]
    status, doc, _ = call(registry.url, "DELETE", f"/subjects/{subject}")
    assert (status, doc["error_code"]) == (404, 40404)
    assert call(registry.url, "GET", f"/subjects/{subject}/versions")[1]["error_code"] == 40401
    schema_id = register(registry, f"{subject}-keep", V1)[1]["id"]
    assert call(registry.url, "DELETE", f"/subjects/{subject}?permanent=true")[:2] == (200, [1])
    assert subject not in call(registry.url, "GET", "/subjects?deleted=true")[1]
    # the schema itself stays: ids are never reused nor forgotten
    assert call(registry.url, "GET", f"/schemas/ids/{schema_id}")[0] == 200
    assert register(registry, subject, V1)[1]["id"] == schema_id
    assert call(registry.url, "GET", f"/subjects/{subject}/versions")[1] == [1]


def test_client_library_against_the_registry(registry, subject):
    client = RegistryClient(registry.url)
    schema_id = client.register(subject, V1)
    assert client.register(subject, V1) == schema_id
    assert client.register(subject, V2) != schema_id
    assert client.versions(subject) == [1, 2]
    latest = client.latest(subject)
    assert (latest.subject, latest.version) == (subject, 2)
    assert client.version(subject, 1).schema_id == schema_id
    assert json.loads(client.schema_by_id(schema_id)) == json.loads(
        client.version(subject, 1).schema
    )
    assert client.lookup(subject, V2) == latest
    assert client.lookup(subject, V3) is None
    assert client.lookup(f"{subject}-none", V1) is None
    with pytest.raises(SchemaNotFoundError) as missing:
        client.version(subject, 9)
    assert (missing.value.status, missing.value.error_code) == (404, 40402)
    with pytest.raises(RegistryError) as refused:
        client.register(subject, V3)
    assert refused.value.error_code == 409 and not isinstance(refused.value, SchemaNotFoundError)
    encoder = AvroEncoder(client, subject, V2)
    assert encoder.schema_id == latest.schema_id
    assert AvroDecoder(RegistryClient(registry.url)).decode(encoder.encode({"a": 5})) == {
        "a": 5,
        "b": "x",
    }


@pytest.mark.integration
def test_an_unreachable_registry_is_a_typed_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailableError, match=url):
        RegistryClient(url, timeout=2).schema_by_id(1)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = (
    json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.fixed_dictionaries({"schema": json_values.map(json.dumps) | st.text(max_size=30)}).map(
        lambda v: json.dumps(v).encode()
    )
)
POST_PATHS = (
    "/subjects/fuzz/versions",
    "/subjects/fuzz",
    "/compatibility/subjects/fuzz/versions/latest",
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from([*POST_PATHS, "/config/fuzz"]), body=bodies)
def test_random_bodies_get_a_json_4xx_never_a_500(registry, path, body):
    method = "PUT" if path.startswith("/config") else "POST"
    status, doc, _ = call(registry.url, method, path, raw=body)
    assert status < 500, doc
    if status >= 400:
        assert set(doc) == {"error_code", "message"}
    assert call(registry.url, "GET", "/schemas/types")[1] == ["AVRO"]  # still serving


@pytest.mark.integration
def test_zookeeper_down_is_50001_and_the_registry_recovers(tmp_path):
    zookeeper = ZooKeeperProcess(tmp_path / "zk")
    zookeeper.start()
    process = RegistryProcess(zookeeper.connect)
    try:
        assert register(process, "down-value", V1)[0] == 200
        zookeeper.stop()
        status, doc, _ = call(process.url, "GET", "/subjects/down-value/versions")
        assert (status, doc["error_code"]) == (500, 50001)
        assert "ZooKeeper" in doc["message"]
        zookeeper.start()  # the same port and data: the registry's session comes back
        wait_for(lambda: call(process.url, "GET", "/subjects/down-value/versions")[0] == 200, 30)
        assert register(process, "down-value", V2)[0] == 200
    finally:
        code, err = process.stop()
        zookeeper.stop()
    assert code == 0, err
    assert "Traceback" not in err


def _headrace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HEADRACE, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zookeeper", "127.0.0.1:1", "--port", "70000"], "--port 70000"),
        (["--port", "8081"], "--zookeeper"),
        (["--zookeeper", "z", "--port", "eighty"], "invalid int value"),
    ],
)
def test_bad_options_are_a_clear_message_and_exit_2(args, message):
    done = _headrace("schema-registry", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.integration
def test_help_names_the_options():
    done = _headrace("schema-registry", "--help")
    assert done.returncode == 0
    for option in ("--zookeeper", "--port", "--bind"):
        assert option in done.stdout


@pytest.mark.integration
def test_unreachable_zookeeper_is_a_clear_message():
    done = _headrace(
        "schema-registry", "--zookeeper", f"127.0.0.1:{free_port()}", "--zookeeper-timeout", "1"
    )
    assert done.returncode == 1
    assert "cannot be reached" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_stops_it_and_each_request_is_logged(zookeeper):
    process = RegistryProcess(f"{zookeeper.connect}/registry-stop")
    call(process.url, "GET", "/subjects")
    code, err = process.stop()
    assert code == 0
    assert "GET /subjects 200" in err


@pytest.mark.parametrize("name", ["team/clicks value", ".", "..", "ü%2F?#"])
def test_any_subject_name_round_trips(registry, name):
    client = RegistryClient(registry.url)
    schema_id = client.register(name, V1)
    assert client.latest(name).subject == name
    assert client.version(name, 1).schema_id == schema_id
    assert name in call(registry.url, "GET", "/subjects")[1]


def test_a_corrupt_node_is_50001_naming_it_not_a_traceback(registry, zookeeper, subject):
    from broker.protocol.schema_nodes import version_path

    register(registry, subject, V1)
    with zk_session(f"{zookeeper.connect}/registry-api") as zk:
        zk.set(version_path(subject, 1), b"{not json")
    status, doc, _ = call(registry.url, "GET", f"/subjects/{subject}/versions/1")
    assert (status, doc["error_code"]) == (500, 50001)
    assert version_path(subject, 1) in doc["message"] and "Traceback" not in doc["message"]
    assert call(registry.url, "GET", "/schemas/types")[0] == 200


def test_a_refused_registration_leaves_no_subject_behind(registry, zookeeper, subject):
    from broker.protocol.schema_nodes import subject_path
    from headrace.schema_registry.store import NEW_SUBJECT, SchemaStore

    status, doc, _ = register(registry, subject, '{"type": "nosuch"}')
    assert (status, doc["error_code"]) == (422, 42201)
    other = f"{subject}-refused"
    register(registry, other, V1)
    assert register(registry, other, V3)[1]["error_code"] == 409
    with zk_session(f"{zookeeper.connect}/registry-api") as zk:
        assert zk.exists(subject_path(subject)) is None
        # Reading a new subject's stamp, as every registration does first, creates nothing;
        # its nodes come with its first version, in one transaction.
        store = SchemaStore(zk)
        assert store.stamp(subject) == NEW_SUBJECT
        assert zk.exists(subject_path(subject)) is None
    assert subject not in call(registry.url, "GET", "/subjects?deleted=true")[1]
    assert call(registry.url, "GET", f"/subjects/{other}/versions")[1] == [1]
    assert register(registry, subject, V1)[0] == 200
    assert call(registry.url, "GET", f"/subjects/{subject}/versions")[1] == [1]


def test_a_chroot_with_no_cluster_and_no_registry_is_named(zookeeper):
    empty = f"{zookeeper.connect}/registry-nothing-here"
    first = RegistryProcess(empty)
    call(first.url, "GET", "/subjects")  # serving: its reactor handles SIGTERM
    status, err = first.stop()
    assert status == 0
    assert "nothing under /registry-nothing-here in ZooKeeper" in err
    assert "is this the cluster's zookeeper.connect?" in err
    again = RegistryProcess(empty)  # its tree exists now: nothing to say
    call(again.url, "GET", "/subjects")
    status, err = again.stop()
    assert status == 0 and "nothing under" not in err


def test_the_metrics_page_counts_requests_by_endpoint_and_the_schemas(zookeeper):
    from metrics_scrape import scrape

    port = free_port()
    process = RegistryProcess(f"{zookeeper.connect}/registry-metrics", "--metrics-port", str(port))
    try:
        assert register(process, "clicks-value", V1)[0] == 200
        assert register(process, "views-value", V2)[0] == 200
        assert call(process.url, "GET", "/subjects/nosuch/versions/1")[0] == 404
        page = scrape(f"http://127.0.0.1:{port}/metrics")
        requests = "headrace_schema_registry_requests_total"
        posted = {"endpoint": "/subjects/{subject}/versions", "method": "POST", "status": "200"}
        assert page[requests, posted] == 2
        missing = {"endpoint": "/subjects/{subject}/versions/{version}", "method": "GET"}
        assert page[requests, {**missing, "status": "404"}] == 1
        assert page["headrace_schema_registry_schemas"] == 2
        assert page["headrace_schema_registry_subjects"] == 2
    finally:
        process.stop()
