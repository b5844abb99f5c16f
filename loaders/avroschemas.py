"""An Avro load's schemas from the schema registry: the reader schema a plan fixes per topic,
and the writer schema of each id the values carry.

    >>> schemas = RegistrySchemas(config)
    >>> ids = schemas.reader_ids()             # at plan time: each topic's subject's latest id
    >>> schemas.values(ids["clicks"]).decode(values)    # in a worker, by the plan's id

The plan records the reader schema's id (``value_schema_id``), never "latest": a rerun of a
failed run reads its planned range with the same schema, whatever was registered since, so it
writes the same files.  A registry that does not answer is the load's failure (retried a few
times), never a value's: only an id the registry does not know makes a dead letter.
"""

from __future__ import annotations

import logging
import time

from consumers.schemas.client import (
    RegistryClient,
    RegistryError,
    RegistryUnavailableError,
    SchemaNotFoundError,
)

from .avro import AvroSchemaError, AvroValues, ReaderSchema, UnknownSchemaId
from .config import LoaderConfig
from .registry import LoaderError

log = logging.getLogger(__name__)

# the loader's own columns, which a field of the reader schema may not take
META_COLUMNS = ("_topic", "_partition", "_offset", "_timestamp", "_key", "_event_time")
RETRIES = 5


class RegistrySchemas:
    """See the module docstring; one per process (its caches are per id, ids never change)."""

    def __init__(self, config: LoaderConfig, client: RegistryClient | None = None):
        assert config.schema_registry is not None
        self.config = config
        self.url = config.schema_registry
        self.client = (
            client
            if client is not None
            else RegistryClient.from_properties(self.url, dict(config.registry_properties))
        )
        self.readers: dict[int, AvroValues] = {}

    def _ask(self, what: str, call, *args):
        """``call(*args)``, asked again a few times while the registry does not answer."""
        delay = 0.2
        for attempt in range(RETRIES):
            try:
                return call(*args)
            except RegistryUnavailableError as exc:
                if attempt == RETRIES - 1:
                    raise LoaderError(
                        f"the schema registry at {self.url} does not answer ({exc.message}) "
                        f"while reading {what}; rerun when it is back"
                    ) from exc
                log.warning("schema registry %s: %s; asking again", self.url, exc.message)
                time.sleep(delay)
                delay *= 2
            except SchemaNotFoundError:
                raise
            except RegistryError as exc:
                raise LoaderError(
                    f"the schema registry at {self.url} refused to give {what}: {exc.message}"
                ) from exc
        raise AssertionError("unreachable")

    def reader_ids(self) -> dict[str, int]:
        """Each topic's reader schema id: the latest version of its subject, checked to make
        columns (and to hold ``--time-field``)."""
        ids = {}
        for topic in self.config.topics:
            subject = self.config.subject(topic)
            try:
                latest = self._ask(f"subject {subject}", self.client.latest, subject)
            except SchemaNotFoundError as exc:
                raise LoaderError(
                    f"the schema registry at {self.url} has no subject {subject!r} "
                    f"({exc.message}); register the topic's schema there or name its subject "
                    "with --value-subject"
                ) from exc
            try:
                reader = ReaderSchema(latest.schema)
            except AvroSchemaError as exc:
                raise LoaderError(f"{subject} version {latest.version}: {exc}") from exc
            names = [f.name for f in reader.fields]
            clash = [n for n in names if n in META_COLUMNS]
            if clash:
                raise LoaderError(
                    f"{subject} version {latest.version}: field {clash[0]} has the name of one "
                    "of the loader's own columns"
                )
            field = self.config.time_field
            if field and field not in names:
                raise LoaderError(
                    f"--time-field {field} is not a field of {subject} version {latest.version} "
                    f"(its fields: {', '.join(names)})"
                )
            ids[topic] = latest.schema_id
        return ids

    def writer_schema(self, schema_id: int) -> str:
        """The schema text of an id; UnknownSchemaId if the registry has none under it."""
        try:
            return self._ask(f"schema id {schema_id}", self.client.schema_by_id, schema_id)
        except SchemaNotFoundError as exc:
            raise UnknownSchemaId(schema_id) from exc

    def values(self, reader_id: int) -> AvroValues:
        """The decoder of values read with the reader schema of ``reader_id``."""
        found = self.readers.get(reader_id)
        if found is None:
            try:
                reader = ReaderSchema(self.writer_schema(reader_id))
            except (UnknownSchemaId, AvroSchemaError) as exc:
                raise LoaderError(
                    f"the plan's reader schema (id {reader_id}) cannot be read from "
                    f"{self.url}: {exc}"
                ) from exc
            found = self.readers[reader_id] = AvroValues(reader, self.writer_schema)
        return found
