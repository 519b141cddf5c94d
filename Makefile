# chute: make install | make up | make test | make lint | make bench
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DLT_VENV := .venv-dlt
DLT_STAMP := $(DLT_VENV)/.installed
APT_PACKAGES := docker-compose chromium wrk pgloader faketime

.PHONY: install up test lint bench clean system-packages aws-package

install: $(STAMP) system-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian tools the tests and benchmarks use: docker-compose checks the compose file
# offline (and runs it where `docker compose` is missing), chromium renders the console
# in its tests (driven by Playwright), wrk and pgloader are benchmark peers, faketime
# steps the workers' clock in a test.
# Installed only when missing, and only where apt-get can run as root.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "please install:$$missing (apt-get install$$missing)"; fi; \
	fi

# A Docker engine runs the compose end-to-end test (tests/integration/test_compose_up.py,
# which skips without one). Debian's docker.io only where no engine is installed at all:
# it would conflict with Docker's own docker-ce packages.
	@command -v dockerd >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian packages: docker.io"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; \
		else echo "please install a Docker engine (apt-get install docker.io) for the compose test"; fi; }

# Node.js and npm run `serverless package`, the offline check of serverless.yml.
	@command -v npm >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
		else echo "please install Node.js and npm (for the serverless.yml check)"; fi; }

up: install
	$(BIN)/python -m chute.commands.stack

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

# The pipeline benchmark (about 20 minutes here: people and wide files of 1M and 5M rows, their
# floors, pgloader for at most 2 minutes each): prints tables, writes bench/results/latest.json.
# Then bursts of 1,000 and 10,000 small files (about 5 minutes): bench/results/burst.json.
# Then a rebuild of 1M people and 1M wide rows after a type change (about 3 minutes):
# bench/results/rebuild.json. Then the 1M people file plain, gzip and zstd (about 2 minutes):
# bench/results/feeds.json. Then the transform beside Arrow's own reader (1M people and wide
# rows, about 4 minutes): bench/results/transform.json. Then one wide file of 5M rows read
# by 1, 2 and 3 transformers (about 12 minutes): bench/results/scaling.json. Then chute, pgloader
# and dlt on 1M-row files, clean and with bad rows (about 25 minutes): bench/results/peer-files.json.
bench: install $(DLT_STAMP)
	$(BIN)/python -m bench.run --sizes 1000000,5000000
	$(BIN)/python -m bench.burst --bursts 1000,10000 --workers 1+2,2+3
	$(BIN)/python -m bench.rebuild --rows 1000000
	$(BIN)/python -m bench.feeds --rows 1000000 --members 1000
	$(BIN)/python -m bench.transform_floor --rows 1000000
	$(BIN)/python -m bench.scaling --rows 5000000 --transformers 1,2,3
	$(BIN)/python -m bench.peer_files --rows 1000000

# dlt, the second peer, in a venv of its own (its pins are in bench/peer_dlt.py): the
# project's own venv never holds it.
$(DLT_STAMP): bench/peer_dlt.py $(STAMP)
	$(PYTHON) -m venv $(DLT_VENV)
	$(DLT_VENV)/bin/pip install --quiet $$($(BIN)/python -c "from bench.peer_dlt import DLT_REQUIREMENT, READER_REQUIREMENTS; print(DLT_REQUIREMENT, *READER_REQUIREMENTS)")
	touch $(DLT_STAMP)

# build/chute-lambda.zip: chute and its dependencies for AWS Lambda (Linux x86_64).
aws-package: install
	rm -rf build && $(BIN)/pip wheel --quiet --no-deps -w build/wheels .
	$(BIN)/pip install --quiet --target build/lambda --platform manylinux2014_x86_64 \
	  --implementation cp --python-version 3.11 --only-binary=:all: "$$(ls build/wheels/chute-*.whl)[aws]"
	# Under Lambda's 250 MB limit: the runtime has its own boto3, and chute uses only
	# pyarrow's arrays and compute functions (not Flight, nor its headers and tests).
	# The datasets file, if the deployment has one: the function starts in /var/task, where
	# chute.toml is read as it is from the working directory of `make up`.
	if [ -f chute.toml ]; then cp chute.toml build/lambda/; fi
	cd build/lambda && rm -rf boto3* botocore* s3transfer* pyarrow/include pyarrow/tests \
	  numpy/*/tests pyarrow/*flight* pyarrow/_pyarrow_cpp_tests* \
	  && PYTHONPATH=. python3 -c "import chute.reading.transform" \
	  && zip -qr ../chute-lambda.zip .

clean:
	rm -rf $(VENV) $(DLT_VENV) *.egg-info .pytest_cache build
