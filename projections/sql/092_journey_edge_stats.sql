-- Per journey, version and edge: how many users went from a step, through one of its
-- outputs, to the next step. A step's 'entered' row names the edge that led there in
-- its detail, as '<from step>.<output>' (node ids and output names hold no dots);
-- entering the journey itself (detail 'journey') is no edge.
--   SELECT * FROM journey_edge_stats WHERE journey_id = 'onboarding'
CREATE VIEW IF NOT EXISTS {database:Identifier}.journey_edge_stats AS
SELECT
    journey_id,
    journey_version,
    splitByChar('.', detail)[1] AS from_step,
    splitByChar('.', detail)[2] AS output,
    step AS to_step,
    count() AS users
FROM journey_activity FINAL
WHERE activity = 'entered' AND position(detail, '.') > 0
GROUP BY journey_id, journey_version, from_step, output, to_step
