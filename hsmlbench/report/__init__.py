"""Statistics, tables, figures and the published values: read results, never train."""
