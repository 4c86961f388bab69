-- Tag updates as they arrived (the log, not the current profile).
-- Row identity is update_id.
CREATE TABLE IF NOT EXISTS {database:Identifier}.tag_updates
(
    update_id        String,
    user_id          String,
    op               LowCardinality(String),
    tags             String COMMENT 'JSON object: tag name -> value (null for unset)',
    ts               DateTime64(3, 'UTC'),
    source_partition UInt32,
    source_offset    UInt64,
    ingested_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (user_id, ts, update_id)
