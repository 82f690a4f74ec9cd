# hvlab: the two commands.
#   make demo   -- build hv.sys, run it on the emulated VMX CPU, show the suite's view
#   make test   -- every test (installs what it needs first)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: bootstrap driver demo test bench clean

bootstrap:
	@bash tools/bootstrap.sh

driver: bootstrap
	@$(MAKE) --no-print-directory -C driver

demo: driver
	@$(PY) -m emulated_lab demo

test: driver
	@$(PY) -m pytest

bench: driver
	@$(PY) -m benchmarks

clean:
	@$(MAKE) --no-print-directory -C driver clean
