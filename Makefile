# vlmbench: `make test` and `make demo` do everything on a fresh machine (offline except PyPI).
PYTHON ?= python3
VENV   ?= .venv
# torch is installed FIRST, pinned here. Where it comes from is the user's choice (README, "Install"): PyPI's Linux
# wheel is the CUDA build (~2.7 GB with its CUDA packages); a CPU-only machine takes PyTorch's CPU index:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu      (or .../whl/cu126 for one CUDA version)
# That index holds its own builds of torch's dependencies, not necessarily the pinned ones, so the torch step skips
# constraints.txt there; the next step pins every package. TORCH overrides the requirement itself.
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: install check test demo bench smoke ci-suite sanity update-reference update-noise update-align clean mutants gpu-check fuzz

install: $(STAMP)

# constraints.txt pins every package to the exact versions tested (pyproject.toml holds the allowed ranges).
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)",-c constraints.txt) "$(TORCH)"
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# pytest-xdist: one worker per core; a test file stays on one worker (its module fixtures are built once).
PYTEST_JOBS ?= auto
XDIST = -n $(PYTEST_JOBS) --dist loadfile

# Before every commit (CONTRIBUTING.md): lint + format check, the import layers, the fast tests. <= 2 min on 2 cores.
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(XDIST) -m "not slow"

# Every test, the slow tier included (CI runs this).
test: install
	$(BIN)/python -m pytest $(XDIST)

demo: install
	$(BIN)/vlmbench run --task youcook2-caption --out runs/demo-caption --overwrite

bench: install
	$(BIN)/python bench/run_all.py

# GPU check (issue 24 item 4), one script: bf16 pre-training at BERT-base shape (MFU, data wait, peak memory),
# retrieval ranking at N = 100,000, beam-5 caption decoding, S3D extraction; prints a table and writes
# docs/gpu.md + docs/gpu.json (and into $OUT when set); ~4 minutes on one H200. No install step (a GPU box may have
# no network: bench/gpu_prepare.sh packs what it lacks). GPU_DRY=1: the same code paths at tiny shapes on the CPU,
# into a temp folder (tests/test_gpu_check.py runs it); GPU_ARGS: more options, e.g. GPU_ARGS="--out DIR".
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-check:
	$(GPU_PY) bench/gpu_check.py $(if $(filter-out 0,$(GPU_DRY)),--dry) $(GPU_ARGS)

# The CI regression run: smoke pre-training + all seven tasks (a few minutes on 2 CPU cores), fresh each time.
smoke: install
	rm -rf runs/ci-smoke
	$(BIN)/vlmbench suite --preset smoke --out runs/ci-smoke --no-progress

# Metric sanity: random scores through the real metric functions give their analytic expectation (seconds).
sanity: install
	$(BIN)/python -m vlmbench.sanity

# The CI gate's suite: REF_PRESET (ci) pre-training + all tasks + the floors their `learned:` rules need, once per
# GATE_SEEDS seed (runs/ci-ci/seedS/): compare judges the seeds' mean, whose noise is 1/sqrt(8) of one seed's (issue 25).
REF_PRESET ?= ci
GATE_SEEDS ?= $(if $(filter ci,$(REF_PRESET)),0 1 2 3 4 5 6 7,0)
ci-suite: install
	rm -rf runs/ci-$(REF_PRESET)
	for s in $(GATE_SEEDS); do $(BIN)/vlmbench suite --preset $(REF_PRESET) --seed $$s \
	  --out runs/ci-$(REF_PRESET)/seed$$s --no-progress || exit 1; done

# Seed noise of the CI suite: seeds 0..24 under runs/ (~2 min each on 2 cores), then results/reference/$(REF_PRESET)/noise.json (atomic).
NOISE_SEEDS ?= $(shell seq 0 24)
update-noise: install
	for s in $(NOISE_SEEDS); do rm -rf runs/noise-$(REF_PRESET)-seed$$s; \
	  $(BIN)/vlmbench suite --preset $(REF_PRESET) --seed $$s --out runs/noise-$(REF_PRESET)-seed$$s --no-progress || exit 1; done
	$(BIN)/python -m vlmbench.reporting.noise --out results/reference/$(REF_PRESET)/noise.json \
	  $(foreach s,$(NOISE_SEEDS),runs/noise-$(REF_PRESET)-seed$(s))

# Re-make the committed reference (after an intended change of numbers): the REF_PRESET suite (default ci), then
# results/reference/$(REF_PRESET)/ is replaced as a whole (built beside it, swapped in by rename; its noise.json
# is kept: re-measure it with `make update-noise` when the spread may have changed). REF_PRESET=smoke: the old one.
update-reference: install
	rm -rf runs/reference-$(REF_PRESET)
	$(BIN)/vlmbench suite --preset $(REF_PRESET) --out runs/reference-$(REF_PRESET) --no-progress --save-reference results/reference/$(REF_PRESET)

# Does the toy corpus make caption-clip alignment matter? The align pre-training preset on the toy corpus (8 seeds)
# and on it with every video's captions moved to the next video (3 seeds): loss_last and CrossTask zero-shot recall
# per seed into results/reference/align/seeds.json, which tests/test_alignment.py checks against (~2.5 min a seed).
update-align: install
	$(BIN)/python -m vlmbench.alignment --seeds $(shell seq 0 7) --shifted-seeds 0 1 2 --work runs/align \
	  --out results/reference/align/seeds.json

# The smoke suite (seconds; learns nothing): its results/reference/smoke backs the CLI report and compare tests.
smoke-suite: install
	rm -rf runs/ci-smoke
	$(BIN)/vlmbench suite --preset smoke --out runs/ci-smoke --no-progress

# Mutation check (not part of `make test`: ~9 min on 2 CPU cores, 2026-12-05): each patch in mutants/ applied to a copy
# of HEAD and the CI gate run on the tasks it can reach; exit 1 if one escapes. ONLY=03,07 PRESET=smoke for a dry run.
mutants: install
	$(BIN)/python mutants/run.py --preset $(or $(PRESET),ci) $(if $(ONLY),--only $(ONLY))

# Property-based fuzzing of every reader (tests/test_fuzz_readers.py, Hypothesis) on a long budget: FUZZ_EXAMPLES
# random examples per reader (17 readers; 10000 each takes ~30-60 min on 2 shared CPU cores), niced, with the
# per-reader statistics. `make test` runs the same tests on a small fixed (derandomized) budget in seconds.
FUZZ_EXAMPLES ?= 10000
fuzz: install
	HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) nice -n 10 $(BIN)/python -m pytest tests/test_fuzz_readers.py \
	  -p no:cacheprovider --hypothesis-show-statistics

clean:
	rm -rf runs .pytest_cache
