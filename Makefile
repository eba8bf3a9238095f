# The two fresh-machine commands are `make demo` (the main job on the embedded default)
# and `make test` (the whole suite). Both run `make setup` first, which is fast once done.
PY := .venv/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test lint format gui screenshot

setup:
	bash scripts/setup_env.sh

demo: setup
	$(PY) tools/train_net.py --config-file configs/coco_forget.yaml

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

gui: setup
	$(PY) -m gui --demo

# A real window under Xvfb (needs Debian's xvfb and Qt's xcb libraries, see docs/gui.md).
screenshot: setup
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) tools/gui_screenshot.py --audit-out docs/gui_audit.png
