-- A rollup's materialized view only sees rows inserted after it exists. Before one is
-- created, the rows its source table holds already go through the view's own SELECT
-- into its target table ({select}: the view's query, taken from its file by the code).
-- Safe to run again (after a crash before the view was created): the rollups count
-- distinct row identities, so rows added twice count once.
INSERT INTO {database:Identifier}.{target:Identifier} {select}
