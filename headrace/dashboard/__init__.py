"""The web dashboard (``headrace dashboard``): samplers of the cluster, topics and groups
with their one-second history (``sampler``, ``views``), the live tail and windowed counts
(``feeds``), served as JSON and Server-Sent Events by twisted.web (``server``, ``sse``)."""

from .sampler import Sampler
from .server import build_site

__all__ = ["Sampler", "build_site"]
