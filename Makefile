# rollguard — `make demo` runs the whole loop on a simulated local fleet;
# `make test` runs every test. Both install what they need first.
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)
FUZZTIME ?= 10s

.PHONY: all build deps test unit fuzz demo bench eval lint-workflows clean report-screenshot

all: build

build:
	$(GO) build -o bin/rollguard .

deps:
	@bash ci/install-deps.sh

# End-to-end tests need the real Ansible and VictoriaMetrics: ROLLGUARD_E2E=1
# makes a missing one a failure instead of a skip.
test: deps lint-workflows
	$(GO) vet ./...
	ROLLGUARD_E2E=1 $(GO) test -count=1 -timeout 14m ./...
	$(MAKE) fuzz

# Every workflow of the repository: its own and the example users copy.
WORKFLOWS := $(wildcard .github/workflows/*.yml ci/github/*.yml)
lint-workflows:
	actionlint $(WORKFLOWS)

unit:
	$(GO) test ./...

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzLoad$$' -fuzztime=$(FUZZTIME) ./runner
	$(GO) test -run='^$$' -fuzz='^FuzzParsePolicy$$' -fuzztime=$(FUZZTIME) ./policies

demo: deps build
	./bin/rollguard demo

# Every judge side by side on the real data sets (evaluation/): the tables
# of the README's Detection section.
eval:
	ROLLGUARD_EVAL=1 $(GO) test -count=1 -timeout 20m -run '^TestEvaluation$$' -v ./evaluation

# Screenshots of report.html for every dry-run scenario (installs chromium
# when missing): bin/screenshots/<scenario>.png. Not part of make test.
report-screenshot:
	bash ci/report-screenshots.sh $(or $(SCREENSHOTS),bin/screenshots) $(REPORTS)

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./policies ./integrations/victoriametrics

clean:
	rm -rf bin
