"""headrace: a distributed messaging system for log processing."""

__version__ = "0.1.0"
