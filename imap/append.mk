# imap/append: the one path by which messages enter the store (rights,
# quota, single-instance delivery), its tests and the store benchmark.

imap_libimap_a_SOURCES += \
	imap/append.c imap/append.h

CUNIT_TESTS += \
	cunit/append.testc \
	cunit/mailbox_crash.testc

# storebench: append and open/read figures of the mail store (prints a
# table; not a test).
noinst_PROGRAMS += tools/bench/storebench
tools_bench_storebench_SOURCES = tools/bench/storebench.c
tools_bench_storebench_LDADD = imap/libimap.a $(LIB_LIBS)
