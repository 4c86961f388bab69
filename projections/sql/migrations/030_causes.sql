-- Membership changes and journey activity rows say what made them (050, 080): a table
-- of an earlier version gets the columns; its rows take empty causes. Each statement
-- does nothing once the column is there.
ALTER TABLE {database:Identifier}.segment_memberships ADD COLUMN IF NOT EXISTS condition_values String COMMENT 'the values the segment''s leaf conditions read (JSON)';
ALTER TABLE {database:Identifier}.segment_memberships ADD COLUMN IF NOT EXISTS input_source LowCardinality(String) COMMENT 'the topic letter of the input that made it';
ALTER TABLE {database:Identifier}.segment_memberships ADD COLUMN IF NOT EXISTS input_offset UInt64 COMMENT 'the offset of the input that made it';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS trigger String COMMENT 'what made the row';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS input_source LowCardinality(String) COMMENT 'the topic letter of the input that made it';
ALTER TABLE {database:Identifier}.journey_activity ADD COLUMN IF NOT EXISTS input_offset UInt64 COMMENT 'the offset of the input that made it'
