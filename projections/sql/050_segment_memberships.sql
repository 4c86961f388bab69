-- Every segment membership change (entered / exited). Row identity is change_id;
-- a replay rewrites the same rows.
CREATE TABLE IF NOT EXISTS {database:Identifier}.segment_memberships
(
    change_id        String,
    segment_id       LowCardinality(String),
    user_id          String,
    change           Enum8('entered' = 1, 'exited' = -1),
    at               DateTime64(3, 'UTC'),
    version          UInt32,
    source_partition UInt32,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (segment_id, at, user_id, change_id)
