-- Per day (UTC), journey, version and step: the daily rollup's figures. No FINAL over
-- the fact tables: fast at any size. Days without activity at a step have no row.
--   SELECT day, sum(sent), sum(delivered), sum(opened) FROM journey_daily_stats
--   WHERE journey_id = 'onboarding' AND day >= today() - 30 GROUP BY day ORDER BY day
--   entries       entries into the journey (at its start node)
--   entered       entries into the step (the start node's include the journey's entries)
--   sent, delivered, opened, clicked, not_opened, failed: journey activity rows
--   converted     goal rows (a goal event while inside the journey, or within its
--                 after_exit once out: at the step the goal is attributed to)
--   held_out, holdout_converted: the global holdout's would-be entries into the
--                 journey and their goal rows (at the start node), for lift
--   bounced, unsubscribed: commands with such feedback, on the feedback's day
--   open_rate, click_rate, unsubscribe_rate: over delivered (NULL when nothing was);
--   bounce_rate over sent. Rates of a day divide that day's figures: over several
--   days or steps, sum the counts and divide the sums.
CREATE OR REPLACE VIEW {database:Identifier}.journey_daily_stats AS
SELECT
    day,
    journey_id,
    journey_version,
    step,
    entries,
    entered,
    sent,
    delivered,
    opened,
    clicked,
    not_opened,
    failed,
    converted,
    unsubscribed,
    bounced,
    opened / nullIf(delivered, 0) AS open_rate,
    clicked / nullIf(delivered, 0) AS click_rate,
    unsubscribed / nullIf(delivered, 0) AS unsubscribe_rate,
    bounced / nullIf(sent, 0) AS bounce_rate,
    held_out,
    holdout_converted
FROM
(
    SELECT
        day,
        journey_id,
        journey_version,
        step,
        uniqExactMergeIf(ids, measure = 'entered_journey') AS entries,
        entries + uniqExactMergeIf(ids, measure = 'entered') AS entered,
        uniqExactMergeIf(ids, measure = 'sent') AS sent,
        uniqExactMergeIf(ids, measure = 'delivered') AS delivered,
        uniqExactMergeIf(ids, measure = 'opened') AS opened,
        uniqExactMergeIf(ids, measure = 'clicked') AS clicked,
        uniqExactMergeIf(ids, measure = 'not_opened') AS not_opened,
        uniqExactMergeIf(ids, measure = 'failed') AS failed,
        uniqExactMergeIf(ids, measure = 'goal') AS converted,
        uniqExactMergeIf(ids, measure = 'unsubscribed') AS unsubscribed,
        uniqExactMergeIf(ids, measure = 'bounced') AS bounced,
        uniqExactMergeIf(ids, measure = 'held_out') AS held_out,
        uniqExactMergeIf(ids, measure = 'holdout_goal') AS holdout_converted
    FROM journey_daily
    GROUP BY day, journey_id, journey_version, step
)
