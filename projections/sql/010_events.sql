-- Behavioural events. Row identity is event_id: a replayed or re-sent event
-- replaces its row at merge time; read with FINAL for exact counts.
CREATE TABLE IF NOT EXISTS {database:Identifier}.events
(
    event_id         String,
    user_id          String,
    name             LowCardinality(String),
    ts               DateTime64(3, 'UTC'),
    attributes       String COMMENT 'JSON object; query with JSONExtract*(attributes, ''key'')',
    source_partition UInt32,
    source_offset    UInt64,
    ingested_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (name, user_id, ts, event_id)
