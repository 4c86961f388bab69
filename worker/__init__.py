"""The process around the engine: the Faust app factory, the process runner, the
Kafka transport and the child-process supervisor: the one place the API, the agents
and the projections are put together."""
