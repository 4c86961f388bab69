-- The device registry, as device updates project it (docs/devices.md): one row per
-- user and device, the latest update winning (ReplacingMergeTree on ts). A consent
-- update is a row of its own, device_id 'consent:<channel>'. Push tokens and web push
-- endpoints are secrets: only their hash is kept (keyed, as addresses are, with
-- REACH_PII_KEY; plain SHA-256 with REACH_PII_CLEAR_TEXT); phone numbers and email
-- addresses are personal data: hashed like address tags unless REACH_PII_CLEAR_TEXT.
-- An unregistered device's row is live = 0: its kind and address columns are those
-- of the unregister update (empty when it named the device by id only).
CREATE TABLE IF NOT EXISTS {database:Identifier}.devices
(
    user_id          String,
    device_id        String,
    kind             LowCardinality(String) COMMENT 'push, web_push, phone, email; consent for an opt-out or opt-in',
    platform         LowCardinality(String) COMMENT 'ios or android (push)',
    app_id           String COMMENT 'the app''s bundle id or package name (push)',
    environment      LowCardinality(String) COMMENT 'sandbox or production (push)',
    channels         Array(LowCardinality(String)) COMMENT 'the channels the device serves; the channel of a consent row',
    address          String COMMENT 'hash of the token or endpoint; the number or address, hashed per REACH_PII_*',
    live             UInt8 COMMENT '1: registered (consent: opted in), 0: unregistered (consent: opted out)',
    registered_at    Nullable(DateTime64(3, 'UTC')),
    unregistered_at  Nullable(DateTime64(3, 'UTC')),
    reason           String,
    update_id        String,
    ts               DateTime64(3, 'UTC'),
    source_partition UInt32,
    source_offset    UInt64,
    ingested_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (user_id, device_id)
