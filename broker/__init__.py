"""The broker tier: wire protocol (``broker.protocol``), storage engine (``broker.log``)
and configuration (``broker.config``)."""
