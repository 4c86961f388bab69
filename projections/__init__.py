"""ClickHouse projections: tables in ``sql/``, row builders, and a batching writer;
their Faust consumers in ``projections/agents/``."""
