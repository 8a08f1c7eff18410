# TransferNet on Caffe: the front door. `make help` lists the targets; README.md documents each.
# Every target that needs Caffe runs through runtime/run.sh: the host's pycaffe if python3 can
# import caffe, otherwise the Debian 11 Caffe root (built on first use).

RUN := runtime/run.sh
# CAFFE=cuda runs every target in the CUDA Caffe root (runtime/build-cuda-root.sh) instead.
CAFFE ?= cpu
ifeq ($(filter cpu cuda,$(CAFFE)),)
$(error CAFFE must be cpu or cuda, got '$(CAFFE)')
endif
export TRANSFERNET_CAFFE := $(CAFFE)
PYTEST_ARGS ?= -q
WORKERS ?= 2
JOBS ?= 2
JOINT_SEEDS ?=
SPLIT ?= paper

# Datasets, each in its official layout, named by a dataset spec (data_prep/spec.py): the
# paper's split (specs/paper.json) or the built-in dataset's, which its generator writes beside
# its trees; SPEC=my.json for your own categories. DATASET=builtin uses the generated built-in
# dataset and the tiny networks.
DATASET ?= paper
ifeq ($(DATASET),builtin)
VOC_ROOT := data/builtin/VOCdevkit/VOC2012
CONFIG ?= tiny
DATA_SPEC := $(or $(SPEC),data/builtin/spec.json)
else ifeq ($(DATASET),paper)
VOC_ROOT ?= data/VOCdevkit/VOC2012
CONFIG ?= paper
DATA_SPEC := $(or $(SPEC),specs/paper.json)
else
$(error DATASET must be paper or builtin, got '$(DATASET)')
endif
# The LMDB folders and the records' size are the config's (transfernet/config.py), read in one
# call.
CONFIG_DATA := $(shell python3 -m transfernet.config get $(CONFIG) data.source data.target \
  data.resize)
ifneq ($(words $(CONFIG_DATA)),3)
$(error CONFIG=$(CONFIG): transfernet/config.py gives no data.source, data.target, data.resize)
endif
SOURCE_DB := $(or $(SOURCE_DB),$(word 1,$(CONFIG_DATA)))
TARGET_DB := $(or $(TARGET_DB),$(word 2,$(CONFIG_DATA)))
RECORD_SIZE := $(word 3,$(CONFIG_DATA))
RATIO ?= 1
SEED ?= 0
# Inference and evaluation on the target val list.
LIST ?= $(VOC_ROOT)/ImageSets/Segmentation/val.txt
IMAGES ?= $(VOC_ROOT)/JPEGImages
GT ?= $(VOC_ROOT)/SegmentationClass
PRED ?= runs/$(CONFIG)/pred
EVAL_OUT ?= $(PRED)/eval.json
CLASSES ?= voc
INFER_ARGS ?=
# The authors' released caffemodels (docs/authors-models.md) and where their imports and
# Table 1 go.
AUTHORS_DIR ?= data/authors
AUTHORS_OUT ?= runs/authors
# The linter and formatter (ruff.toml), installed from PyPI into the cache on first use.
RUFF_VERSION := 0.8.4
RUFF_DIR := $(or $(TRANSFERNET_CACHE),$(HOME)/.cache/transfernet)/ruff-$(RUFF_VERSION)
DATA_FOLDERS = $(VOC_ROOT) $(dir $(SOURCE_DB)) $(dir $(TARGET_DB))
# The folders a spec reads and writes (asked on the host: data_prep/spec.py needs only Python).
spec_folders = $(shell python3 -m data_prep.spec folders $1)

# $(call q,TEXT): TEXT as one single-quoted shell word. Commands and argument lists (CMD,
# PYTEST_ARGS, INFER_ARGS) are taken with $(value ...), so they reach the runtime's shell
# exactly as typed, quotes and $ included.
q = '$(subst ','\'',$1)'
# $(call runtime,FOLDERS,COMMAND): COMMAND in the runtime, with the FOLDERS outside the checkout
# that it reads or writes bound into the Caffe root (runtime/run.sh, TRANSFERNET_MOUNTS; `make
# run` binds the DATA_FOLDERS, for training).
runtime = TRANSFERNET_MOUNTS=$(call q,$(subst $(eval) ,:,$(strip $(TRANSFERNET_MOUNTS) \
  $(abspath $1)))) $(RUN) $(call q,$2)
# $(call exists,VARIABLE ...): stop, naming the variable, if the input path it holds is missing.
exists = $(foreach v,$1,$(if $(wildcard $($v)),,$(error $@: $v=$($v) does not exist)))

.PHONY: help env run test test-runtime lint models check-models data builtin infer eval gpu-check bench demo repro-mini authors-import authors-table

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

env:  ## build the Caffe runtime if needed (CAFFE=cpu|cuda); print caffe's version and the pycaffe used
	@$(RUN) 'echo "runtime: $$TRANSFERNET_RUNTIME"; caffe --version; \
	  $(if $(filter cuda,$(CAFFE)),python3 -m transfernet.cuda;) \
	  python3 -c "import caffe; print(\"pycaffe:\", caffe.__file__)"'

run:  ## run CMD='...' with pycaffe and the project's modules, e.g. make run CMD='caffe --version'
	@test -n $(call q,$(value CMD)) || { echo "usage: make run CMD='caffe --version'" >&2; exit 2; }
	@$(call runtime,$(DATA_FOLDERS),$(value CMD))

test:  ## run the whole test suite with the real Caffe (PYTEST_ARGS='-k unpool' to select)
	@$(call runtime,,python3 -m pytest $(value PYTEST_ARGS))

lint:  ## ruff: lint and format check of every Python file (no Caffe needed)
	@test -x $(RUFF_DIR)/bin/ruff || python3 -m pip install --quiet --disable-pip-version-check \
	  --root-user-action=ignore --target $(RUFF_DIR) ruff==$(RUFF_VERSION)
	@$(RUFF_DIR)/bin/ruff check --quiet . && $(RUFF_DIR)/bin/ruff format --check --quiet . \
	  && echo "lint: clean (ruff $(RUFF_VERSION))"

test-runtime:  ## check runtime/run.sh and the Makefile from the host (folders, inputs, quoting)
	@runtime/test-run.sh

models:  ## regenerate models/ and solvers/ from transfernet/nets.py; with SPEC, write runs/<spec name> for its class table and CONFIG
	@$(if $(SPEC),$(call runtime,$(call spec_folders,$(SPEC)),python3 tools/generate_models.py \
	  --spec $(SPEC) --config $(CONFIG)),$(RUN) 'python3 tools/generate_models.py')

check-models:  ## fail if a committed prototxt differs from the generator's output
	@$(RUN) 'python3 tools/generate_models.py --check'

data: $(if $(filter builtin,$(DATASET)),builtin)  ## the class table and LMDBs of SPEC (default: DATASET's) at CONFIG's record size (RATIO, SEED for a source subset)
	@$(call runtime,$(call spec_folders,$(DATA_SPEC)),python3 -m data_prep.build $(DATA_SPEC) \
	  --size $(RECORD_SIZE) --ratio $(RATIO) --seed $(SEED) --workers $(WORKERS))

builtin:  ## generate the built-in dataset (COCO- and VOC-format trees) unless it is current
	@$(RUN) 'python3 -m data_prep.builtin --out data/builtin --workers $(WORKERS)'

infer:  ## segment the images of LIST with the final snapshots of CONFIG into PRED (INFER_ARGS='--crf')
	@$(call exists,LIST IMAGES)$(call runtime,$(dir $(LIST)) $(IMAGES) $(GT) $(PRED), \
	  python3 tools/infer.py --config $(CONFIG) --list $(LIST) --root $(IMAGES) --out $(PRED) \
	  $(value INFER_ARGS))

eval:  ## comp6 mIoU of PRED against GT over LIST; table on stdout, JSON + CSV in EVAL_OUT
	@$(call exists,PRED GT LIST)$(call runtime,$(PRED) $(GT) $(dir $(LIST)) $(dir $(EVAL_OUT)), \
	  python3 tools/eval.py --pred $(PRED) --gt $(GT) --list $(LIST) --classes $(CLASSES) \
	  --out $(EVAL_OUT))

gpu-check: TRANSFERNET_CAFFE = $(if $(filter command line,$(origin CAFFE)),$(CAFFE),cuda)
gpu-check: builtin  ## GPU self-check in the CUDA root: CPU vs GPU joint net, GPU timing; runs/gpu-check/gpu-check.json
	@$(RUN) 'python3 tools/gpu_check.py --builtin data/builtin --out runs/gpu-check/gpu-check.json'

bench: builtin  ## performance figures (table on stdout, runs/bench/bench.json); about 5.5 minutes on 2 quiet cores
	@$(RUN) 'python3 tools/bench.py --out runs/bench/bench.json --builtin data/builtin'

demo:  ## the method end to end on the built-in dataset (tiny nets, real caffe train); runs/demo/report.md (SPLIT=shapes3: runs/demo-shapes3)
	@$(RUN) 'python3 tools/demo.py --split $(SPLIT) --seed $(SEED) --workers $(WORKERS)$(if $(JOINT_SEEDS), --joint-seeds $(JOINT_SEEDS))'

repro-mini:  ## Table 1 + Figure 4 in miniature on the built-in dataset (JOBS runs at once, resumable); runs/repro-mini/
	@mkdir -p runs/repro-mini && $(RUN) 'python3 tools/repro_mini.py --out runs/repro-mini --data data/builtin-mini --seed $(SEED) --workers $(WORKERS) --jobs $(JOBS)'

authors-import:  ## import the authors' released caffemodels in AUTHORS_DIR into AUTHORS_OUT/imported (docs/authors-models.md)
	@$(call exists,AUTHORS_DIR)$(call runtime,$(AUTHORS_DIR) $(AUTHORS_OUT),python3 tools/import_authors.py \
	  $(sort $(wildcard $(AUTHORS_DIR)/*.caffemodel)) --out-dir $(AUTHORS_OUT)/imported --config $(CONFIG))

authors-table: $(if $(filter builtin,$(DATASET)),builtin)  ## Table 1 from the released models: import, segment VOC_ROOT val with their protocol (predicted and GT labels), score; resumable
	@$(call exists,VOC_ROOT AUTHORS_DIR)$(call runtime,$(VOC_ROOT) $(AUTHORS_DIR) $(AUTHORS_OUT), \
	  python3 tools/authors_table.py --voc-root $(VOC_ROOT) --authors-dir $(AUTHORS_DIR) \
	  --out $(AUTHORS_OUT) --config $(CONFIG)$(if $(filter command line,$(origin WORKERS)), --workers $(WORKERS)))
