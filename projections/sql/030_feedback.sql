-- Message feedback (delivered, opened, clicked, bounced, failed, unsubscribed).
-- Row identity is feedback_id. journey_id, journey_version, run and step: the
-- journey step the command id names (empty / 0 for a command no journey made); the
-- projection writes them, and rows written before they existed compute them from
-- command_id (the defaults, which read it as schemas.commands.parse_command_id does).
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
    ingested_at      DateTime64(3, 'UTC'),
    journey_id       LowCardinality(String) DEFAULT if(length(splitByChar(':', command_id)) = 6 AND match(splitByChar(':', command_id)[2], '^[0-9]+$') AND match(splitByChar(':', command_id)[5], '^[0-9]+$'), splitByChar(':', command_id)[1], ''),
    journey_version  UInt32 DEFAULT if(length(splitByChar(':', command_id)) = 6 AND match(splitByChar(':', command_id)[2], '^[0-9]+$') AND match(splitByChar(':', command_id)[5], '^[0-9]+$'), toUInt32OrZero(splitByChar(':', command_id)[2]), 0),
    run              String DEFAULT if(length(splitByChar(':', command_id)) = 6 AND match(splitByChar(':', command_id)[2], '^[0-9]+$') AND match(splitByChar(':', command_id)[5], '^[0-9]+$'), splitByChar(':', command_id)[3], ''),
    step             LowCardinality(String) DEFAULT if(length(splitByChar(':', command_id)) = 6 AND match(splitByChar(':', command_id)[2], '^[0-9]+$') AND match(splitByChar(':', command_id)[5], '^[0-9]+$'), splitByChar(':', command_id)[4], '')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (status, command_id, feedback_id)
