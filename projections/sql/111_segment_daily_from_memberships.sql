-- Feeds segment_daily from segment_memberships (identity: change_id).
CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.segment_daily_from_memberships
TO {database:Identifier}.segment_daily
AS
SELECT
    toDate(at) AS day,
    segment_id,
    toString(change) AS change,
    uniqExactState(sipHash64(change_id)) AS ids
FROM segment_memberships
GROUP BY day, segment_id, change
