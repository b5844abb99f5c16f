"""Topic ids on the wire (KIP-516): Metadata v10+ answers each topic's id, Fetch v13+ names
topics by id only, and Metadata v12+ may ask for a topic by id.

The cluster metadata keeps each topic's id as ZooKeeper holds it (hex, from the topic's
placement node); the wire carries a ``uuid.UUID``.  A topic without an id (created before
ids were kept) answers the zero UUID, which tells clients to name it instead.

    >>> ids = TopicIds(metadata)
    >>> ids.name_of(ids.id_of("clicks"))
    'clicks'
"""

from __future__ import annotations

import base64
import binascii
import uuid

from .protocol import errors

ZERO_UUID = uuid.UUID(int=0)
METADATA_BY_ID = 12  # the first Metadata version that may ask for a topic by id
FETCH_BY_ID = 13  # the first Fetch version naming topics by id


def parse_topic_id(text: str | None) -> uuid.UUID:
    """A topic id as ZooKeeper holds it - our hex, or Kafka's URL-safe base64 - as a UUID;
    the zero UUID for none or one that does not parse."""
    if not text:
        return ZERO_UUID
    try:
        if len(text) == 22:  # Kafka's Uuid.toString()
            return uuid.UUID(bytes=base64.urlsafe_b64decode(text + "=="))
        return uuid.UUID(hex=text)
    except (ValueError, binascii.Error):
        return ZERO_UUID


class TopicIds:
    """The ids of the topics in the cluster metadata, both ways; the reverse map is built
    again whenever an id it holds no longer names the same topic."""

    def __init__(self, metadata):
        self.metadata = metadata
        self._names: dict[uuid.UUID, str] = {}
        self._seen: dict[str, str] = {}  # name -> the id text the map was built from

    def id_of(self, name: str) -> uuid.UUID:
        return parse_topic_id(self.metadata.topic_ids.get(name))

    def name_of(self, topic_id: uuid.UUID) -> str | None:
        """The topic with id ``topic_id``, or None if there is none."""
        name = self._names.get(topic_id)
        if name is not None and self.metadata.topic_ids.get(name) == self._seen.get(name):
            return name
        if topic_id == ZERO_UUID:
            return None
        self._seen = dict(self.metadata.topic_ids)
        self._names = {parse_topic_id(text): name for name, text in self._seen.items()}
        return self._names.get(topic_id)

    def name_fetched_topics(self, topics: list) -> None:
        """Fetch v13+: each requested topic's ``topic`` set from its ``topic_id`` (None for
        an id no topic has, which the fetch answers with UNKNOWN_TOPIC_ID)."""
        for topic in topics:
            topic["topic"] = self.name_of(topic["topic_id"])

    def requested_metadata(self, topics: list, version: int) -> tuple[list[str], list[dict]]:
        """Metadata: the names of the topics asked for, and the answers of those that
        cannot be looked up: asked for by an id no topic has (UNKNOWN_TOPIC_ID), or by id or
        without a name below v12 (INVALID_REQUEST, as Kafka answers)."""
        names, failed = [], []
        for topic in topics:
            name, topic_id = topic["name"], topic.get("topic_id", ZERO_UUID)
            if version < METADATA_BY_ID and (name is None or topic_id != ZERO_UUID):
                code = errors.InvalidRequestError.code
            elif name is not None:
                names.append(name)
                continue
            else:
                name = self.name_of(topic_id)
                if name is not None:
                    names.append(name)
                    continue
                code = errors.UnknownTopicIdError.code
            failed.append(_failed_topic(code, name if version >= METADATA_BY_ID else "", topic_id))
        return names, failed


def _failed_topic(code: int, name: str | None, topic_id: uuid.UUID) -> dict:
    return {
        "error_code": code,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": [],
    }


__all__ = ["FETCH_BY_ID", "ZERO_UUID", "TopicIds", "parse_topic_id"]
