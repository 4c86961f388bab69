-- Tables written by versions that sorted rows by the instant they were computed at
-- (and partitioned them by its month) keep a replayed row apart from the first one.
-- Their rows move to the table of today's layout, which sorts by identity alone: the
-- old table is renamed aside, the new one created from its file, the rows copied (the
-- columns added since take their defaults), the old table dropped. Each statement can
-- run again after a crash: the copy rewrites the same identities, which FINAL merges.
-- {columns}: the columns both tables have, quoted by the code (names, not values).
RENAME TABLE {database:Identifier}.{table:Identifier} TO {database:Identifier}.{aside:Identifier};
INSERT INTO {database:Identifier}.{table:Identifier} ({columns}) SELECT {columns} FROM {database:Identifier}.{aside:Identifier};
DROP TABLE {database:Identifier}.{aside:Identifier}
