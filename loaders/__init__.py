"""Parallel warehouse loaders: record batches to Arrow to Parquet through fsspec."""
