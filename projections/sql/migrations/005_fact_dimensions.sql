-- Send commands and journey activity rows carry their dimensions (070, 080): a table
-- of an earlier version gets the columns; its rows take empty dimensions and their own
-- instant as event_at. Each statement does nothing once the column is there.
ALTER TABLE {database:Identifier}.send_commands ADD COLUMN IF NOT EXISTS country LowCardinality(String) COMMENT 'the user''s Country tag when it happened';
ALTER TABLE {database:Identifier}.send_commands ADD COLUMN IF NOT EXISTS language LowCardinality(String) COMMENT 'the user''s Language tag when it happened';
ALTER TABLE {database:Identifier}.send_commands ADD COLUMN IF NOT EXISTS timezone LowCardinality(String) COMMENT 'the user''s Time zone tag when it happened';
ALTER TABLE {database:Identifier}.send_commands ADD COLUMN IF NOT EXISTS variant LowCardinality(String) COMMENT 'the branch of the visit''s last A/B split';
ALTER TABLE {database:Identifier}.send_commands ADD COLUMN IF NOT EXISTS event_at DateTime64(3, 'UTC') DEFAULT at COMMENT 'the instant of the input that made it';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS country LowCardinality(String) COMMENT 'the user''s Country tag when it happened';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS language LowCardinality(String) COMMENT 'the user''s Language tag when it happened';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS timezone LowCardinality(String) COMMENT 'the user''s Time zone tag when it happened';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS variant LowCardinality(String) COMMENT 'the branch of the visit''s last A/B split';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS event_at DateTime64(3, 'UTC') DEFAULT at COMMENT 'the instant of the input that made it'
