# ripple: `make up` runs the whole pipeline locally, `make test` runs the tests; `make help` lists
# every target (each target's `## ` text).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m ripple_stack
# Debian packages of the servers that are not fetched from Maven Central or PyPI.
APT_PACKAGES := postgresql nginx libnginx-mod-http-js prometheus prometheus-pushgateway \
	prometheus-nginx-exporter wrk mtail rabbitmq-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up down clean distclean status test test-unit lint prereqs venv helm chart
.DEFAULT_GOAL := help

help: ## this list
	@awk -F':.*## ' '/^[a-zA-Z%][a-zA-Z0-9%_-]*:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

## The project's Python environment; rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "ripple: python3 (3.11+) is missing: install it and rerun."; exit 2; }
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ripple: Python 3.11+ is needed, found $$(python3 --version)."; exit 2; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## the project's Python environment (.venv), rebuilt when pyproject.toml changes

## Debian packages, installed only when one of their programs is missing.
prereqs: ## the Debian packages of the servers, installed only when a program is missing
	@missing=""; \
	for bin in /usr/lib/postgresql/*/bin/postgres nginx prometheus prometheus-pushgateway prometheus-nginx-exporter wrk mtail /usr/lib/rabbitmq/bin/rabbitmq-server; do \
		[ -x "$$bin" ] || command -v "$$bin" >/dev/null 2>&1 || missing="$$missing $$bin"; \
	done; \
	[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || missing="$$missing njs"; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null || { echo "ripple: needs a Debian-like system with apt-get (missing:$$missing)."; exit 2; }; \
		echo "installing Debian packages (missing:$$missing)…"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

up: prereqs venv ## install what is missing, start every server, wait until ready, print the status table
	$(STACK) up

down: venv ## stop everything, keep the data
	$(STACK) down

## Stop and wipe data, logs and secrets; downloads are kept (distclean removes them too).
clean: venv ## stop everything and wipe data, logs and generated secrets (downloads are kept)
	$(STACK) clean

distclean: clean ## clean, and remove the downloads and the Python environment
	rm -rf .ripple $(VENV)

status: venv ## the status table (python -m ripple_stack status --json for scripts)
	@$(STACK) status

## The live dashboard page (infra/local/ripple_dashboard/README.md).
.PHONY: dashboard-url
dashboard-url: venv ## the live dashboard's address (open it in a browser)
	@$(PY) -c 'from ripple_stack.settings import load_settings; print(load_settings().dashboard_url + "/")'

## make stop-flink, make start-postgres, ...: one component, for failure drills.
stop-%: venv ## stop one component, e.g. make stop-flink (failure drills)
	$(STACK) stop $*

start-%: venv ## start one component again and wait until it is ready
	$(STACK) start $*

lint: venv ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-unit: venv ## only the tests that need no server
	$(PY) -m pytest -m "not integration"

## Helm, built from source with the Go toolchain (the only way this machine may get it).
HELM_VERSION := v3.22.0
HELM := .ripple/dist/bin/helm
$(HELM):
	@command -v go >/dev/null || { echo "ripple: Go is missing: install Go 1.24+ to build helm (make helm)."; exit 2; }
	@echo "building helm $(HELM_VERSION) with go install (once, ~2 min)…"
	GOBIN=$(abspath .ripple/dist/bin) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

helm: $(HELM) ## helm, built from source with go install (once)

chart: venv helm ## the Helm chart, assembled from knative/ and infra/, linted and packaged
	$(PY) infra/helm/build_chart.py --helm $(HELM) $(CHART_ARGS)

## Debian's chromium and its driver, for the dashboard's browser test (only when missing).
.PHONY: browser
browser: ## Debian's chromium and its driver for the dashboard's browser test (only when missing)
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { \
		command -v apt-get >/dev/null || { echo "ripple: the browser test needs chromium and chromium-driver: install them and rerun."; exit 2; }; \
		echo "installing Debian packages chromium chromium-driver (the dashboard's browser test)…"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }

test: up lint helm browser ## the test suite against the real servers (starts the stack first if needed)
	$(PY) -m pytest

## The edge (nginx/): benchmark per limit profile (PROFILES="strict" to pick), cluster ConfigMaps.
.PHONY: bench-edge edge-manifests
bench-edge: venv ## wrk: one client far above the edge's limits and one inside, per profile
	$(PY) -m loadtest.edge.bench $(PROFILES)

edge-manifests: venv ## regenerate infra/edge/generated-config.yaml from nginx/ (RIPPLE_NGINX_PROFILE)
	$(PY) -c 'from ripple_stack.components.nginx import write_cluster_config; write_cluster_config()'

## Throughput of the local KafkaSource dispatcher into the event-store, ordered and unordered.
EVENTS ?= 20000
.PHONY: bench-dispatcher
bench-dispatcher: venv ## the KafkaSource dispatcher's events/s and CPU/event, alone and into event-store (EVENTS=20000)
	$(PY) -m loadtest.dispatcher.bench --events $(EVENTS)

## The consumer functions alone (no dispatcher): wrk straight at event-store and order-alerts.
BENCH_CONSUMERS_ARGS ?=
.PHONY: bench-consumers
bench-consumers: venv ## wrk straight at event-store / order-alerts: req/s, p99, CPU ms/event
	$(PY) -m loadtest.consumers.bench $(BENCH_CONSUMERS_ARGS)

## Locust and the failure scenarios (loadtest/README.md); they need the `load` extra.
LOAD_SECONDS ?= 60
LOAD_USERS ?= 20
LOAD_SPAWN_RATE ?= 5
LOAD_SHAPE ?=
SCENARIO_ARGS ?=
.PHONY: venv-load load
$(VENV)/.installed-load: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,load]'
	@touch $@

venv-load: $(VENV)/.installed-load ## the `load` extra (Locust, matplotlib) in .venv

load: venv-load ## Locust shop traffic through nginx, headless (LOAD_SECONDS=60 LOAD_USERS=20 LOAD_SHAPE=spike)
	@dir=loadtest/reports/locust-$$(date -u +%Y%m%dT%H%M%SZ); run=locust-$$(date -u +%Y%m%dt%H%M%S)-$$RANDOM; \
	mkdir -p $$dir; \
	RIPPLE_LOADTEST_SHAPE=$(LOAD_SHAPE) RIPPLE_LOADTEST_RUN_ID=$$run $(PY) -m locust \
		-f loadtest/locust/locustfile.py --headless -u $(LOAD_USERS) -r $(LOAD_SPAWN_RATE) -t $(LOAD_SECONDS)s \
		--csv $$dir/locust --csv-full-history --only-summary --loglevel WARNING; rc=$$?; \
	$(PY) -m loadtest.locust.report $$dir $$run $$rc; \
	{ printf '\n## Consumer lag after the run\n\n```\n'; $(PY) -m loadtest.isolation lag --within 60; \
	  printf '```\n'; } | tee -a $$dir/report.md; exit $$rc

scenario-%: venv-load ## a failure drill under load and its report: flink-down postgres-down postgres-slow kafka-down overload baseline bursts
	$(PY) -m loadtest.scenarios $* $(SCENARIO_ARGS)

## The autoscale-from-zero demo (loadtest/autoscale): report under loadtest/reports/autoscale-<time>/.
DEMO_ARGS ?=
.PHONY: demo-autoscale
demo-autoscale: venv-load ## zero -> N -> zero: step and spike through nginx, back to zero; report and plot (DEMO_ARGS=)
	$(PY) -m loadtest.autoscale $(DEMO_ARGS)

## Issue 13's latency run: 1,008 events/s (18 req/s x 56 events through nginx) for 5 minutes,
## event -> event-store row delay and lag over the run (the demo's report and plot).
## Issue 22's variant: 2,016 events/s (18 req/s x 112: one client stays under nginx's 20 r/s per client) for 10 minutes.
.PHONY: bench-latency bench-latency-2000
bench-latency: venv-load ## 1,008 events/s through nginx for 5 min: event -> row delay and lag (the demo's report)
	$(PY) -m loadtest.autoscale --step-rate 18 --batch 56 --step 300 --spike 1 --spike-rate 18 --drain-timeout 300

bench-latency-2000: venv-load ## the same at 2,016 events/s (18 req/s x 112) for 10 min (issue 22's goal: p99 < 1 s)
	$(PY) -m loadtest.autoscale --step-rate 18 --batch 112 --step 600 --spike 1 --spike-rate 18 --drain-timeout 300

## ripple side by side with its peers, built from source (loadtest/peers/README.md: PEERS_* settings).
.PHONY: bench-peers
bench-peers: venv ## ripple beside Knative's Kafka data plane and the Strimzi bridge, built from source (PEERS_SOURCES=)
	$(PY) -m loadtest.peers

## wrk against a private gateway (direct and through a private nginx; never the stack's topics), single events and batches of 100.
BENCH_SECONDS ?= 15
BENCH_CONNECTIONS ?= 32
.PHONY: bench-gateway
BENCH_ARGS ?=
bench-gateway: venv ## wrk: a private gateway direct and through a private nginx, single events and batches of 100 (BENCH_SECONDS=15 BENCH_ARGS=)
	$(PY) -m loadtest.gateway.run --duration $(BENCH_SECONDS) --connections $(BENCH_CONNECTIONS) $(BENCH_ARGS)

## The Flink aggregation job (flink/README.md): status, submission, savepoint-based upgrade, benchmark.
FLINK_EVENTS ?= 50000
.PHONY: flink-status flink-submit flink-savepoint flink-upgrade bench-flink
flink-status: venv ## the aggregation job: state, last checkpoint, Kafka lag
	@$(STACK) flink status

flink-submit: venv ## submit the aggregation job if it is not running
	$(STACK) flink submit

flink-savepoint: venv ## stop the aggregation job with a savepoint
	$(STACK) flink savepoint

flink-upgrade: venv ## savepoint, then resubmit the job from it
	$(STACK) flink upgrade

bench-flink: venv ## events/s the Flink job sustains into PostgreSQL, event -> row delay p50/p99 (FLINK_EVENTS=50000)
	$(PY) -m loadtest.flink.bench_flink --events $(FLINK_EVENTS)

## Container images, the local registry and the delivery steps (README "Container images and delivery").
## podman (Debian's, with runc) keeps its configuration and storage under $(RIPPLE_HOME)/containers.
## RIPPLE_BASE_IMAGE=local-debian builds on stand-in bases made from Debian packages, because the
## real bases (UBI python-311, flink:2.0.2) cannot be pulled here; set it empty on a machine that
## can pull them (CI does). IMAGE_REGISTRY/IMAGE_NAMESPACE name where `make push` sends them.
RIPPLE_BASE_IMAGE ?= local-debian
export RIPPLE_BASE_IMAGE
IMAGES := $(PY) -m ripple_delivery
CRANE_VERSION := v0.22.1
CRANE := .ripple/dist/bin/crane
.PHONY: podman images images-functions save-images test-images registry push chart-registry kn-commands kn \
	deploy smoke-deployed promote

## podman, runc (crun fails on this cgroup layout) and mmdebstrap (the stand-in bases), only when missing.
podman: ## podman, runc and mmdebstrap from Debian, only when missing
	@if [ "$$RIPPLE_CONTAINER_ENGINE" = buildah ]; then command -v buildah >/dev/null || { echo "ripple: RIPPLE_CONTAINER_ENGINE=buildah but buildah is missing."; exit 2; }; exit 0; fi; \
	missing=""; for bin in podman runc mmdebstrap; do command -v $$bin >/dev/null || missing="$$missing $$bin"; done; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null || { echo "ripple: images need podman, runc and mmdebstrap (missing:$$missing): install them and rerun."; exit 2; }; \
		echo "installing Debian packages (missing:$$missing)…"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends podman runc mmdebstrap >/dev/null; \
	fi

$(CRANE):
	@command -v go >/dev/null || { echo "ripple: Go is missing: install Go 1.24+ to build crane (make registry)."; exit 2; }
	@echo "building crane $(CRANE_VERSION) with go install (once)…"
	GOBIN=$(abspath .ripple/dist/bin) go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

## Every functions/*/Containerfile and flink/Containerfile, tagged with the git commit.
images: venv podman ## container images of the functions and the Flink job, tagged with the git commit
	$(IMAGES) build

images-functions: venv podman ## the functions' images only
	$(IMAGES) build --only-functions

## The last build as OCI archives under .ripple/containers/archives (CI hands them to the push job).
save-images: venv podman ## the last build as OCI archives under .ripple/containers/archives
	$(IMAGES) save

## The images run as their Knative manifests run them, against the local stack.
test-images: up podman ## run the images as their Knative manifests run them, against the local stack
	$(PY) -m pytest infra/tests/test_images.py -m integration -v

## A local OCI registry (crane registry serve) on RIPPLE_REGISTRY_PORT (default 15000).
registry: venv $(CRANE) ## a local OCI registry (crane registry serve) on RIPPLE_REGISTRY_PORT (15000)
	$(IMAGES) registry --crane $(CRANE)

push: venv podman ## push the last build to IMAGE_REGISTRY (the local registry by default)
	$(IMAGES) push

## The Helm chart with image references by digest from the registry `make push` filled.
chart-registry: venv helm ## the Helm chart with image references by digest from the registry
	$(MAKE) chart CHART_ARGS=--images-from-registry

## kn service create/update for every function, with the references the last build/push produced.
kn-commands: venv ## kn service create/update lines for the images just built or pushed
	@$(IMAGES) kn

## kn (Knative CLI), built from its module source: it does not `go install` (its go.mod replaces
## knative.dev/client/pkg with a folder the module zip lacks), so the replace is swapped for the
## pkg version that client release was cut with. GOSUMDB=off: that edited go.mod has no sum entry.
KN_VERSION := v0.44.0
KN_PKG_VERSION := v0.0.0-20250120185908-9baddba98cbd
KN := .ripple/dist/bin/kn
$(KN):
	@command -v go >/dev/null || { echo "ripple: Go is missing: install Go 1.24+ to build kn (make kn)."; exit 2; }
	@echo "building kn $(KN_VERSION) from its module source (once, 5-10 min)…"
	src=$$(go mod download -json knative.dev/client@$(KN_VERSION) | $(PY) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') && \
	rm -rf .ripple/dist/kn-src && cp -r "$$src" .ripple/dist/kn-src && chmod -R u+w .ripple/dist/kn-src && \
	cd .ripple/dist/kn-src && go mod edit -dropreplace knative.dev/client/pkg -require knative.dev/client/pkg@$(KN_PKG_VERSION) && \
	GOWORK=off GOSUMDB=off GOFLAGS=-mod=mod go build -o $(abspath $(KN)) ./cmd/kn

kn: $(KN) ## kn (Knative CLI), built from its module source (once, 5-10 min)

deploy: venv helm ## helm upgrade --install the chart into KUBECONFIG's cluster (namespace ripple)
	$(IMAGES) deploy --helm $(HELM)

smoke-deployed: venv ## smoke-test the deployed gateway (RIPPLE_GATEWAY_URL, RIPPLE_SMOKE_TOKEN)
	$(IMAGES) smoke-deployed

promote: venv helm ## deploy to the production namespace
	$(IMAGES) deploy --helm $(HELM) --production

## The notifications Broker (RabbitMQ): ingress and Trigger throughput beside the KafkaSource path.
BROKER_EVENTS ?= 5000
.PHONY: bench-broker
bench-broker: venv ## events/s into the RabbitMQ Broker's ingress and through one Trigger (BROKER_EVENTS=5000)
	$(PY) -m loadtest.broker.bench --events $(BROKER_EVENTS) $(BROKER_BENCH_ARGS)

## A real single-node Kubernetes with real Knative Serving, built here from upstream Go modules and
## run inside a network namespace of its own (infra/cluster/README.md). Not part of `make test`.
## Needs root, socat, iptables and libseccomp-dev (cluster-prereqs installs the last two).
CLUSTER := cd infra/cluster && $(abspath $(PY)) -m ripple_cluster
.PHONY: cluster-prereqs cluster-build cluster-up cluster-eventing cluster-deploy cluster-down cluster-status cluster-test cluster-conformance cluster-demo fidelity-report
cluster-prereqs: ## the Debian packages the cluster needs (iptables, conntrack, socat, libseccomp-dev)
	@command -v iptables >/dev/null && command -v socat >/dev/null && [ -e /usr/include/seccomp.h ] || \
		$(SUDO) apt-get install -y --no-install-recommends iptables conntrack socat libseccomp-dev

## Build every program the cluster runs from its Go module; skips what is built (cold: see README).
cluster-build: venv cluster-prereqs ## build every program the cluster runs from its Go module (cold ~16 min)
	$(CLUSTER) build

## Bring the node up (namespace, control plane, kubelet, CoreDNS, KIngress, Knative Serving and Eventing).
cluster-up: cluster-build ## a real Kubernetes + Knative in network namespace ripple-cluster
	$(CLUSTER) up

## Knative Eventing (core, channel-based Broker, InMemoryChannel) alone, on a running cluster.
cluster-eventing: venv ## (re)install Knative Eventing on the running cluster (cluster-up does it too)
	$(CLUSTER) eventing

## ripple's six functions on the running cluster (infra/cluster/ripple_cluster/ripple_deploy.py): the
## cluster's own Kafka, PostgreSQL and Keycloak in its namespace, make images-functions push to its
## registry, the chart by digest (helm), nginx in front on 127.0.0.1:17881.
cluster-deploy: venv helm podman ## ripple's functions on the cluster: images, push, Helm chart, nginx in front
	$(CLUSTER) deploy

## Stop every cluster process and delete its network namespace (state under .ripple/cluster kept).
cluster-down: venv ## stop the cluster and delete its namespace (state kept)
	$(CLUSTER) down

## Components, node readiness, pods and idle memory (RSS); `--json` through $(CLUSTER) status --json.
cluster-status: venv ## the cluster's components, node, pods and idle memory
	$(CLUSTER) status

## Knative Services Ready through the real webhook and controller, scale to zero, activator hold.
cluster-test: venv helm kn podman ## tests against the running cluster, ripple deployed first (not part of make test)
	$(PY) -m pytest -p no:cacheprovider infra/cluster/tests -v

## The autoscale demo (make demo-autoscale's step and spike) through the cluster's nginx into real
## Knative; instances from Knative's autoscaler (loadtest/autoscale/cluster.py). Same report and plot.
cluster-demo: venv-load ## the autoscale demo on the real cluster (make cluster-up cluster-deploy first; DEMO_ARGS=)
	$(PY) -m loadtest.autoscale --ripple-cluster $(DEMO_ARGS)

## Stand-ins vs real Knative from two demo runs: FIDELITY="<local report dir> <cluster report dir>".
fidelity-report: venv-load ## compare a local and a cluster demo run (FIDELITY="dirA dirB")
	$(PY) -m loadtest.autoscale.fidelity $(FIDELITY)

## knative.dev/networking's ingress conformance suite against ripple's KIngress (about 3 min).
cluster-conformance: venv ## knative.dev/networking's ingress conformance suite against the KIngress
	$(CLUSTER) conformance
