# One command to set up and crawl, one to set up and test. Both create .venv when needed.
PYTHON ?= python3
VENV ?= .venv
ARGS ?=

.PHONY: crawl test lint clean

$(VENV)/.crawl-deps: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-deps: $(VENV)/.crawl-deps requirements-dev.txt
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

crawl: $(VENV)/.crawl-deps
	$(VENV)/bin/scrapy crawl ice287g $(ARGS)

test: $(VENV)/.test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(ARGS)

clean:
	rm -rf $(VENV)
