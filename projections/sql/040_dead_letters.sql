-- Records that failed decoding or validation. Row identity is the source position
-- (topic, partition, offset, index within a batch record; -1 for a whole record).
CREATE TABLE IF NOT EXISTS {database:Identifier}.dead_letters
(
    source_topic     LowCardinality(String),
    source_partition UInt32,
    source_offset    UInt64,
    source_index     Int32,
    reason           LowCardinality(String),
    detail           String,
    raw              String,
    at               DateTime64(3, 'UTC'),
    dlq_partition    UInt32,
    dlq_offset       UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset, source_index)
