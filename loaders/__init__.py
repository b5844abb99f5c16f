"""Parallel warehouse loaders: record batches to Arrow to Parquet through fsspec.

Public API, by module (imported from there, so ``headrace`` starts without pyarrow):

- ``loaders.config``: ``LoaderConfig`` (a load's settings, checked when built), ``ConfigError``
- ``loaders.run``: ``load(config)`` (a whole run: plan, workers, summary; the exit status)
- ``loaders.worker``: ``Worker`` (one member of the group; the commit protocol)
- ``loaders.pool``: ``WorkerPool``, ``run_worker``, ``Replacements`` (the worker processes)
- ``loaders.reconcile``: ``reconcile`` (a partition's offset settled with published chunks)
- ``loaders.progress``: ``progress_left``, ``mark_complete_hours`` (``_SUCCESS`` markers)
- ``loaders.report``: ``Stats``, ``print_summary``, ``progress_line``
- ``loaders.convert``: ``Converter``, ``ValueFormat``, ``Converted`` (messages to Arrow)
- ``loaders.schema``: ``load_declared_schema``, ``FixedSchemas``, ``MemorySchemas``,
  ``merge_schema`` (column types and the stable schema rule)
- ``loaders.avro``: ``ReaderSchema``, ``AvroValues``, ``arrow_type`` (schema-registry Avro
  to typed Arrow columns)
- ``loaders.avroschemas``: ``RegistrySchemas`` (the plan's reader schema ids, writer schemas)
- ``loaders.eventtime``: ``epoch_ms_of``, ``value_ms`` (event times)
- ``loaders.blocks``: ``decode_value_block``, ``ValueBlock`` (fetched JSON as one buffer)
- ``loaders.chunk``: ``Chunk``, ``Limits``, ``parquet_bytes`` (files cut by the data)
- ``loaders.layout``, ``loaders.storage``, ``loaders.registry``: file names, fsspec, ZooKeeper
"""
