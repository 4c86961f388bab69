-- Per journey (every version), from journey_activity FINAL: rows are counted, and
-- a replayed or re-sent activity is one row (its activity_id), so nothing counts twice.
--   SELECT * FROM journey_stats WHERE journey_id = 'onboarding'
--   entries       journey-level 'entered' rows (detail 'journey'): one per entry into
--                 the journey, naming the start node; a step's own entries have detail ''
--   unique_users  users among those entries
--   inside_now    entries minus the journey's 'exited' and 'dropped' rows (each entry
--                 leaves once, by an exit step, a goal that ends it, or a drop)
--   goals, sent, opened, clicked: rows of that activity
--   ctr           clicked / delivered; clicked / sent for a journey whose channels
--                 report no deliveries; NULL before the first send
--   delivered     rows of activity 'delivered'
--   failed, bounced: rows of that activity (a bounce is not a failure; rows an
--                 earlier version wrote for bounces say 'failed')
-- (The table inside is unqualified: it resolves in the view's own database, as in
-- 060_segment_sizes.sql.)
CREATE OR REPLACE VIEW {database:Identifier}.journey_stats AS
SELECT
    journey_id,
    entries,
    unique_users,
    toInt64(entries) - toInt64(exits) AS inside_now,
    goals,
    sent,
    opened,
    clicked,
    clicked / nullIf(if(delivered > 0, delivered, sent), 0) AS ctr,
    delivered,
    failed,
    bounced
FROM
(
    SELECT
        journey_id,
        countIf(activity = 'entered' AND detail = 'journey') AS entries,
        uniqExactIf(user_id, activity = 'entered' AND detail = 'journey') AS unique_users,
        countIf(activity IN ('exited', 'dropped')) AS exits,
        countIf(activity = 'goal') AS goals,
        countIf(activity = 'sent') AS sent,
        countIf(activity = 'opened') AS opened,
        countIf(activity = 'clicked') AS clicked,
        countIf(activity = 'delivered') AS delivered,
        countIf(activity = 'failed') AS failed,
        countIf(activity = 'bounced') AS bounced
    FROM journey_activity FINAL
    GROUP BY journey_id
)
