# Wardwatch. Two commands matter: `make run` and `make test`. Each installs what it needs
# (Debian/Ubuntu packages via apt-get when missing, npm packages, the UI build, a Python venv
# for the interop and window tests) and is safe to run again.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
export PATH := $(HOME)/.cargo/bin:$(PATH)
export CARGO_TERM_COLOR ?= never

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv
PY := $(CURDIR)/$(VENV)/bin/python

# Build: Tauri 2 on Linux links WebKitGTK 4.1 and GTK 3; ALSA for the alarm tones.
APT_BUILD := build-essential pkg-config libwebkit2gtk-4.1-dev libasound2-dev
# Run and test: clients nobody here wrote, the virtual display, the WebDriver for the window,
# a private D-Bus session bus and monitor (OS notification tests), Mosquitto as the hospital
# core in the sync tests (started by the tests on a free loopback port, never as a service),
# openssl for the certificates those tests make, GNOME Keyring and keyutils as the real
# credential stores of the upstream-password tests, sqlite3 for counts made independently
# of the station (the alarm statistics test).
APT_TEST := mosquitto-clients xvfb xauth x11-utils webkit2gtk-driver python3-venv \
  dbus-daemon dbus-bin mosquitto openssl gnome-keyring keyutils sqlite3 rabbitmq-server
# Tests play alarm tones into ALSA's null sink: a working audio device, and silence on a
# developer's machine. Tests that check the tone capture it with their own configuration.
TEST_ALSA := $(CURDIR)/tests/fixtures/asound-null.conf
APT_NODE := nodejs npm

.PHONY: help deps deps-apt deps-node deps-py deps-tools deps-package ui build run test lint licenses audit test-audit test-rust test-ui test-e2e test-fuzz check-core sbom package package-build package-test test-package drill soak bench clean

help:
	@echo "make run      start the station with a simulated 16-bed ward (window if a display, else headless)"
	@echo "make test     every test: lint, Rust unit and system tests, UI unit tests, end-to-end window test"
	@echo "make drill    fault drills (the station killed under load); results into docs/DRILLS.md"
	@echo "make soak     HOURS=4: the station under a full ward and faults for hours; docs/BENCHMARKS.md"
	@echo "make bench    benchmarks in release builds; results into docs/BENCHMARKS.md"
	@echo "make package  the .deb and the MSI with their bills of materials (target/package), then"
	@echo "              installs, upgrades and removes both (root: a Debian root, Wine)"

# Install only what is missing, so a machine that has everything never calls apt-get.
# $(call apt_ensure,PACKAGES)
define apt_ensure
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing $(APT_NODE)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	  if systemctl is-active --quiet mosquitto 2>/dev/null; then \
	    echo "stopping the mosquitto service Debian started: make run needs 127.0.0.1:1883"; \
	    $(SUDO) systemctl disable --now mosquitto; \
	  fi; \
	fi
endef

deps-apt:
	$(call apt_ensure,$(APT_BUILD) $(APT_TEST))

# `npm install`, not `npm ci`: the npm 11 here records no entries for other platforms'
# optional packages (rollup, tauri-cli binaries) and its `npm ci` then rejects its own
# lockfile. `npm install` still installs the locked versions.
ui/node_modules/.stamp: ui/package.json ui/package-lock.json
	cd ui && npm install --no-audit --no-fund
	touch $@

# MQTT.js for the broker's interop tests.
tests/js/node_modules/.stamp: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm install --no-audit --no-fund
	touch $@

deps-node: deps-apt ui/node_modules/.stamp tests/js/node_modules/.stamp

$(VENV)/.stamp: tests/py/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/py/requirements.txt
	touch $@

deps-py: deps-apt $(VENV)/.stamp

# tauri-driver drives the real window through WebKitWebDriver. Pinned to 2.x: the newest on
# crates.io is a 3.0 alpha.
deps-tools:
	@command -v tauri-driver >/dev/null || cargo install --locked tauri-driver --version '^2'
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	@command -v cargo-deny >/dev/null || cargo install --locked cargo-deny

deps: deps-apt deps-node deps-py deps-tools

ui: deps-node
	cd ui && npm run build

# The desktop binary embeds ui/dist, so the UI is built first.
build: ui
	cargo build --workspace --all-targets

# The simulated ward is a feature: `make run`, the tests and the benchmarks turn it on (the
# same set as the workspace build, so switching between them rebuilds nothing); the shipped
# station (`make package`) has no simulator.
SIM_FEATURES := --features wardwatch-app/sim,ward-cli/sim

# Extra station flags, e.g. ARGS='--scenario "bed 3 desaturates to 78 % at 20 s"'.
ARGS ?=
run: deps-apt ui
	cargo build -p wardwatch-app -p ward-cli $(SIM_FEATURES)
	@if [ -n "$${DISPLAY:-}" ] && xdpyinfo >/dev/null 2>&1; then \
	  echo "Opening the station window (broker on 127.0.0.1:1883, 16 simulated beds)"; \
	  exec target/debug/wardwatch-station --sim-beds 16 --demo $(ARGS); \
	else \
	  echo "No display: running headless (broker on 127.0.0.1:1883, 16 simulated beds). Ctrl-C stops."; \
	  exec target/debug/wardwatch run --sim-beds 16 --demo $(ARGS); \
	fi

lint: ui
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/check-layering.sh
	scripts/check-generated-types.sh
	cd ui && npm run typecheck

check-core:
	scripts/check-core-no-tauri.sh

# Every crate's licence, for the Linux and the Windows build, against the list in deny.toml.
licenses: deps-tools
	cargo deny check licenses

# Known advisories (RustSec) for the crates of both builds, from a local copy of the advisory
# database (no fetch; ADVISORY_DB). Accepted findings, each with its reason, are in
# .cargo/audit.toml and docs/SECURITY.md.
ADVISORY_DB ?= ../shared/data/rustsec-advisory-db
audit:
	@command -v cargo-audit >/dev/null || cargo install --locked cargo-audit
	cargo audit --db $(ADVISORY_DB) --no-fetch --stale

# In `make test` where the advisory database is at hand (it is not in this repository and
# cannot be fetched here); said plainly when it is not.
test-audit:
	@if [ -d "$(ADVISORY_DB)/crates" ]; then $(MAKE) --no-print-directory audit; \
	else echo "make test: no advisory database at $(ADVISORY_DB); known advisories not checked (make audit ADVISORY_DB=...)"; fi

test-ui: deps-node
	cd ui && npm test

test-rust: build deps-py
	WARDWATCH_PYTHON=$(PY) ALSA_CONFIG_PATH=$(TEST_ALSA) cargo test --workspace

test-e2e: build deps-py deps-tools
	ALSA_CONFIG_PATH=$(TEST_ALSA) $(PY) -m pytest -v tests/e2e

test: deps lint check-core licenses test-audit test-ui test-rust test-fuzz test-e2e
	@echo "make test: all suites passed"

# Short fuzz runs (cargo-fuzz, nightly, AddressSanitizer) of the broker's packet decoder,
# seeded with valid packets, of the connection machine fed packet sequences with its
# invariants checked, and of the HL7 decode path (MLLP, ER7, ADT, ACK) seeded with ADT messages; any crash fails the build and leaves its input in fuzz/artifacts/NAME.
# Longer runs: make test-fuzz FUZZ_SECONDS=3600 (each target).
FUZZ_SECONDS ?= 30
test-fuzz: deps-tools
	mkdir -p fuzz/corpus/decode fuzz/corpus/sequence fuzz/corpus/hl7
	cd fuzz && cargo +nightly fuzz run decode corpus/decode seeds/decode -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048
	cd fuzz && cargo +nightly fuzz run sequence corpus/sequence -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048
	cd fuzz && cargo +nightly fuzz run hl7 corpus/hl7 seeds/hl7 -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048

# Drills: long fault runs, not in `make test`; each writes its section of docs/DRILLS.md.
# DRILL_KILLS (20) SIGKILLs at random moments under 64-bed load, seed DRILL_SEED.
DRILL_KILLS ?= 20
drill: build deps-py
	DRILL_KILLS=$(DRILL_KILLS) WARDWATCH_DRILL_OUT=$(CURDIR)/docs/DRILLS.md WARDWATCH_PYTHON=$(PY) \
	  ALSA_CONFIG_PATH=$(TEST_ALSA) cargo test --test system drills:: -- --ignored --nocapture --test-threads 1

# Soak: the whole station (release build) for HOURS with 64 beds (63 simulated, one probe
# alarming once a minute and acknowledged by a scripted nurse at a peer station) and faults
# (devices dropping with wills, bad payloads, a hospital-core outage every 20 minutes), sampled
# every minute into docs/soak.csv and docs/soak.png, the verdict into docs/BENCHMARKS.md. Fails
# on any loss, growth in memory or open files, missed alarm or acknowledgement not applied.
# Needs Mosquitto (the core).
HOURS ?= 4
soak: deps-apt
	cargo build --release -p ward-cli --features ward-cli/sim
	RUST_LOG=warn ALSA_CONFIG_PATH=$(TEST_ALSA) target/release/wardwatch bench soak --hours $(HOURS) \
	  --csv docs/soak.csv --chart docs/soak.png --out docs/BENCHMARKS.md

# Benchmarks, in release builds; results (with ratios) are written into docs/BENCHMARKS.md.
# The ward run takes 10 minutes (and 10 more for Mosquitto on the same ward) and the 72 h
# database about 20 GB of temporary disk; the frame times use the debug window build (the page
# is the same code) under Xvfb. The broker comparison pins the load generator to core 0 (each
# broker runs on core 1) when the machine has two cores or more.
PIN_LOADGEN := $(shell [ -x /usr/bin/taskset ] && [ $$(nproc) -ge 2 ] && echo taskset -c 0)
bench: deps-apt deps-py deps-tools build
	cargo build --release -p ward-cli --features ward-cli/sim
	RUST_LOG=warn $(PIN_LOADGEN) target/release/wardwatch bench broker --out docs/BENCHMARKS.md
	RUST_LOG=warn ALSA_CONFIG_PATH=$(TEST_ALSA) target/release/wardwatch bench alarm-latency --out docs/BENCHMARKS.md
	RUST_LOG=warn ALSA_CONFIG_PATH=$(TEST_ALSA) target/release/wardwatch bench ward --out docs/BENCHMARKS.md
	RUST_LOG=warn target/release/wardwatch bench queries --out docs/BENCHMARKS.md
	$(PY) scripts/ack-latency.py --station target/release/wardwatch --out docs/BENCHMARKS.md
	ALSA_CONFIG_PATH=$(TEST_ALSA) $(PY) tests/e2e/bench_frames.py --out docs/BENCHMARKS.md

# Packages for hospital IT (installer/README.md): the .deb (desktop program, headless service,
# maintainer scripts; dpkg-deb) and the MSI (the station cross-built for Windows with Debian's
# mingw-w64, wixl), each with CycloneDX bills of materials, into target/package/. No
# simulator in either.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
WIN_TARGET := x86_64-pc-windows-gnu
PKG_DIR := target/package
APT_PACKAGE := dpkg-dev lintian gcc-mingw-w64-x86-64 msitools wixl
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER := x86_64-w64-mingw32-gcc

deps-package: deps-apt deps-node
	$(call apt_ensure,$(APT_PACKAGE))
	@rustup target list --installed | grep -qx $(WIN_TARGET) || rustup target add $(WIN_TARGET)
	@command -v cargo-cyclonedx >/dev/null || cargo install --locked cargo-cyclonedx

# Bills of materials: the Rust crates of the shipped program, per target (the Windows build
# has other crates than the Linux one), and the npm packages the window is built from.
SBOM_RUST = cargo cyclonedx -q --format json --spec-version 1.5 --no-build-deps --override-filename sbom-rust.cdx
CYCLONEDX_NPM := @cyclonedx/cyclonedx-npm@6
sbom: deps-package
	rm -rf $(PKG_DIR)/sbom && mkdir -p $(PKG_DIR)/sbom/linux $(PKG_DIR)/sbom/windows
	@# cargo-cyclonedx writes one file beside each workspace member's manifest; the shipped
	@# program is wardwatch-app (src-tauri), which depends on every crate it contains.
	$(SBOM_RUST) --target x86_64-unknown-linux-gnu
	mv src-tauri/sbom-rust.cdx.json $(PKG_DIR)/sbom/linux/
	$(SBOM_RUST) --target $(WIN_TARGET)
	mv src-tauri/sbom-rust.cdx.json $(PKG_DIR)/sbom/windows/
	find . -name sbom-rust.cdx.json -not -path './target/*' -delete
	@# The window's npm packages as shipped (no dev tools): the lockfile's tree.
	cd ui && npm exec --yes --package=$(CYCLONEDX_NPM) -- cyclonedx-npm --omit dev --spec-version 1.5 \
	  --output-format JSON --output-file ../$(PKG_DIR)/sbom/linux/sbom-ui.cdx.json
	cp $(PKG_DIR)/sbom/linux/sbom-ui.cdx.json $(PKG_DIR)/sbom/windows/

# `make package` builds both and then tests them (package-test); `make test-package` is the same.
package: package-build package-test
test-package: package

package-build: deps-package ui sbom
	cargo build --release -p wardwatch-app --features tauri/custom-protocol
	cargo build --release --target $(WIN_TARGET) -p wardwatch-app --features tauri/custom-protocol
	installer/build-deb.sh $(VERSION) target/release/wardwatch-station $(PKG_DIR) $(PKG_DIR)/sbom/linux
	installer/build-msi.sh $(VERSION) target/$(WIN_TARGET)/release/wardwatch-station.exe $(PKG_DIR) $(PKG_DIR)/sbom/windows
	cp $(PKG_DIR)/sbom/linux/sbom-rust.cdx.json $(PKG_DIR)/wardwatch_$(VERSION)_sbom-rust-linux.cdx.json
	cp $(PKG_DIR)/sbom/windows/sbom-rust.cdx.json $(PKG_DIR)/Wardwatch-$(VERSION)_sbom-rust-windows.cdx.json
	cp $(PKG_DIR)/sbom/linux/sbom-ui.cdx.json $(PKG_DIR)/wardwatch_$(VERSION)_sbom-ui.cdx.json
	@ls -1 $(PKG_DIR)/*.deb $(PKG_DIR)/*.msi $(PKG_DIR)/*.cdx.json

# The packages installed, upgraded and removed as IT would (as root: a throwaway Debian root by
# mmdebstrap, chroot and mounts; a throwaway Wine prefix). The upgrade goes to the next patch
# version, built from the same programs into target/package-test/, never beside the real
# packages. Not in `make test`: it needs root, a release and a Windows build and a Debian mirror.
NEXT_VERSION := $(shell echo $(VERSION) | awk -F. '{ print $$1"."$$2"."$$3+1 }')
PKG_TEST_DIR := target/package-test
APT_PACKAGE_TEST := mmdebstrap wine64 mosquitto-clients sqlite3
package-test: deps-py
	$(call apt_ensure,$(APT_PACKAGE_TEST))
	rm -rf $(PKG_TEST_DIR)/pkgs && mkdir -p $(PKG_TEST_DIR)/pkgs
	cp $(PKG_DIR)/wardwatch_$(VERSION)_amd64.deb $(PKG_DIR)/Wardwatch-$(VERSION)-x64.msi $(PKG_TEST_DIR)/pkgs/
	installer/build-deb.sh $(NEXT_VERSION) target/release/wardwatch-station $(PKG_TEST_DIR)/pkgs $(PKG_DIR)/sbom/linux
	installer/build-msi.sh $(NEXT_VERSION) target/$(WIN_TARGET)/release/wardwatch-station.exe $(PKG_TEST_DIR)/pkgs $(PKG_DIR)/sbom/windows
	$(SUDO) env PACKAGE_DIR=$(PKG_TEST_DIR)/pkgs PREV_VERSION=$(VERSION) VERSION=$(NEXT_VERSION) \
	  ROOTFS_CACHE=$(PKG_TEST_DIR)/bookworm.tar $(PY) -m pytest -v -s tests/package 2>&1 | tee $(PKG_TEST_DIR)/test-package.log

clean:
	cargo clean
	rm -rf ui/dist ui/node_modules $(VENV) test-artifacts
