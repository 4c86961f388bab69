-- Segment sizes over time, per hour: members at the end of each hour with a change.
-- SELECT * FROM segment_sizes WHERE segment_id = 'vip' ORDER BY hour
-- (The table inside is unqualified: a query parameter there would make this a
-- parameterised view. It resolves in the view's own database.)
CREATE VIEW IF NOT EXISTS {database:Identifier}.segment_sizes AS
SELECT
    segment_id,
    hour,
    entered,
    exited,
    sum(entered - exited) OVER (PARTITION BY segment_id ORDER BY hour) AS members
FROM
(
    SELECT
        segment_id,
        toStartOfHour(at) AS hour,
        countIf(change = 'entered') AS entered,
        countIf(change = 'exited') AS exited
    FROM segment_memberships FINAL
    GROUP BY segment_id, hour
)
