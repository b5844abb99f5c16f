"""This broker's loggers as Kafka's BROKER_LOGGER config resource: each logger's level in
log4j's names, read by DescribeConfigs and set or removed by IncrementalAlterConfigs, with
Kafka's refusals (an unknown logger, an unknown level, removing the root's level, APPEND or
SUBTRACT)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .protocol import errors
from .protocol.config_apis import AlterConfigOp, ConfigSource, ConfigType

ROOT = "root"
# log4j's levels and the Python levels they set; TRACE is below DEBUG, OFF above CRITICAL.
LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50, "OFF": 100}
_OPERATION_NAMES = {op.value: op.name for op in AlterConfigOp}


def _loggers() -> dict[str, logging.Logger]:
    found = {
        name: logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    return {ROOT: logging.getLogger(), **dict(sorted(found.items()))}


def level_name(level: int) -> str:
    """The log4j name of a Python level: the highest of ``LEVELS`` at or below it."""
    return max((v, k) for k, v in LEVELS.items() if v <= max(level, LEVELS["TRACE"]))[1]


def logger_entries() -> list[dict]:
    """Every logger (``root`` first) with its effective level, as DescribeConfigs entries."""
    return [
        {
            "name": name,
            "value": level_name(logger.getEffectiveLevel()),
            "read_only": False,
            "config_source": ConfigSource.DYNAMIC_BROKER_LOGGER_CONFIG,
            "is_default": False,
            "is_sensitive": False,
            "synonyms": [],
            "config_type": ConfigType.UNKNOWN,
            "documentation": None,
        }
        for name, logger in _loggers().items()
    ]


def alter_loggers(operations: Iterable[tuple[str, int, str | None]], validate_only: bool) -> None:
    """Check every ``(logger, operation, level)`` step, then (unless ``validate_only``) set
    or remove the levels: a removed level is inherited from the parent again."""
    loggers, changes = _loggers(), []
    for name, operation, value in operations:
        if name not in loggers:
            raise errors.InvalidConfigError(f"Logger {name} does not exist!")
        if operation == AlterConfigOp.SET:
            level = (value or "").strip().upper()
            if level not in LEVELS:
                raise errors.InvalidConfigError(
                    f"Cannot set the log level of {name} to {value} as it is not a supported "
                    f"log level. Valid log levels are {', '.join(LEVELS)}"
                )
            changes.append((loggers[name], LEVELS[level]))
        elif operation == AlterConfigOp.DELETE:
            if name == ROOT:
                raise errors.InvalidRequestError(
                    "Removing the log level of the root logger is not allowed"
                )
            changes.append((loggers[name], logging.NOTSET))
        else:
            raise errors.InvalidRequestError(
                f"{_OPERATION_NAMES.get(operation, operation)} operation is not allowed for "
                "the BROKER_LOGGER resource"
            )
    if not validate_only:
        for logger, new_level in changes:
            logger.setLevel(new_level)


__all__ = ["LEVELS", "alter_loggers", "level_name", "logger_entries"]
