-- Per journey, version and step: how many users entered the step (activity
-- 'entered'; entering the journey is one such row at the start node, with detail
-- 'journey'), and the rows of every other activity, from
-- journey_activity FINAL (a replayed activity is one row: its activity_id).
-- failed counts the messages a channel could not deliver, bounced those a provider
-- refused for the address (rows an earlier version wrote for bounces say 'failed').
-- first_at, the step's first activity, orders the steps as users reach them:
--   SELECT * FROM journey_step_stats WHERE journey_id = 'onboarding' ORDER BY first_at
-- (Kept apart from 090: one statement per file, as a server runs them.)
CREATE OR REPLACE VIEW {database:Identifier}.journey_step_stats AS
SELECT
    journey_id,
    journey_version,
    step,
    min(at) AS first_at,
    countIf(activity = 'entered') AS entered,
    countIf(activity = 'sent') AS sent,
    countIf(activity = 'capped') AS capped,
    countIf(activity = 'suppressed') AS suppressed,
    countIf(activity = 'unreachable') AS unreachable,
    countIf(activity = 'delivered') AS delivered,
    countIf(activity = 'opened') AS opened,
    countIf(activity = 'clicked') AS clicked,
    countIf(activity = 'not_opened') AS not_opened,
    countIf(activity = 'failed') AS failed,
    countIf(activity = 'goal') AS goal,
    countIf(activity = 'exited') AS exited,
    countIf(activity = 'dropped') AS dropped,
    countIf(activity = 'bounced') AS bounced
FROM journey_activity FINAL
GROUP BY journey_id, journey_version, step
