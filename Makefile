# The two commands of the README, plus the main job.
.PHONY: setup test run lint shell

setup:
	bash env/setup.sh

test:
	env/run.sh python -m pytest

run:
	env/run.sh watchnext run

lint:
	env/run.sh ruff check .

shell:
	env/run.sh bash
