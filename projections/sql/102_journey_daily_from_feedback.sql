-- Feeds journey_daily from feedback: bounces and unsubscriptions, counted per command
-- (a command bounced twice is one bounce), on the day of the feedback, at the journey
-- step its command id names. Commands no journey made are left out.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database:Identifier}.journey_daily_from_feedback
TO {database:Identifier}.journey_daily
AS
SELECT
    toDate(ts) AS day,
    journey_id,
    journey_version,
    step,
    toString(status) AS measure,
    uniqExactState(sipHash64(command_id)) AS ids
FROM feedback
WHERE status IN ('bounced', 'unsubscribed') AND journey_id != ''
GROUP BY day, journey_id, journey_version, step, measure
