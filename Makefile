# The two commands (see README): `make run` and `make test`.
.PHONY: run test lint bench up down clean

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check src tests bench build_backend setup.py && .venv/bin/mypy

# the real cluster (Kafka 3 brokers + PostgreSQL) in ./.selfhood; see docs/cluster.md
up:
	bash scripts/install-system.sh && bash scripts/setup-python.sh
	.venv/bin/selfhood cluster up --brokers 3

down:
	-.venv/bin/selfhood cluster down

clean: down
