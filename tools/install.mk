# tools/install.mk: what `make install` adds beside the programs and man
# pages: the sample imapd.conf and cyrus.conf in $(docdir)/examples and,
# when configure was given --with-systemdsystemunitdir, the systemd unit
# of the master.  The cyrus.conf sample and the unit name installed
# programs, so their @libexecdir@, @sbindir@ and @sysconfdir@ are filled
# in at build time with the final (expanded) directories.
# `make install-dirs` prints the installation directories, for
# tests/test_install.py.

examplesdir = $(docdir)/examples
examples_DATA = tools/examples/imapd.conf tools/examples/cyrus.conf
CLEANFILES += tools/examples/cyrus.conf tools/systemd/columba.service

if HAVE_SYSTEMDUNITDIR
systemdsystemunit_DATA = tools/systemd/columba.service
endif

INSTALL_SUBST = sed -e 's|@libexecdir[@]|$(libexecdir)|g' \
	-e 's|@sbindir[@]|$(sbindir)|g' \
	-e 's|@sysconfdir[@]|$(sysconfdir)|g'

tools/examples/cyrus.conf: $(srcdir)/tools/examples/cyrus.conf.in Makefile
	@mkdir -p tools/examples
	$(AM_V_GEN)$(INSTALL_SUBST) $(srcdir)/tools/examples/cyrus.conf.in \
	    > $@.tmp && mv $@.tmp $@

tools/systemd/columba.service: $(srcdir)/tools/systemd/columba.service.in \
	    Makefile
	@mkdir -p tools/systemd
	$(AM_V_GEN)$(INSTALL_SUBST) $(srcdir)/tools/systemd/columba.service.in \
	    > $@.tmp && mv $@.tmp $@

# The unit is built even when it is not installed, so that the tests
# can check it.
noinst_DATA = tools/systemd/columba.service

install-dirs:
	@echo "prefix=$(prefix)"
	@echo "bindir=$(bindir)"
	@echo "sbindir=$(sbindir)"
	@echo "libexecdir=$(libexecdir)"
	@echo "sysconfdir=$(sysconfdir)"
	@echo "mandir=$(mandir)"
	@echo "examplesdir=$(examplesdir)"
	@echo "systemdsystemunitdir=$(systemdsystemunitdir)"

.PHONY: install-dirs
