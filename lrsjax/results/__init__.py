"""Result files (schema, atomic writes, resume), metrics and summaries."""

from lrsjax.results._atomic import atomic_path, write_bytes, write_json, write_text
