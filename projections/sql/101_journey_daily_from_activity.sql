-- Feeds journey_daily from journey_activity (identity: activity_id). Existing rows
-- are added once, just after the view is created (migrations/003_rollup_backfill.sql).
-- The query after the line "AS" is what the backfill runs too. Bounces are counted from
-- feedback (102), once per command: 'bounced' activity rows are left out here.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.journey_daily_from_activity
TO {database:Identifier}.journey_daily
AS
SELECT
    toDate(at) AS day,
    journey_id,
    journey_version,
    step,
    if(activity = 'entered' AND detail = 'journey', 'entered_journey', activity) AS measure,
    uniqExactState(sipHash64(activity_id)) AS ids
FROM journey_activity
WHERE activity != 'bounced'
GROUP BY day, journey_id, journey_version, step, measure
