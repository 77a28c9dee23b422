# The two commands a new user runs: `make demo` and `make test`.
.PHONY: demo test test-all test-faults venv kafka-start kafka-stop typecheck

demo:
	scripts/demo.sh

test:
	scripts/test.sh

test-all:
	scripts/test.sh tests

# The whole fault and bad-input suite, slow cases included (docs/reliability.md).
test-faults:
	scripts/test.sh tests/faults -m "" -s

venv:
	@scripts/bootstrap.sh

typecheck:
	PYTHONPATH=$(CURDIR) $$(scripts/bootstrap.sh)/bin/python -m mypy

kafka-start:
	scripts/dw kafka start

kafka-stop:
	scripts/dw kafka stop
