# sieve/: the Sieve language (RFC 5228 and extensions): lexer, parser,
# bytecode compiler, interpreter, and sievec.

noinst_LIBRARIES += sieve/libsieve.a
sieve_libsieve_a_SOURCES = \
	sieve/sieve.h sieve/sieve_int.h sieve/sieve_interp.h \
	sieve/sieve_parse.c \
	sieve/sieve_compile.c \
	sieve/sieve_match.c \
	sieve/sieve_interp.c \
	sieve/sieve_eval.c \
	sieve/sieve_actions.c

sbin_PROGRAMS += sieve/sievec
sieve_sievec_SOURCES = sieve/sievec.c
sieve_sievec_LDADD = sieve/libsieve.a $(LIB_LIBS)

CUNIT_TESTS += cunit/sieve_parse.testc cunit/sieve_interp.testc
CUNIT_EXTRA_LIBS += sieve/libsieve.a
