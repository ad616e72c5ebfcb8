# rollguard — `make demo` runs the whole loop on a simulated local fleet;
# `make test` runs every test. Both install what they need first.
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)
FUZZTIME ?= 10s
# fuzz-long: how long each target of outside input runs.
FUZZLONG ?= 10m

.PHONY: all build deps test unit fuzz fuzz-long chaos demo bench eval lint-workflows clean report-screenshot

all: build

build:
	$(GO) build -o bin/rollguard .

deps:
	@bash ci/install-deps.sh

# End-to-end tests need the real Ansible and VictoriaMetrics: ROLLGUARD_E2E=1
# makes a missing one a failure instead of a skip. -parallel 3: the root
# package's TestLive, TestLiveResume and TestChaos (each with a fleet and a
# VictoriaMetrics of its own) mostly wait on ticks, and run side by side.
test: deps lint-workflows
	$(GO) vet ./...
	ROLLGUARD_E2E=1 $(GO) test -count=1 -parallel 3 -timeout 25m ./...
	$(MAKE) fuzz

# Every workflow of the repository: its own and the example users copy.
WORKFLOWS := $(wildcard .github/workflows/*.yml ci/github/*.yml)
lint-workflows:
	actionlint $(WORKFLOWS)

# The fault suite on the simulated fleet (real Ansible and VictoriaMetrics):
# SIGKILL at random moments and at every journaled step, SIGTERM, the
# metrics store restarted, a hanging playbook, the Consul/Nomad stores
# failing, two runs at once. ROLLGUARD_CHAOS_SEED=<n> repeats a run.
chaos: deps
	@ROLLGUARD_E2E=1 ROLLGUARD_CHAOS=full $(GO) test -count=1 -timeout 150m -run '^TestChaos$$' -v . > chaos.log 2>&1; rc=$$?; \
	grep -E -- '--- (PASS|FAIL)|chaos (seed|summary)|^(ok|FAIL)' chaos.log; echo "whole output: chaos.log"; exit $$rc

# Without ROLLGUARD_E2E an end-to-end test skips when its component is
# missing and runs when it is installed: the root package's TestLive then
# needs more than go test's default 10m deadline.
unit:
	$(GO) test -timeout 25m ./...

# ci/fuzz.sh passes a run that found nothing but ended on Go 1.26's
# fuzztime race (golang/go#75804).
fuzz:
	GO=$(GO) ci/fuzz.sh FuzzLoad ./runner $(FUZZTIME)
	GO=$(GO) ci/fuzz.sh FuzzParsePolicy ./policies $(FUZZTIME)
	GO=$(GO) ci/fuzz.sh FuzzJournal ./runner $(FUZZTIME)
	GO=$(GO) ci/fuzz.sh FuzzDecodeResponse ./integrations/victoriametrics $(FUZZTIME)
	GO=$(GO) ci/fuzz.sh FuzzReadRecording ./integrations/victoriametrics $(FUZZTIME)

# The targets whose input comes from outside (the metrics store's answers,
# recordings, the journal in a shared store), each for FUZZLONG, side by
# side (one worker each), so the whole takes FUZZLONG.
fuzz-long:
	@fail=0; pids=; \
	for t in 'FuzzDecodeResponse ./integrations/victoriametrics' 'FuzzReadRecording ./integrations/victoriametrics' 'FuzzJournal ./runner'; do \
		set -- $$t; \
		GO=$(GO) ci/fuzz.sh $$1 $$2 $(FUZZLONG) -parallel=1 > /tmp/rollguard-fuzz-$$1.log 2>&1 & pids="$$pids $$!"; \
	done; \
	for p in $$pids; do wait $$p || fail=1; done; \
	for t in FuzzDecodeResponse FuzzReadRecording FuzzJournal; do echo "== $$t"; tail -n 3 /tmp/rollguard-fuzz-$$t.log; done; \
	exit $$fail

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
