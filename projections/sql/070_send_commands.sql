-- Send commands the journeys gave the delivery workers. Row identity is command_id:
-- the sorting key is the user (which the command id determines: its digest covers
-- the user) then command_id, so a command re-sent by a replay, whatever its other
-- columns, collapses into one row, and with FINAL every command appears once. Sorted
-- by user first, a user's commands are read without the rest; a min/max index on
-- `at` skips the granules outside a time filter.
-- country, language, timezone: the user's tags the command carried; variant: the A/B
-- branch; event_at: the instant of the input that led to the send (`at`: when it was
-- applied, the engine's clock). Tables of earlier versions get them from
-- migrations/005_fact_dimensions.sql.
-- No PARTITION BY: rows only collapse within a partition, and a re-send's `at`
-- could fall in another month.
CREATE TABLE IF NOT EXISTS {database:Identifier}.send_commands
(
    command_id       String,
    user_id          String,
    channel          LowCardinality(String),
    preset           String COMMENT 'empty when the step has none (webhooks)',
    url              String COMMENT 'where a webhook step posts; empty otherwise',
    journey_id       LowCardinality(String),
    journey_version  UInt32,
    run              String,
    step             LowCardinality(String),
    visit            UInt32,
    properties       String COMMENT 'JSON object: the entry properties',
    at               DateTime64(3, 'UTC'),
    source_partition UInt32,
    source_offset    UInt64,
    country          LowCardinality(String) COMMENT 'the user''s Country tag when it happened',
    language         LowCardinality(String) COMMENT 'the user''s Language tag when it happened',
    timezone         LowCardinality(String) COMMENT 'the user''s Time zone tag when it happened',
    variant          LowCardinality(String) COMMENT 'the branch of the visit''s last A/B split',
    event_at         DateTime64(3, 'UTC') DEFAULT at COMMENT 'the instant of the input that made it',
    INDEX at_range at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
ORDER BY (user_id, command_id)
