# meetup-rsvps: `make demo` runs the system, `make test` runs the tests. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK := $(BIN)/meetup-stack
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup system venv jars stack-up stack-down stack-status demo replay-server ingest test test-slow test-unit lint bench-ingest bench-backlog bench-freshness bench-ml bench-app chain replay maintain train score app clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: system venv jars ## install everything: system packages, Python packages, JVM jars

system: ## apt packages that are missing (Java 17, Maven, PostgreSQL, Chromium)
	@bash stack/install-system.sh

venv: $(VENV)/.installed ## the Python virtualenv with the project and its dev tools

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
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
demo: stack-up ## set up, start the stack, replay the captures (SPEED x real time) through Kafka and the chain, serve the app
	@$(STACK) status
	@echo "demo: replay server -> ingest -> Kafka -> chain (bronze, silver, PostgreSQL, gold, scoring) -> app on http://127.0.0.1:8501; Ctrl-C stops (the stack stays up)"
	@trap 'trap - INT TERM; kill -TERM $$(jobs -p) 2>/dev/null; wait' INT TERM; \
	$(BIN)/meetup-replay-server --captures 'data/rsvps/*.jsonl' --rebase --loop --pace recorded --speed $(SPEED) & \
	sleep 2; $(BIN)/meetup-ingest --streams rsvps & \
	$(BIN)/meetup-chain --streams rsvps --interval '5 seconds' & \
	$(BIN)/meetup-app & \
	wait

replay-server: venv ## the Meetup-compatible stream server on ws://127.0.0.1:8765 (ARGS=... to change)
	$(BIN)/meetup-replay-server $(or $(ARGS),--captures 'data/rsvps/*.jsonl' --rebase --loop --pace recorded)

ingest: venv ## follow a stream endpoint into Kafka (ARGS="--url ws://host:port --streams rsvps photos")
	$(BIN)/meetup-ingest $(ARGS)

test: stack-up ## set up, start the stack and run the test suite (not the slow marks)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: stack-up ## only the slow tests (compaction of every layer over a longer run, ~7 min)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-unit: venv ## the tests that need no service
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench-ingest: stack-up ## websocket -> Kafka throughput beside its references (bench/results/ingest.md)
	$(BIN)/python -m bench.ingest

bench-backlog: stack-up ## Kafka -> bronze -> silver + PostgreSQL -> gold catch-up, 100k and 1M RSVPs (bench/results/backlog.md)
	$(BIN)/python -m bench.backlog --sizes 100000 1000000

bench-freshness: stack-up ## Kafka append -> gold / PostgreSQL freshness at 20 and 200 RSVPs/s (bench/results/freshness.md)
	$(BIN)/python -m bench.freshness --rates 20 200 --minutes 4

bench-ml: stack-up ## model training time on the captures, batch and streaming scoring rates (bench/results/ml.md)
	$(BIN)/python -m bench.ml --size 100000

bench-app: stack-up ## the app's time to first render and per refresh at 10k, 100k and 1M RSVPs (bench/results/app.md)
	$(BIN)/python -m bench.app

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

lint: venv ## ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean: stack-down ## stop the stack and delete its state (jars are kept)
	rm -rf .stack/kafka .stack/s3 .stack/postgres .stack/env
