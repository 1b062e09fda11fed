# policyd - Postfix policy delegation daemon.
#
#   make            build policyd/policyd
#   make run        private redis-server + policyd on 127.0.0.1:10040 (rules/policyd.conf)
#   make test       install what is missing, build with -Werror, run every test,
#                   then again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make install    PREFIX=/usr/local DESTDIR= (SYSCONFDIR: /etc for PREFIX=/usr,
#                   else $(PREFIX)/etc); installs the release build (build/)
#   make deb        Debian package in build/deb/ (contrib/debian)
#   make clean

PREFIX  ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
# GNU/Debian convention: the configuration of a PREFIX=/usr install is in /etc
ifeq ($(patsubst %/,%,$(PREFIX)),/usr)
SYSCONFDIR ?= /etc
else
SYSCONFDIR ?= $(PREFIX)/etc
endif
CC      ?= cc
VERSION  = 0.1.0

WARN     = -Wall -Wextra -Wshadow -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 $(WARN) -D_GNU_SOURCE -DPOLICYD_VERSION=\"$(VERSION)\"
LDLIBS   = -levent -lhiredis -lconfig -lpsl -lpq -lmariadb
BUILD   ?= build
# the release build: the only one copied to policyd/ and installed; other
# build directories (build-asan, ...) keep their binaries to themselves
RELEASE  = build

# every policyd/*.c is part of the daemon; the command-line tool's own
# files are policyd/ctl/*.c
SRCS = $(notdir $(wildcard policyd/*.c))
OBJS = $(SRCS:%.c=$(BUILD)/%.o) $(BUILD)/scripts.o
CTL_SRCS = $(notdir $(wildcard policyd/ctl/*.c))
LUA  = $(sort $(wildcard policyd/scripts/*.lua))
# objects of the daemon without main() and without hiredis/libevent I/O
STORE_OBJS = $(filter $(BUILD)/store.o $(BUILD)/store_%.o,$(OBJS))
CORE_OBJS = $(filter-out $(BUILD)/main.o $(BUILD)/conn.o $(BUILD)/listener.o $(BUILD)/metrics.o \
	$(STORE_OBJS),$(OBJS))

# unit tests: name -> the modules they link
UNIT_TESTS = proto_test addr_test maps_test action_test config_test
UNIT_proto_test  = proto.o
UNIT_addr_test   = addr.o
UNIT_maps_test   = maps.o addr.o
UNIT_action_test = action.o
UNIT_config_test = $(notdir $(CORE_OBJS)) store_stub.o
UNIT_TESTS += sender_test relocated_test
UNIT_TESTS += ratelimit_test
UNIT_TESTS += cluster_test
UNIT_TESTS += spf_test
UNIT_spf_test = spf.o dnsbl.o resolver.o addr.o log.o
UNIT_TESTS += sqlcf_test mapkeys_test log_test
UNIT_log_test = log.o
UNIT_sqlcf_test = sqlcf.o
UNIT_mapkeys_test = mapkeys.o maps.o addr.o
UNIT_cluster_test = slot.o
UNIT_TESTS += store_value_test
UNIT_store_value_test = store_value.o
UNIT_TESTS += ctl_test
UNIT_ctl_test = ctl/ask.o ctl/client.o proto.o log.o
UNIT_ratelimit_test = $(notdir $(CORE_OBJS)) store_stub.o
UNIT_sender_test    = $(notdir $(CORE_OBJS)) store_stub.o
UNIT_relocated_test = $(notdir $(CORE_OBJS)) store_stub.o

DEB_BUILD = gcc make pkg-config libevent-dev libhiredis-dev libconfig-dev libpsl-dev \
            libpq-dev libmariadb-dev
DEB_TEST  = redis-server redis-tools python3 postfix sasl2-bin libsasl2-modules \
            libsasl2-modules-db swaks iproute2 procps netcat-openbsd man-db \
            publicsuffix python3-dnslib python3-spf \
            postgresql postgresql-client mariadb-server mariadb-client
# the systemd unit's checks: systemd-analyze verify / syscall-filter, strace
DEB_TEST += systemd strace
# greylisting across hosts whose clocks differ (test_defects_checks)
DEB_TEST += faketime
# make deb and tests/integration/test_deb.py (debootstrap: its scratch root)
DEB_PKG   = dpkg-dev debhelper lintian debootstrap

BINS = policyd policyctl
ifeq ($(BUILD),$(RELEASE))
all: $(BINS:%=policyd/%)
else
all: $(BINS:%=$(BUILD)/%)
endif

# policyctl: its own files (policyd/ctl/) and the daemon's configuration
# loader, rules, checks and scripts (CORE_OBJS) and its state layer
# (STORE_OBJS: Redis standalone, Sentinel and Cluster as in the daemon)
CTL_OBJS = $(CTL_SRCS:%.c=$(BUILD)/ctl/%.o) $(CORE_OBJS) $(STORE_OBJS)

# policyd/policyd and policyd/policyctl are always copies of the release
# build (compared, not dated: a copy left by an older Makefile is replaced)
policyd/policyctl: $(RELEASE)/policyctl FORCE
	@cmp -s $< $@ || cp $< $@

$(BUILD)/policyctl: $(CTL_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CTL_OBJS) $(LDLIBS)

policyd/policyd: $(RELEASE)/policyd FORCE
	@cmp -s $< $@ || cp $< $@

$(BUILD)/policyd: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/%.o: policyd/%.c policyd/*.h | $(BUILD)
	$(CC) $(CFLAGS) $(CPPFLAGS) -Ipolicyd -c -o $@ $<

$(BUILD)/ctl/%.o: policyd/ctl/%.c policyd/ctl/*.h policyd/*.h | $(BUILD)/ctl
	$(CC) $(CFLAGS) $(CPPFLAGS) -Ipolicyd -c -o $@ $<

$(BUILD)/scripts.c: policyd/gen-scripts.sh $(LUA) | $(BUILD)
	sh policyd/gen-scripts.sh $(LUA) > $@

$(BUILD)/scripts.o: $(BUILD)/scripts.c
	$(CC) $(CFLAGS) -Ipolicyd -c -o $@ $<

$(BUILD)/store_stub.o: tests/unit/store_stub.c policyd/*.h | $(BUILD)
	$(CC) $(CFLAGS) -Ipolicyd -c -o $@ $<

define UNIT_RULE
$$(BUILD)/$(1): tests/unit/$(1).c $$(wildcard tests/unit/*.h) $$(wildcard policyd/*.h) \
		$$(addprefix $$(BUILD)/,$$(UNIT_$(1))) | $$(BUILD)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -Ipolicyd -Itests/unit -o $$@ $$< \
		$$(addprefix $$(BUILD)/,$$(UNIT_$(1))) $$(LDLIBS)
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call UNIT_RULE,$(t))))

unit: $(UNIT_TESTS:%=$(BUILD)/%)

$(BUILD):
	mkdir -p $(BUILD)

$(BUILD)/ctl:
	mkdir -p $(BUILD)/ctl

# Debian packages: installed only when missing (CI machines start bare).
deps:
	@sh tests/install-deps.sh $(DEB_BUILD)
deps-test:
	@sh tests/install-deps.sh $(DEB_BUILD) $(DEB_TEST)

run: deps
	@$(MAKE) --no-print-directory all
	@command -v redis-server >/dev/null || sh tests/install-deps.sh redis-server
	sh contrib/run-demo.sh

test: deps-test
	sh tests/run-tests.sh

# Benchmarks (not part of make test): policyd against postgrey, postfwd and
# the one-Redis-round-trip reference server, see tests/bench/README.md.
# dns.sh's name server (dnslib) and sqlmaps.py's PostgreSQL; bench.sh
# installs the peers (postgrey, postfwd) itself
DEB_BENCH = redis-server redis-tools python3-dnslib postgresql postgresql-client
bench: deps
	@sh tests/install-deps.sh $(DEB_BENCH)
	@$(MAKE) --no-print-directory all
	bash tests/bench/bench.sh
	bash tests/bench/scaleout.sh
	bash tests/bench/dns.sh
	python3 tests/bench/sqlmaps.py

# libFuzzer targets (clang): FUZZ_SECONDS per target (default 60).
fuzz: deps
	sh tests/fuzz/fuzz.sh

# A long mixed load with Redis restarts, outside make test.
soak: deps
	@$(MAKE) --no-print-directory all
	sh tests/soak/soak.sh

# Installs binaries, man pages and the sample configuration; an existing
# configuration or map file is never overwritten.
ifneq ($(BUILD),$(RELEASE))
install:
	@echo "make install: installs the release build; run it without BUILD=$(BUILD)" >&2
	@exit 1
else
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)/policyd \
		$(DESTDIR)$(PREFIX)/share/policyd
	install -m 0755 policyd/policyd $(DESTDIR)$(SBINDIR)/policyd
	[ ! -f policyd/policyctl ] || install -m 0755 policyd/policyctl $(DESTDIR)$(SBINDIR)/policyctl
	for m in man/*.8; do install -m 0644 $$m $(DESTDIR)$(MANDIR)/man8/; done
	for m in man/*.5; do install -m 0644 $$m $(DESTDIR)$(MANDIR)/man5/; done
	for f in rules/*; do \
		t=$(DESTDIR)$(SYSCONFDIR)/policyd/$$(basename $$f); \
		[ -e $$t ] || install -m 0644 $$f $$t; \
	done
	cp -r contrib/* $(DESTDIR)$(PREFIX)/share/policyd/
	sed -i -e 's|/usr/local/sbin|$(SBINDIR)|g' -e 's|/usr/local/etc|$(SYSCONFDIR)|g' \
		$(DESTDIR)$(PREFIX)/share/policyd/policyd.service
endif

# The Debian package: policyd_$(VERSION)_ARCH.deb in build/deb/, built from
# a copy of the tree with contrib/debian as debian/ (contrib/debian/make-deb.sh).
deb:
	@sh tests/install-deps.sh $(DEB_BUILD) $(DEB_PKG)
	sh contrib/debian/make-deb.sh build/deb

clean:
	rm -rf build build-asan policyd/policyd policyd/policyctl

FORCE:

.PHONY: all unit deps deps-test run test bench fuzz soak install deb clean FORCE
