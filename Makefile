# The two commands a new user runs: `make demo` and `make test`.
.PHONY: demo test test-all venv kafka-start kafka-stop typecheck

demo:
	scripts/demo.sh

test:
	scripts/test.sh

test-all:
	scripts/test.sh tests

venv:
	@scripts/bootstrap.sh

typecheck:
	PYTHONPATH=$(CURDIR) $$(scripts/bootstrap.sh)/bin/python -m mypy

kafka-start:
	scripts/dw kafka start

kafka-stop:
	scripts/dw kafka stop
