# Benchmarks (long; each run writes its own result file and finished runs are skipped) and the report from them.
.PHONY: bench report test lint docs check-extras contrib-suite

EXTRAS ?= zoo tests benchmarks ray docs

bench:
	python -m benchmarks.speed --repeats 3 --iterations 8
	python -m benchmarks.vine_throughput --iterations 3
	python -m benchmarks.finite_checks
	python -m benchmarks.returns --envs CartPole-v1 --seeds 0 1 2 --budget 200000 --eval-every 20000
	python -m benchmarks.returns --envs Hopper-v5 --seeds 0 1 2 3 4 5 --budget 300000 --eval-every 30000
	python -m benchmarks.returns --envs Walker2d-v5 HalfCheetah-v5 Swimmer-v5 --seeds 0 1 2 --budget 300000 --eval-every 30000
	python -m benchmarks.atari --env PongNoFrameskip-v4 --budget 30000 --seeds 0
	python -m benchmarks.report

report:
	python -m benchmarks.report

test:
	python -m pytest -n 2

lint:
	ruff check .

docs:
	sphinx-build -W -b html docs docs/_build/html

# each extra installed alone into a fresh virtual environment (.venvs/extra-NAME), then what it is for is run
check-extras:
	for extra in $(EXTRAS); do bash .ci/check_extra.sh $$extra || exit 1; done

# sb3-contrib's own TRPO tests with TRPOVine in TRPO's place
contrib-suite:
	python .ci/sb3_contrib_suite.py -n 2
