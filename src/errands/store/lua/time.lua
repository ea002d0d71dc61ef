-- time: the Redis server's clock, read on the node holding the namespace (a cluster's nodes may
-- disagree), for the processes that align their own clock on it (periodic schedules).
-- KEYS[1] any key of the namespace (pools), for routing only
-- Returns {seconds, microseconds}.
return redis.call('TIME')
