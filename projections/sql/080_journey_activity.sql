-- What happened to users in journeys: one row per user, step and activity. Row
-- identity is activity_id, a digest of what happened (journey, version, run, user,
-- step, activity, detail, command, the visit's step count, and the input that made
-- the row directly: `cause`), never of `at`: a replay at any time rewrites the same
-- rows; read with FINAL for exact counts. The sorting key holds no instant and the
-- table no partition by month, so FINAL merges a replayed row with the first.
-- Conventions of the journey engine:
--   activity 'entered' with detail 'journey': an entry into the journey (a run),
--     at the start node; with detail '': an entry into the step `step`.
--   'skipped' (journey level, at the start node): an entry refused.
--   'exited' / 'dropped': the user left the journey (finished / did not finish).
--   command_id: the send command of a send's rows (sent ... failed); empty otherwise.
--   country, language, timezone: the user's tags when it happened; variant: the branch
--     of the visit's last A/B split; event_at: the instant of the input that made the
--     row (a feedback's own timestamp, say), `at` being when the engine applied it.
--     Tables of earlier versions get them from migrations/005_fact_dimensions.sql.
--   trigger: what made the row, for every row (the input, `timer:` the instant a wait
--     came due, `d:` a definition change, `stop:` a journey stopped); input_source /
--     input_offset: the topic letter and offset of the input record. Neither is part
--     of the identity. From migrations/030_causes.sql for tables of earlier versions.
-- activity is text, not an Enum: a kind added to the engine must never make an
-- insert fail (the writer retries a failed insert until it succeeds).
CREATE TABLE IF NOT EXISTS {database:Identifier}.journey_activity
(
    activity_id      String,
    journey_id       LowCardinality(String),
    journey_version  UInt32,
    run              String,
    user_id          String,
    step             LowCardinality(String),
    activity         LowCardinality(String),
    at               DateTime64(3, 'UTC'),
    detail           String,
    command_id       String,
    visit            UInt32,
    cause            String,
    source_partition UInt32,
    source_offset    UInt64,
    country          LowCardinality(String) COMMENT 'the user''s Country tag when it happened',
    language         LowCardinality(String) COMMENT 'the user''s Language tag when it happened',
    timezone         LowCardinality(String) COMMENT 'the user''s Time zone tag when it happened',
    variant          LowCardinality(String) COMMENT 'the branch of the visit''s last A/B split',
    event_at         DateTime64(3, 'UTC') DEFAULT at COMMENT 'the instant of the input that made it',
    trigger          String COMMENT 'what made the row',
    input_source     LowCardinality(String) COMMENT 'the topic letter of the input that made it',
    input_offset     UInt64 COMMENT 'the offset of the input that made it'
)
ENGINE = ReplacingMergeTree
ORDER BY (journey_id, step, activity, activity_id)
