"""Definition files (segments, journeys, presets) read from disk, as the CLI and the
API both need them."""
