# The everyday commands; see README.md.
SHELL := /bin/bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
REDIS_ADDR ?= 127.0.0.1:6379

.PHONY: build test faults bench pushbench lint fuzz run emulators redis clean

build:
	$(GO) build -o bin/ ./cmd/...

# The test suite needs a Redis; it starts one (without persistence) when none answers.
test: redis
	$(GO) test -race -count=1 ./...

# Fault tests against real processes (kill -9, restarts, outages); prints a report table.
faults: redis
	@report=$${FAULTS_REPORT:-$(CURDIR)/faults-report.md}; \
	FAULTS_REPORT=$$report $(GO) test -race -count=1 -tags faults ./internal/faults; status=$$?; \
	[ -f $$report ] && cat $$report; exit $$status

bench: redis
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# The push benchmark against pushsyncd processes and the bare-client ceiling
# (docs/performance.md); PUSHBENCH_FLAGS passes flags, e.g. -duration 10s.
pushbench: build redis
	bin/pushbench $(PUSHBENCH_FLAGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Short fuzzing runs of every parser that takes outside input.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=30s ./sync/event
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=30s ./config
	$(GO) test -run='^$$' -fuzz=FuzzParseAuthorization -fuzztime=30s ./sync/api/sigv4
	$(GO) test -run='^$$' -fuzz=FuzzVerify -fuzztime=30s ./sync/api/sigv4
	$(GO) test -run='^$$' -fuzz=FuzzRequest -fuzztime=30s ./sync/api

# The whole system on this machine: embedded NATS, local Redis, APNs and FCM emulators.
run:
	$(GO) run ./cmd/pushsyncd dev

emulators:
	$(GO) run ./cmd/pushemu

redis:
	@if redis-cli -h $(word 1,$(subst :, ,$(REDIS_ADDR))) -p $(word 2,$(subst :, ,$(REDIS_ADDR))) ping >/dev/null 2>&1; then :; \
	elif command -v redis-server >/dev/null 2>&1; then \
		echo "starting redis-server on $(REDIS_ADDR)"; \
		redis-server --daemonize yes --bind $(word 1,$(subst :, ,$(REDIS_ADDR))) --port $(word 2,$(subst :, ,$(REDIS_ADDR))) --save "" --appendonly no; \
		for i in 1 2 3 4 5 6 7 8 9 10; do redis-cli -p $(word 2,$(subst :, ,$(REDIS_ADDR))) ping >/dev/null 2>&1 && break; sleep 0.5; done; \
	else echo "no Redis at $(REDIS_ADDR) and redis-server is not installed (Debian: apt-get install redis-server)"; exit 1; fi

clean:
	rm -rf bin pushemu-creds faults-report.md pushbench.json
