# hvlab: the two commands.
#   make demo   -- build hv.sys, run it on the emulated VMX CPU, show the suite's view
#   make test   -- every test (installs what it needs first)
#   make mutants -- mutation testing of the pure layers, on demand (docs/testing.md)
VENV   := .venv
PY     := $(VENV)/bin/python
# The build is quiet unless it fails (then its output is shown); V=1 shows every command.
V      ?= 0
QUIET  := @V=$(V) bash tools/quiet.sh

.PHONY: bootstrap driver demo test bench mutants clean

bootstrap:
	$(QUIET) "installing what the lab needs (tools/bootstrap.sh)" bash tools/bootstrap.sh

driver: bootstrap
	$(QUIET) "building hv.sys (make -C driver)" $(MAKE) --no-print-directory -C driver

demo: driver
	@$(PY) -m emulated_lab demo

test: driver
	@$(PY) -m pytest

bench: driver
	@$(PY) -m benchmarks

# scope and settings: [mutmut] in setup.cfg; MODULES narrows the run (default: all of arch/ and hv/),
# e.g. make mutants MODULES="windbg_ext/arch/exits.py"; a fresh mutants/ tree each run (tools/mutants.py)
MODULES  ?=
CHILDREN ?= 1
mutants: driver
	@$(PY) tools/mutants.py --max-children $(CHILDREN) $(MODULES)

clean:
	@$(MAKE) --no-print-directory -C driver clean
