"""Mirroring live clusters into an offline one, exactly once (the paper's section 4): members
of a consumer group on the source copy each partition to the target partition of the same
number with an idempotent producer, each record carrying a header that names its source
partition and offset, so a restarted mirror resumes from what the target already holds.

``Mirror`` runs it (``mirror.py``); ``topics.py`` creates the target topics, ``resume.py``
finds where to go on, ``copy.py`` is the copy loop, ``source.py`` the group members it can use,
``metrics.py`` its Prometheus page."""

from .copy import MirrorWorker
from .mirror import Mirror, MirrorSettings
from .resume import HEADER, last_mirrored, parse_source, source_header
from .source import MirrorError, SourceGroup
from .topics import TopicFilter, TopicSync

__all__ = [
    "HEADER",
    "Mirror",
    "MirrorError",
    "MirrorSettings",
    "MirrorWorker",
    "SourceGroup",
    "TopicFilter",
    "TopicSync",
    "last_mirrored",
    "parse_source",
    "source_header",
]
