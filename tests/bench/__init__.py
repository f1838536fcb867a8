"""relay's performance, each figure measured side by side with a baseline in the same run (``make bench``).

Everything runs on loopback: an embedded Redis (no AOF), the Graph simulator, a receiver answering 204
and a plain aiohttp hello world each in a process of their own (``tests/bench/servers.py``), ``relay
serve`` / ``relay worker`` subprocesses, and load generators in processes of their own
(``tests/bench/loadgen.py``). Baselines run against the same server processes as relay, before and
after it, so a busy machine slows both and the ratios stay fair. Costs are CPU microseconds per
operation of each process (``/proc/<pid>``), from the same window as the rate beside them.

Sections (``--only 1,3``): 1 polls, 2 deliveries, 3 registrations (each: rate vs the bare aiohttp
loop, and CPU per operation); 4 10,000 jobs' completion lag and Redis memory per job; 5 polls and lag
vs a fixed 1 s poller, and the same mix with progressInterval; 6 a monitor shared by 100 jobs; 7 two
workers and the one-Redis ceiling; 8 the idle cost of a worker and an API (the sidecar case); 9
fairness: one tenant's 50,000 jobs against another's one; 10 a crowded monitor: 10,000 jobs sharing one, from
the copy's end to the last completion, and the longest Redis script meanwhile; 11 a Redis Cluster of 1 shard vs 3
under the same latency-bound load (polls/s, lag, Redis CPU per poll per shard). ``--instructions`` counts
instructions per operation under callgrind instead; ``--profile`` samples relay's processes with py-spy.
"""
