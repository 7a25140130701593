# meetup-rsvps: `make demo` runs the system, `make test` runs the tests. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK := $(BIN)/meetup-stack
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup system venv jars stack-up stack-down stack-status cluster-up cluster-status cluster-chain cluster-ingest demo replay-server ingest test test-slow test-unit lint bench-ingest bench-backlog bench-chain-backlog bench-chain-round bench bench-system bench-soak bench-floor bench-delta-ops bench-mirror-batch bench-decide-state bench-parse-checks bench-ml bench-ml-features bench-score-stage bench-app bench-cluster chain replay maintain train score app clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: system venv jars ## install everything: system packages, Python packages, JVM jars

system: ## apt packages that are missing (Java 17, Maven, PostgreSQL, Chromium)
	@bash stack/install-system.sh

venv: $(VENV)/.installed ## the Python virtualenv with the project and its dev tools

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

jars: venv ## Spark, Kafka and S3Proxy jars from Maven Central into .stack/jars
	@$(STACK) jars

stack-up: setup ## start Kafka, the object store and PostgreSQL (idempotent)
	@$(STACK) up

stack-down: ## stop the local stack (state stays in .stack/)
	@test -x $(STACK) && $(STACK) down || true

stack-status: ## health of each service
	@$(STACK) status

SPEED ?= 10
demo: stack-up ## set up, start the stack, then the replay server (SPEED x real time), producer, chain, a first model and the app
	@$(STACK) status
	$(BIN)/meetup-demo --speed $(SPEED)

replay-server: venv ## the Meetup-compatible stream server on http:// and ws://127.0.0.1:8765 (ARGS=... to change)
	$(BIN)/meetup-replay-server $(or $(ARGS),--captures 'data/rsvps/*.jsonl' --rebase --loop --pace recorded)

ingest: venv ## follow a stream endpoint into Kafka (ARGS="--url ws://host:port --streams rsvps photos")
	$(BIN)/meetup-ingest $(ARGS)

# TEST_WORKERS=N runs the test modules in N processes at once (pytest-xdist, a whole module per worker, so its
# fixtures are built once; every test writes under names of its own run). The default is one process: on two
# cores the suite is CPU-bound, and three workers made Spark's Python workers miss their connect-back timeout
# (docs/testing.md).
TEST_WORKERS ?= 0
test: stack-up lint ## set up, start the stack, lint, and run the test suite (not the slow marks); TEST_WORKERS=N for N processes
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-slow: stack-up ## only the slow tests: 20 kills, service restarts, cluster kills, long compaction, scoring form (~75 min)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-unit: jars ## the tests that need no service (Spark runs locally with the jars, no stack)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: stack-up ## every benchmark, then bench/results/summary.md and summary.png (about 2 hours on 2 cores)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.delta_ops
	$(BIN)/python -m bench.mirror_batch
	$(BIN)/python -m bench.decide_state
	$(BIN)/python -m bench.parse_checks
	$(BIN)/python -m bench.backlog --sizes 100000 300000 1000000
	$(BIN)/python -m bench.system --rates 2 20 200 --minutes 5
	$(BIN)/python -m bench.ml --size 100000
	$(BIN)/python -m bench.app
	$(BIN)/python -m bench.cluster --size 100000
	$(BIN)/python -m bench.report

bench-system: stack-up ## the running system at 2, 20 and 200 RSVPs/s: freshness p50/p95/p99, lag over time, phases, memory (bench/results/system.md)
	$(BIN)/python -m bench.system --rates 2 20 200 --minutes 15
	$(BIN)/python -m bench.report

bench-soak: stack-up ## the running system at 20 RSVPs/s for 60 minutes: is the lag bounded? (bench/results/soak.md, soak.png)
	$(BIN)/python -m bench.system --rates 20 --minutes 60 --name soak

bench-chain-backlog: stack-up ## a 1M-RSVP backlog through the chain as it runs, every stage at once, until every table is final (bench/results/chain_backlog.md)
	$(BIN)/python -m bench.chain_backlog --sizes 1000000

bench-chain-round: stack-up ## the chain's fixed cost: available-now runs of bronze, silver and gold over 20 RSVPs each, wall and CPU seconds (bench/results/chain_round.md)
	$(BIN)/python -m bench.chain_round

bench-floor: stack-up ## the floor of this stack: a bare Spark Kafka -> Delta append at 20 RSVPs/s, as a delta-rs reader sees it (bench/results/floor.md)
	$(BIN)/python -m bench.floor --rates 20 --minutes 5

bench-delta-ops: stack-up ## one Delta append: plain, with a transaction id, by batch id (BatchAppender); a MERGE; alone: S3 vs local disk, codegen on/off (bench/results/delta_ops.md)
	$(BIN)/python -m bench.delta_ops

bench-mirror-batch: jars ## one PostgreSQL-mirror batch's Spark side, alone: checks rebuilt per batch vs once, cached vs checkpointed (bench/results/mirror_batch.md)
	$(BIN)/python -m bench.mirror_batch

bench-decide-state: jars ## gold's state store decide per RSVP: one map entry per RSVP vs buckets vs no state (bench/results/decide_state.md)
	$(BIN)/python -m bench.decide_state

bench-parse-checks: jars ## parse and check a message: the parse copied into each rule (before) vs parsed once (bench/results/parse_checks.md)
	$(BIN)/python -m bench.parse_checks

bench-ingest: stack-up ## websocket and HTTP stream -> Kafka throughput beside their references (bench/results/ingest.md)
	$(BIN)/python -m bench.ingest

bench-backlog: stack-up ## Kafka -> bronze -> silver + PostgreSQL -> gold catch-up, 100k and 1M RSVPs (bench/results/backlog.md)
	$(BIN)/python -m bench.backlog --sizes 100000 1000000

bench-cluster: stack-up ## the chain on a Spark standalone cluster beside local mode, 100k RSVPs (bench/results/cluster.md)
	$(BIN)/python -m bench.cluster --size 100000

bench-ml: stack-up ## model training time on the captures, batch and streaming scoring rates (bench/results/ml.md)
	$(BIN)/python -m bench.ml --size 100000

bench-score-stage: stack-up ## the scoring stage's live batch, phase by phase, after a state of 100,000 RSVPs (bench/results/score_stage.md)
	$(BIN)/python -m bench.score_stage --state 100000 --batches 6

bench-ml-features: jars ## what each group of features adds, leave one capture out, raw and calibrated (bench/results/ml_features.md)
	$(BIN)/python -m bench.ml_features

bench-app: stack-up ## the app's time to first render and per refresh at 10k, 100k and 1M RSVPs (bench/results/app.md)
	$(BIN)/python -m bench.app

# The same stack commands with three Kafka brokers (replication 3, min.insync.replicas 2) and a Spark
# standalone master with two workers: `make cluster-up`, then `make cluster-chain`. See docs/scaling-out.md.
# The three brokers hold topics of their own, so their tables and mirror live apart from the single broker's.
CLUSTER := KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096 SPARK_MASTER=spark://127.0.0.1:7077 \
	LAKEHOUSE_ROOT=s3a://meetup-lakehouse/cluster POSTGRES_SCHEMA=meetup_cluster
cluster-up: setup ## the stack with a three-broker Kafka and a Spark standalone cluster (make stack-down first)
	@$(CLUSTER) $(STACK) up

cluster-status: ## health of each service of the cluster stack, one line per service
	@$(CLUSTER) $(STACK) status

cluster-chain: ## the whole chain submitted to the standalone cluster with spark-submit (ARGS="--available-now")
	$(CLUSTER) $(BIN)/meetup-submit pipelines/chain.py $(ARGS)

cluster-ingest: ## the real captures, once, from the replay server through the producer into the three brokers
	$(BIN)/meetup-replay-server --port 8766 --captures 'data/rsvps/*.jsonl' --pace max & server=$$!; \
	$(CLUSTER) $(BIN)/meetup-ingest --url ws://127.0.0.1:8766 --streams rsvps --exit-at-end; status=$$?; \
	kill $$server; exit $$status

chain: stack-up ## the Spark chain (bronze -> silver + PostgreSQL, gold, scoring), continuously; ARGS="--available-now" etc.
	$(BIN)/meetup-chain $(ARGS)

replay: stack-up ## reprocess Kafka history into a new generation and switch to it: make replay TO=g2 [ARGS=...]
	@test -n "$(TO)" || { echo "usage: make replay TO=<new generation, e.g. g2> [ARGS='--from-timestamp ...']"; exit 2; }
	$(BIN)/meetup-replay --to $(TO) $(ARGS)

maintain: stack-up ## OPTIMIZE + VACUUM every table of the current generation
	$(BIN)/meetup-maintain $(ARGS)

train: stack-up ## train the yes/no model and the group categories on the current generation (ARGS="--test-from 2021-01-01")
	$(BIN)/meetup-train $(ARGS)
	$(BIN)/meetup-categories

score: stack-up ## score a capture with the current model: make score CAPTURE=data/rsvps/2021-09-02_capture.jsonl
	@test -n "$(CAPTURE)" || { echo "usage: make score CAPTURE=<file.jsonl> [ARGS='--out predictions.csv']"; exit 2; }
	$(BIN)/meetup-score $(CAPTURE) $(ARGS)

app: venv ## the Streamlit app on http://127.0.0.1:8501 (ARGS="--port 8600")
	$(BIN)/meetup-app $(ARGS)

lint: venv ## ruff (style), mypy --strict (types), the packages' layers (import-linter), every link and path in the docs
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/lint-imports --no-cache \
		&& $(BIN)/python tools/check_docs.py

clean: stack-down ## stop the stack and delete its state (jars are kept)
	rm -rf .stack/kafka .stack/s3 .stack/postgres .stack/spark .stack/build .stack/env
