"""`taskline web`: a read-only page of the fleet (overview, queue, dead letters, trace, actions),
with its actions (replay, discard, delete, run now, pause, resume) behind a password. Imported
only by `taskline web`: the worker never loads this stack."""
