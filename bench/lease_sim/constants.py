"""The lease simulation's fixed parameters (bench/leases.py describes what each models)."""

from __future__ import annotations

FAILOVER = 10.0  # KCL's default failoverTimeMillis
CHECKPOINT_S = 10.0  # each consumer checkpoints this often
SHARD_SYNC_S = 30.0
WINDOW = 180.0  # observation after each event
STEADY = 120.0
RECORD_BYTES = 1024
DRAIN_S = 15.0  # SIGTERM: the consumers' last flush and checkpoint (renewals go on meanwhile)
HANDOFF_S = 1.0  # a handoff: the consumer stops, flushes and checkpoints, then releases
# DynamoDB request latency: each request is an asyncio.sleep of it on the SimLoop (half there,
# half back), so the requests of different workers, and a worker's concurrent ones, overlap.
LATENCY_S = (0.002, 0.008)  # uniform (mean 5 ms), per request (a Scan or Query: per 1 MB page)
INDEX_LAG_S = 1.0  # the leaseOwner GSI shows each write after up to this (uniform)
SCAN_LAG_S = 1.0  # an eventually consistent Scan returns each lease as of up to this ago
ALGORITHMS = ("scan", "leader")
LEASE_CONCURRENCY = 32  # the Worker's default (LEASE_CONCURRENCY): creates, leader's writes
