-- A rollup's materialized view only sees rows inserted after it exists. Just after
-- one is created, the rows its source table holds already go through the view's own
-- SELECT into its target table ({select}: the view's query, taken from its file by the
-- code), and the target table's comment notes the view ("backfilled by: …"), so this
-- runs once per view. Safe to run again (a crash before the note, rows inserted
-- between the view's creation and the backfill): the rollups count distinct row
-- identities, so rows added twice count once.
INSERT INTO {database:Identifier}.{target:Identifier} {select}
