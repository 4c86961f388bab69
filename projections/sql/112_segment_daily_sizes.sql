-- The daily segment-size snapshot: one row per segment and day, from its first change
-- to its last, days without a change included: members at the end of the day (UTC),
-- and the day's entries and exits.
--   SELECT day, members FROM segment_daily_sizes WHERE segment_id = 'vip' ORDER BY day
CREATE OR REPLACE VIEW {database:Identifier}.segment_daily_sizes AS
SELECT
    segment_id,
    day,
    entered,
    exited,
    toInt64(members) AS members
FROM
(
    SELECT
        segment_id,
        day,
        entered,
        exited,
        sum(toInt64(entered) - toInt64(exited)) OVER (PARTITION BY segment_id ORDER BY day) AS members
    FROM
    (
        SELECT
            segment_id,
            day,
            uniqExactMergeIf(ids, change = 'entered') AS entered,
            uniqExactMergeIf(ids, change = 'exited') AS exited
        FROM segment_daily
        GROUP BY segment_id, day
    )
)
ORDER BY segment_id, day WITH FILL STEP 1 INTERPOLATE (members AS members)
