"""Elle-class transactional checking (pure): dependency graphs, cycle search, models.

`selfhood.checkers.txn.check_txn` is the entry point; this package holds the
parts: `models` (which anomalies each consistency model prohibits), `graph`
(dependency graph, SCCs, constrained cycle search), `history` (transactions
and realtime/process order), `list_append` and `rw_register` (version-order
inference and workload-specific anomalies).
"""
