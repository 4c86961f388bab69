-- The user dimension: one row per user, the profile the engine keeps (its tags, as the
-- segments see them), written again whenever an input changes the user's tags or the
-- channels they opted out of. ReplacingMergeTree on `version` (the sum of the offsets
-- of the inputs applied to the user: it grows with each input, and a replay writes the
-- same rows again): add FINAL, or take argMax(column, version) per user_id.
--   Typed columns for the default tags; `tags` holds every other tag, its value as
--   text: dates ISO 8601 (UTC, 'Z'), prices '50.99 EUR', versions 'w.x.y.z', lists and
--   objects as JSON, booleans 'true' / 'false'. `pii` holds the address tags (Email,
--   Phone, Push Token, Web Push Token) and the tags of REACH_PII_TAGS, as keyed hashes
--   unless REACH_PII_CLEAR_TEXT is set; they are never in `tags`.
--   opted_out_<channel>: the Unsubscribed tag names the channel, or the user
--   unsubscribed from it through a message; reachable_<channel>: not opted out and an
--   address for it (the rule the journeys' reachability steps apply).
CREATE TABLE IF NOT EXISTS {database:Identifier}.user_profiles
(
    user_id               String,
    version               UInt64,
    updated_at            DateTime64(3, 'UTC'),
    cause                 String,
    country               LowCardinality(String),
    language              LowCardinality(String),
    timezone              LowCardinality(String),
    first_install         Nullable(DateTime64(3, 'UTC')),
    last_application_open Nullable(DateTime64(3, 'UTC')),
    application_version   LowCardinality(String),
    opted_out_push        Bool,
    opted_out_web_push    Bool,
    opted_out_email       Bool,
    opted_out_sms         Bool,
    opted_out_whatsapp    Bool,
    opted_out_in_app      Bool,
    reachable_push        Bool,
    reachable_web_push    Bool,
    reachable_email       Bool,
    reachable_sms         Bool,
    reachable_whatsapp    Bool,
    reachable_in_app      Bool,
    tags                  Map(String, String),
    pii                   Map(String, String),
    source_partition      UInt32,
    source_offset         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY user_id
