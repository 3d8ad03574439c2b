"""selfhood: an event-sourced consistency research testbed.

Does an AI instance stay the same instance when the machine under it is
swapped?  An instance is whatever its events fold into; failover is
rehydration; checkers judge whether the instance that comes back is the same.
"""

__version__ = "0.1.0"
