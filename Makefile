# Two entry points for a fresh machine (see README.md): `make demo` and `make test e2e`.
# Both create .venv with Python 3.12 (pyenv's 3.12.1 where pyenv is used) and install
# what they need; `make test` also installs Debian's chromium for the dashboard's browser test.

PYTHON ?= python3.12
export PYENV_VERSION ?= 3.12.1
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench system-deps clean k8s-binaries cluster cluster-down e2e image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[examples]'
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[operator,examples,test,bench]'
	touch $@

demo: $(VENV)/.demo-deps
	$(BIN)/python examples/out_of_core.py

system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium missing and not root: the dashboard browser test will be skipped"; fi; }

# Every tier but the kind one, which `make e2e` runs against the cluster it builds.
test: $(VENV)/.test-deps system-deps k8s-binaries
	$(BIN)/python -m pytest -q -p no:cacheprovider --ignore=tests/e2e_kind

# The kind end-to-end tier: Docker, kind, the node image and the project's image are built
# and started here (hack/e2e.sh says how); everything built is cached under ~/.cache/memkube.
e2e: $(VENV)/.test-deps
	hack/e2e.sh

# The project's image (memkube:dev) built offline on the local python:3.12-slim stand-in.
image:
	hack/dockerd-up.sh
	hack/images/memkube.sh memkube:dev

lint: $(VENV)/.test-deps
	$(BIN)/ruff check worker_image operator tests bench examples
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(VENV)/.test-deps
	$(BIN)/python bench/runtime_bench.py

# The pinned Kubernetes and etcd binaries (hack/versions.env), built from the Go module proxy
# into ~/.cache/memkube (free when cached; a cold build takes a while, see docs/cluster.md).
# Exit 3 = no Go or module proxy: the Kubernetes tiers then skip, except under CI=true.
k8s-binaries:
	@bash hack/k8s-binaries.sh; rc=$$?; \
	if [ $$rc -eq 3 ] && [ "$$CI" != true ]; then \
	  echo "note: no Go toolchain or module proxy: the Kubernetes tiers will be skipped"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

# A local control plane on 127.0.0.1 (etcd, apiserver, controller manager, scheduler);
# admin kubeconfig in .cluster/kubeconfig. cluster-down stops every process it started.
cluster: $(VENV)/.test-deps k8s-binaries
	PYTHONPATH=tests/support $(BIN)/python -m localkube up --dir .cluster

cluster-down: | $(BIN)/python
	PYTHONPATH=tests/support $(BIN)/python -m localkube down --dir .cluster

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
