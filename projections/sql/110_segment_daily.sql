-- The daily segment rollup: per day (UTC), segment and change ('entered' / 'exited'),
-- the set of change identities (hashes of change_id) seen. Fed by 111; read through
-- segment_daily_sizes (112).
CREATE TABLE IF NOT EXISTS {database:Identifier}.segment_daily
(
    day        Date,
    segment_id LowCardinality(String),
    change     LowCardinality(String),
    ids        AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (segment_id, day, change)
