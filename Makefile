# TransferNet on Caffe: the front door. `make help` lists the targets; README.md documents each.
# Every target that needs Caffe runs through runtime/run.sh: the host's pycaffe if python3 can
# import caffe, otherwise the Debian 11 Caffe root (built on first use).

RUN := runtime/run.sh
PYTEST_ARGS ?= -q

.PHONY: help env run test models check-models

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

env:  ## build the Caffe runtime if needed; print caffe's version and the pycaffe used
	@$(RUN) 'echo "runtime: $$TRANSFERNET_RUNTIME"; caffe --version; \
	  python3 -c "import caffe; print(\"pycaffe:\", caffe.__file__)"'

run:  ## run CMD='...' with pycaffe and the project's modules, e.g. make run CMD='caffe --version'
	@test -n "$(CMD)" || { echo "usage: make run CMD='caffe --version'" >&2; exit 2; }
	@$(RUN) '$(CMD)'

test:  ## run the whole test suite with the real Caffe (PYTEST_ARGS='-k unpool' to select)
	@$(RUN) 'python3 -m pytest $(PYTEST_ARGS)'

models:  ## regenerate models/ and solvers/ from transfernet/nets.py
	@$(RUN) 'python3 tools/generate_models.py'

check-models:  ## fail if a committed prototxt differs from the generator's output
	@$(RUN) 'python3 tools/generate_models.py --check'
