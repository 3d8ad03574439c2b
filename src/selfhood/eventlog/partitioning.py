"""The one partitioner (pure): instance id -> partition, exactly as Kafka does it.

Kafka's default partitioner sends a keyed record to
``toPositive(murmur2(key)) % numPartitions``. Every adapter (and the
simulator) uses this function, so an instance lands on the same partition
number in the embedded log, in Kafka, and in a simulated run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) as a signed int32."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length - (length & 3)
    for i in range(0, n4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=1 << 16)
def partition_for(instance_id: str, partitions: int) -> int:
    """The partition an instance's events go to (key = UTF-8 instance id).

    Cached: murmur2 in Python costs microseconds, and every append asks for
    the same few thousand instances again and again.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(instance_id.encode("utf-8")) & 0x7FFFFFFF) % partitions
