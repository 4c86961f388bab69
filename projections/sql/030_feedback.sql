-- Message feedback (delivered, opened, clicked, bounced, failed, unsubscribed).
-- Row identity is feedback_id.
CREATE TABLE IF NOT EXISTS {database:Identifier}.feedback
(
    feedback_id      String,
    command_id       String,
    user_id          String,
    status           LowCardinality(String),
    channel          LowCardinality(String),
    reason           String,
    ts               DateTime64(3, 'UTC'),
    source_partition UInt32,
    source_offset    UInt64,
    ingested_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (status, command_id, feedback_id)
