-- The history of the user dimension: one row per tag an input changed (set, unset,
-- incremented, appended to, removed from, or a default tag an event filled). Identity:
-- (user_id, tag, version): `version` is the user's profile version after the input
-- (see 120), so a replay rewrites the same rows. The value of a tag at an instant T is
-- one argMax:
--   SELECT user_id, argMax(value, version) FROM user_profile_changes
--   WHERE tag = 'Country' AND at <= T GROUP BY user_id
--   value    the new value as text, rendered as in user_profiles (a hash for a PII tag);
--            empty when the tag went (removed)
--   number   the value as a number, where it is one (a price: its amount)
CREATE TABLE IF NOT EXISTS {database:Identifier}.user_profile_changes
(
    user_id          String,
    tag              LowCardinality(String),
    value            String,
    number           Nullable(Float64),
    removed          Bool,
    at               DateTime64(3, 'UTC'),
    version          UInt64,
    cause            String,
    source_partition UInt32,
    source_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (user_id, tag, version)
