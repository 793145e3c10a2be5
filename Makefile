# Two commands do all the set-up on a fresh machine (as root): `make lab` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
HOSTPY  ?= python3

.PHONY: help venv host-packages lint test unit functional integration lab-test lab lab-down bench clean

help:
	@echo "make lab     build and boot the virtual cluster, then print its status"
	@echo "make test    install what the tests need, lint, run the whole suite"
	@echo "make bench   one table of figures on a fresh lab: make lab, highstate, rebuild, DNS, VIP, DHCP"
	@echo "make lab-down  remove everything the lab made"

venv: $(VENV)/.installed

# Recreated only when requirements.txt changes. saltext-redis goes in with --no-deps:
# its redis-py-cluster dependency would downgrade the redis client to 3.x.
$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(HOSTPY) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	touch $@

host-packages:
	@tests/install-host-packages

lint: venv
	$(VENV)/bin/ruff check rpicluster _modules _states _grains _runners _returners _beacons _pillar lab tests bench bootstrap/validate-inventory bootstrap/generate-secrets bootstrap/quiet-salt-cli bootstrap/lock-salt-wheels bootstrap/restore-backup
	$(VENV)/bin/yamllint -s pillar/cluster/inventory.yaml lab/inventory.yaml lab/inventory-test.yaml master.d

test: venv host-packages lint
	$(PY) -m pytest

unit functional integration: venv host-packages
	$(PY) -m pytest tests/$@

lab-test: venv host-packages
	$(PY) -m pytest tests/lab

lab:
	$(HOSTPY) -m lab build
	$(HOSTPY) -m lab up
	$(HOSTPY) -m lab bootstrap
	$(HOSTPY) -m lab orch
	$(HOSTPY) -m lab status

bench: venv host-packages
	$(PY) -m bench $(BENCH_ARGS)

lab-down:
	$(HOSTPY) -m lab down

clean:
	rm -rf $(VENV) /tmp/rpic /tmp/rpic-pt
