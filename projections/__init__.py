"""ClickHouse projections: tables in ``sql/``, row builders, and a batching writer."""
