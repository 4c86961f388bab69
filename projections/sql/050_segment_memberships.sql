-- Every segment membership change (entered / exited). Row identity is change_id, a
-- digest of the change and its cause (the input, timer or definition change that made
-- it), never of the instant it was computed at: a replay at any time rewrites the same
-- rows. The sorting key is the identity alone (no instant, no partition by month), so
-- that FINAL merges a replayed row with the first whatever its `at`.
-- condition_values: the values the segment's leaf conditions read at `at` (a JSON
-- array in the definition's order; `reach explain` puts them in words);
-- input_source / input_offset: the topic letter and offset of the input record that
-- made the change ('' / 0 for timers and definition changes; its partition is
-- source_partition). Neither is part of the identity: a replay by another path reads
-- other offsets. Tables of earlier versions get them from migrations/030_causes.sql.
CREATE TABLE IF NOT EXISTS {database:Identifier}.segment_memberships
(
    change_id        String,
    segment_id       LowCardinality(String),
    user_id          String,
    change           Enum8('entered' = 1, 'exited' = -1),
    at               DateTime64(3, 'UTC'),
    version          UInt32,
    cause            String,
    source_partition UInt32,
    source_offset    UInt64,
    condition_values String COMMENT 'the values the segment''s leaf conditions read (JSON)',
    input_source     LowCardinality(String) COMMENT 'the topic letter of the input that made it',
    input_offset     UInt64 COMMENT 'the offset of the input that made it'
)
ENGINE = ReplacingMergeTree
ORDER BY (segment_id, user_id, change_id)
