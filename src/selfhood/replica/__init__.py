"""Replica OS processes: `selfhood replica serve` (IO, async).

One process runs one replica: the sans-IO core from `selfhood.consistency`,
a `KafkaEventLog`, an aiohttp HTTP/JSON API (``replica-api.yaml`` in this
package) that clients and other replicas call, partition ownership from
Kafka's consumer-group assignment, and (eventual mode) a durable outbox on
local disk. See docs/replica.md.

Modules: `config` (options from CLI, environment and config file),
`wire` (JSON <-> core messages, pure), `placement` (the group assignor's
decision, pure), `membership` (the consumer group), `outbox` (the file),
`node` (the driver that carries out the core's outputs), `http` (the API),
`cli` (the command).
"""
