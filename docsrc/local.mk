# docsrc/: the administrator's documentation, built with Sphinx.
#   make doc        HTML into doc/html, man pages into doc/man
#   make doc-html   only the HTML
#   make doc-man    only the man pages
# With sphinx-build found by configure, `make install` also installs the
# man pages into $(mandir)/man<section>.  SPHINXOPTS=-W turns Sphinx
# warnings into errors (tests/test_docs.py builds that way).
# The imapd.conf reference page is generated: `make imapd-conf-doc`
# (lib/config.mk).

DOC_INPUTS = $(srcdir)/docsrc/conf.py $(srcdir)/docsrc/index.rst \
	$(srcdir)/docsrc/quickstart.rst \
	$(wildcard $(srcdir)/docsrc/guide/*.rst) \
	$(wildcard $(srcdir)/docsrc/reference/*.rst) \
	$(wildcard $(srcdir)/docsrc/reference/man/*.rst)

EXTRA_DIST += docsrc/conf.py docsrc/index.rst docsrc/quickstart.rst \
	docsrc/guide docsrc/reference/index.rst \
	docsrc/reference/cyrus.conf.rst docsrc/reference/man

SPHINXOPTS = -q
SPHINX_RUN = $(SPHINX_BUILD) $(SPHINXOPTS)

# The programs the build installs, one per line: the list every man
# page check starts from (tests/test_docs.py).
doc-programs:
	@for p in $(libexec_PROGRAMS) $(sbin_PROGRAMS) $(bin_PROGRAMS) \
	    $(bin_SCRIPTS); do echo "$$p"; done

if HAVE_SPHINX
doc: doc-html doc-man

doc-html: doc/html.stamp
doc-man: doc/man.stamp

doc/html.stamp: $(DOC_INPUTS)
	@mkdir -p doc
	$(AM_V_GEN)$(SPHINX_RUN) -b html -d doc/doctrees-html $(srcdir)/docsrc doc/html
	@touch $@

doc/man.stamp: $(DOC_INPUTS)
	@mkdir -p doc
	$(AM_V_GEN)rm -rf doc/man && \
	    $(SPHINX_RUN) -b man -d doc/doctrees-man $(srcdir)/docsrc doc/man
	@touch $@

# Man pages are named <page>.<section>; each goes to man<section>.
install-data-local: install-doc-man
install-doc-man: doc/man.stamp
	@for f in doc/man/*.[1-9]; do \
	    sec=$${f##*.}; \
	    $(MKDIR_P) "$(DESTDIR)$(mandir)/man$$sec" && \
	    echo " $(INSTALL_DATA) $$f '$(DESTDIR)$(mandir)/man$$sec'" && \
	    $(INSTALL_DATA) "$$f" "$(DESTDIR)$(mandir)/man$$sec" || exit 1; \
	done

uninstall-local: uninstall-doc-man
uninstall-doc-man:
	@for f in doc/man/*.[1-9]; do \
	    [ -f "$$f" ] || continue; \
	    sec=$${f##*.}; \
	    rm -f "$(DESTDIR)$(mandir)/man$$sec/$${f##*/}"; \
	done

clean-local: clean-doc
clean-doc:
	rm -rf doc
else
doc doc-html doc-man:
	@echo "sphinx-build was not found by configure: install python3-sphinx" \
	    "(tools/deps.sh) and run configure again" >&2; exit 1
endif

.PHONY: doc doc-html doc-man doc-programs install-doc-man \
	uninstall-doc-man clean-doc
