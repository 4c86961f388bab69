"""Customer journeys, the pure core."""
