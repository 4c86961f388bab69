-- A rollup's materialized view whose query changed (its file says what it is now; the
-- code knows what to look for in the stored one): dropped, then created again from
-- its file by the schema's own statement. Its rollup table keeps every row, and its
-- backfill is not repeated (the table's comment notes it). Rollups written by
-- journey_daily_from_activity before 'bounced' activity rows were left out of it had
-- no such rows to count.
DROP VIEW IF EXISTS {database:Identifier}.{view:Identifier}
