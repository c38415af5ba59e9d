# The README's two commands are `make run` and `make test`; both set up what
# they need first. Variables:
#   VENV              the Python environment carrying libtorch (default .venv)
#   CARGO_TARGET_DIR  where cargo builds (default target/)
VENV ?= .venv
export VENV
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BERTLAB := $(TARGET_DIR)/release/bertlab

.PHONY: setup browser slurm gloo build run test report-screenshot mlflow clean

## setup: Python environment with torch==2.11.0 (libtorch) and .cargo/config.toml
setup:
	@bash scripts/setup.sh

## browser: Debian's chromium, which the report tests render report.html in
browser:
	@bash scripts/setup-browser.sh

## slurm: Debian's slurm-wlm and munge, for the cluster tests, which start
## a single-node Slurm of their own (scripts/slurm-cluster.sh)
slurm:
	@bash scripts/setup-slurm.sh

## gloo: Debian's libgloo-dev, the headers c10d's Gloo process groups
## compile against (train.devices > 1); before the build that uses them
gloo:
	@bash scripts/setup-gloo.sh

## build: set-up, then the release build of bertlab, each phase timed
## (scripts/build.sh)
build:
	@bash scripts/build.sh

## run: train the quickstart sweep on the CPU and write its report
run: build
	@echo "run: the quickstart sweep, 4 tiny BERTs on the CPU (about 2 minutes on 2 cores)"
	$(BERTLAB) run experiments/quickstart.toml --device cpu

## test: every test of the workspace (same profile and features as `run`:
## after `make run` it compiles the tests and the project's crates, no
## dependency again)
test: gloo build browser slurm
	cargo test --release --workspace

## report-screenshot: the quickstart report as rendered by headless chromium
## (docs/report.png, shown in the README); run `make run` first
report-screenshot: browser
	bash scripts/screenshot.sh runs/quickstart/report.html docs/report.png

## mlflow: an MLflow server and UI at http://127.0.0.1:5000 over runs/mlflow.db;
## run sweeps with MLFLOW_TRACKING_URI=http://127.0.0.1:5000 to track into it
mlflow: setup
	mkdir -p runs
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///runs/mlflow.db --artifacts-destination runs/mlflow-artifacts --host 127.0.0.1 --port 5000

clean:
	cargo clean
