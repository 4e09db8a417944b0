# perl/: cyradm and sieveshell, the admin shells, written in Perl on
# Debian's modules (Mail::IMAPClient, Term::ReadLine, IO::Socket::SSL).
# The sources run as they are from the source tree (the tests do that);
# the installed copies get the interpreter named by PERL.

PERL = /usr/bin/perl

bin_SCRIPTS += perl/cyradm perl/sieveshell
EXTRA_DIST += perl/cyradm.pl perl/sieveshell.pl
CLEANFILES += perl/cyradm perl/sieveshell

perl/cyradm: $(srcdir)/perl/cyradm.pl
	@mkdir -p perl
	$(AM_V_GEN)sed -e '1s|^#!.*|#!$(PERL)|' \
	    $(srcdir)/perl/cyradm.pl > $@.tmp && chmod +x $@.tmp && mv $@.tmp $@

perl/sieveshell: $(srcdir)/perl/sieveshell.pl
	@mkdir -p perl
	$(AM_V_GEN)sed -e '1s|^#!.*|#!$(PERL)|' \
	    $(srcdir)/perl/sieveshell.pl > $@.tmp && chmod +x $@.tmp && \
	    mv $@.tmp $@
