"""`taskline web`: a read-only page of the fleet (overview, dead letters, trace), with replay and
discard behind a password. Imported only by `taskline web`: the worker never loads this stack."""
