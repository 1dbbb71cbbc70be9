"""The read side of ripple: Flink's aggregates as JSON, for the caller's tenant only."""
