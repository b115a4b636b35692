"""What the test suite and the benchmark both need, in one place: scratch services
(`services`: a migrated PostgreSQL database and a Redis database number of one's own) and
worker processes (`workers`: waiting for a started worker's heartbeat).

No pytest in here: `bench/` imports these modules too. `worker/` and `producers/` never do.
"""
