-- The daily journey rollup: per day (UTC, of the row's instant), journey, version,
-- step and measure, the set of row identities (64-bit hashes) seen, merged by the
-- engine in the background. Fed by the materialized views 101 and 102 as rows are
-- inserted. Counting distinct identities (uniqExact) rather than rows keeps a
-- replayed or re-sent row, which the fact tables merge only at FINAL, from counting
-- twice. Read it through journey_daily_stats (103), never directly.
--   measure: an activity of journey_activity ('entered', 'sent', 'delivered', ...;
--   'entered_journey' for an entry into the journey itself), or 'bounced' /
--   'unsubscribed' from feedback (one per command).
CREATE TABLE IF NOT EXISTS {database:Identifier}.journey_daily
(
    day             Date,
    journey_id      LowCardinality(String),
    journey_version UInt32,
    step            LowCardinality(String),
    measure         LowCardinality(String),
    ids             AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (journey_id, day, journey_version, step, measure)
