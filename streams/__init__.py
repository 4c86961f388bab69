"""Runtime plumbing of reachstream, free of Faust: settings, topics, the state layer,
the checkpoint, the clock, the broker and its child processes, the definitions follower.
(``streams/events.py`` alone imports Faust, for the agents.)"""
