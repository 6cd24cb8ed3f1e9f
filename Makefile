# CourseHub: two commands from a fresh Debian machine (as root for the lab).
#   make demo   the lab: up, provision, bootstrap, hub, check (then `make demo-down`)
#   make test   every test: unit, and the lab's real hosts when run as root

VENV   ?= .venv
PY     := $(VENV)/bin/python
INV    := $(VENV)/bin/inv
APT_PACKAGES := mmdebstrap systemd-container openssh-client openssh-server xfsprogs zstd iproute2 ansible-core

.PHONY: setup system venv demo demo-down test unit lint bench clean

setup: system venv

system:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	fi

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(INV) lab.up
	COURSEHUB_VARS=vars.lab.yml $(INV) provision bootstrap hub check
	@$(PY) -c "from coursehub import inventory, settings as s; h = inventory.load(s.inventory_dir()).head(); \
	  print(f'\nJupyterHub: http://{h.address}/  (from this machine; log in as teacher or student1, '\
	        'password: dummy_password in inventory/secrets.yml). Remove it all: make demo-down')"

demo-down: venv
	COURSEHUB_VARS=vars.lab.yml $(INV) provision.destroy --yes || true
	$(INV) lab.down

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

bench: setup
	$(PY) bench/inv_list.py
	$(PY) bench/provision.py
	$(PY) bench/lab_boot.py
	$(PY) bench/ops_vs_ansible.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
