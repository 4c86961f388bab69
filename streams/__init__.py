"""Runtime of reachstream: settings, topics, codecs, the Faust app factory and the CLI."""
