"""Raw job records: the one schema, the one writer, the one validating reader.

A raw file holds what a job measured (per-task errors, per-task assignments, training curves,
events, timings) and which code measured it (``provenance``); everything computed from those
is report code's business (docs/PROTOCOL.md §6). Modules:

- ``schema``: field names, statuses, the schema version, compact arrays, validation.
- ``record``: ``job_record``, the only function that builds a raw record.
- ``provenance``: the only probe of git, the environment, the device and numerics flags.
- ``migrations``: older raw files read as today's shape (derived fields kept, marked legacy).
- ``store``: reading a raw file (validated) and finding a table's raw files.
"""
