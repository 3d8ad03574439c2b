# The two commands (see README): `make run` and `make test`.
.PHONY: run test lint bench clean

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check src tests bench && .venv/bin/mypy

clean:
	-.venv/bin/selfhood cluster down
