# meetup-rsvps: `make demo` runs the system, `make test` runs the tests. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK := $(BIN)/meetup-stack
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup system venv jars stack-up stack-down stack-status demo test test-unit lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: system venv jars ## install everything: system packages, Python packages, JVM jars

system: ## apt packages that are missing (Java 17, Maven, PostgreSQL)
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

demo: stack-up ## set up and run the whole system on the local stack
	@$(STACK) status
	@echo "demo: the stack is up. Source .stack/env to use it from a shell."

test: stack-up ## set up, start the stack and run the test suite (not the slow marks)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-unit: venv ## the tests that need no service
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: venv ## ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean: stack-down ## stop the stack and delete its state (jars are kept)
	rm -rf .stack/kafka .stack/s3 .stack/postgres .stack/env
