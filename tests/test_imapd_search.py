"""End-to-end tests of imapd SEARCH (every RFC 9051 / RFC 3501 key,
charsets, decoded headers and bodies), ESEARCH, SEARCHRES, WITHIN,
MODSEQ, SAVEDATE and OBJECTID keys, SORT, ESORT, SORT=DISPLAY and
THREAD, against a real master on loopback, on a crafted mailbox."""

import base64
import hashlib
import imaplib
import os
import re
import shutil
import subprocess

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2"), reason="needs saslpasswd2 (sasl2-bin)")

SERVERNAME = "columba.test"
USER, PASSWORD = "carol", "secret"

# (message, flags, internal date).  Dates in the Date: header and the
# arrival dates differ in order on purpose (message 6 arrived first).
M1 = (b"From: Alice Example <alice@example.com>\r\n"
      b"To: bob@example.com\r\n"
      b"Cc: carol@example.com\r\n"
      b"Subject: Hello world\r\n"
      b"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m1@example.com>\r\n"
      b"\r\n"
      b"First body line\r\n"
      b"secret-alpha\r\n")
M2 = (b"From: \"Bob\" <bob@example.com>\r\n"
      b"To: alice@example.com\r\n"
      b"Subject: Re: Hello world\r\n"
      b"Date: Tue, 02 Jun 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m2@example.com>\r\n"
      b"In-Reply-To: <m1@example.com>\r\n"
      b"References: <m1@example.com>\r\n"
      b"MIME-Version: 1.0\r\n"
      b"Content-Type: text/plain; charset=utf-8\r\n"
      b"Content-Transfer-Encoding: base64\r\n"
      b"\r\n" + base64.encodebytes(b"base64 secret-beta text\r\n")
      .replace(b"\n", b"\r\n"))
M3 = (b"From: =?ISO-8859-1?Q?J=F6rg?= <jorg@example.de>\r\n"
      b"To: alice@example.com\r\n"
      b"Subject: =?UTF-8?B?w5xiZXJ3YWNodW5n?=\r\n"
      b"Date: Wed, 03 Jun 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m3@example.com>\r\n"
      b"MIME-Version: 1.0\r\n"
      b"Content-Type: text/plain; charset=ISO-8859-1\r\n"
      b"Content-Transfer-Encoding: quoted-printable\r\n"
      b"\r\n"
      b"Gr=FC=DFe aus M=FCn=\r\n"
      b"chen\r\n")
M4 = (b"From: dave@example.com\r\n"
      b"To: team@example.com\r\n"
      b"Subject: Fwd: Hello world\r\n"
      b"Date: Thu, 04 Jun 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m4@example.com>\r\n"
      b"References: <m1@example.com> <m2@example.com>\r\n"
      b"X-Priority: 1\r\n"
      b"MIME-Version: 1.0\r\n"
      b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
      b"\r\n"
      b"--b1\r\n"
      b"Content-Type: text/plain\r\n"
      b"\r\n"
      b"plain part text\r\n"
      b"--b1\r\n"
      b"Content-Type: text/html; charset=utf-8\r\n"
      b"Content-Transfer-Encoding: quoted-printable\r\n"
      b"\r\n"
      b"<p>html =E2=82=AC part</p>\r\n"
      b"--b1\r\n"
      b"Content-Type: application/octet-stream\r\n"
      b"Content-Transfer-Encoding: base64\r\n"
      b"\r\n" + base64.encodebytes(b"hidden-gamma").replace(b"\n", b"\r\n") +
      b"--b1--\r\n")
M5 = (b"From: zed@example.org\r\n"
      b"Subject: [list] Other topic\r\n"
      b"Date: Fri, 05 Jun 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m5@example.com>\r\n"
      b"\r\n" + b"filler line of text\r\n" * 200)
M6 = (b"From: Aaron <yan@example.org>\r\n"
      b"To: alice@example.com\r\n"
      b"Subject: Re: Other topic\r\n"
      b"Date: Sat, 06 Jun 2026 10:00:00 +0000\r\n"
      b"Message-ID: <m6@example.com>\r\n"
      b"\r\n"
      b"short\r\n")

MESSAGES = [
    (M1, r"(\Seen \Flagged)", '"01-Jun-2026 10:00:00 +0000"'),
    (M2, r"(\Answered)", '"02-Jun-2026 10:00:00 +0000"'),
    (M3, "()", '"03-Jun-2026 10:00:00 +0000"'),
    (M4, r"(\Draft $Important)", '"04-Jun-2026 10:00:00 +0000"'),
    (M5, r"(\Deleted)", '"05-Jun-2026 10:00:00 +0000"'),
    (M6, "()", '"31-May-2026 10:00:00 +0000"'),
]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    inst = Instance(services=[("imap", {"cmd": program("imap/imapd"),
                                        "listen": f"127.0.0.1:{port}"})],
                    name="imapd-search")
    sasldb = inst.path("sasldb2")
    subprocess.run(["saslpasswd2", "-c", "-p", "-f", sasldb,
                    "-u", SERVERNAME, USER],
                   input=PASSWORD.encode(), check=True)
    os.chmod(sasldb, 0o644)
    inst.options.update({
        "servername": SERVERNAME,
        "allowplaintext": "yes",
        "autocreate_quota": "100000",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port

    m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    m.login(USER, PASSWORD)
    for msg, flags, date in MESSAGES:
        typ, data = m.append("INBOX", flags, date, msg)
        assert typ == "OK", data
    m.create("Other")
    m.logout()
    yield inst
    inst.stop()
    inst.cleanup()


@pytest.fixture
def imap(server):
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    m.login(USER, PASSWORD)
    m.select("INBOX")
    yield m
    m.logout()


@pytest.fixture
def raw(server):
    c = server.connect(server.port, timeout=10)
    assert c.readline().startswith("* OK")
    assert run(c, f"a LOGIN {USER} {PASSWORD}")[1].startswith("a OK")
    assert run(c, "b SELECT INBOX")[1].startswith("b OK")
    yield c
    c.close()


def run(c, line):
    """Send a command; return (untagged lines, tagged line)."""
    tag = line.split(" ", 1)[0]
    c.send_line(line)
    lines = []
    while True:
        got = c.readline()
        if got.startswith(tag + " "):
            return lines, got
        lines.append(got)


def search(m, *criteria, charset=None, literal=None):
    if literal is not None:
        m.literal = literal
    typ, data = m.search(charset, *criteria)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def test_capabilities(imap):
    typ, data = imap.capability()
    caps = data[0].decode().split()
    for cap in ("ESEARCH", "SEARCHRES", "WITHIN", "SORT", "SORT=DISPLAY",
                "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"):
        assert cap in caps


def test_flag_keys(imap):
    assert search(imap, "ALL") == [1, 2, 3, 4, 5, 6]
    assert search(imap, "ANSWERED") == [2]
    assert search(imap, "UNANSWERED") == [1, 3, 4, 5, 6]
    assert search(imap, "DELETED") == [5]
    assert search(imap, "UNDELETED") == [1, 2, 3, 4, 6]
    assert search(imap, "DRAFT") == [4]
    assert search(imap, "UNDRAFT") == [1, 2, 3, 5, 6]
    assert search(imap, "FLAGGED") == [1]
    assert search(imap, "UNFLAGGED") == [2, 3, 4, 5, 6]
    assert search(imap, "SEEN") == [1]
    assert search(imap, "UNSEEN") == [2, 3, 4, 5, 6]
    assert search(imap, "KEYWORD", "$Important") == [4]
    assert search(imap, "UNKEYWORD", "$important") == [1, 2, 3, 5, 6]
    assert search(imap, "KEYWORD", "NoSuchKeyword") == []
    assert search(imap, "NEW") == []
    assert search(imap, "RECENT") == []
    assert search(imap, "OLD") == [1, 2, 3, 4, 5, 6]


def test_address_and_subject_keys(imap):
    assert search(imap, "FROM", "alice") == [1]
    assert search(imap, "FROM", "EXAMPLE.ORG") == [5, 6]
    assert search(imap, "TO", "alice@example.com") == [2, 3, 6]
    assert search(imap, "CC", "carol") == [1]
    assert search(imap, "BCC", "carol") == []
    assert search(imap, "SUBJECT", "\"hello WORLD\"") == [1, 2, 4]
    assert search(imap, "SUBJECT", '""') == [1, 2, 3, 4, 5, 6]
    # RFC 2047 words are decoded before matching, in any case.
    assert search(imap, "FROM", charset="UTF-8",
                  literal="jörg".encode()) == [3]
    assert search(imap, "SUBJECT", charset="UTF-8",
                  literal="überWACHUNG".encode()) == [3]
    assert search(imap, "SUBJECT", "berwachung") == [3]


def test_header_key(imap):
    assert search(imap, "HEADER", "Message-ID", "<m2@example.com>") == [2]
    assert search(imap, "HEADER", "References", '""') == [2, 4]
    assert search(imap, "HEADER", "X-Priority", "1") == [4]
    assert search(imap, "HEADER", "X-Missing", '""') == []
    assert search(imap, "HEADER", "subject", "other") == [5, 6]


def test_body_and_text_keys(imap):
    assert search(imap, "BODY", "secret-alpha") == [1]
    assert search(imap, "BODY", "SECRET-BETA") == [2]       # base64
    assert search(imap, "BODY", "\"plain part\"") == [4]        # multipart
    assert search(imap, "BODY", "html", "BODY", "part") == [4]
    assert search(imap, "BODY", "hidden-gamma") == []       # not text
    assert search(imap, "BODY", "hello") == []              # header only
    assert search(imap, "TEXT", "hello") == [1, 2, 4]
    assert search(imap, "TEXT", "carol@example") == [1]
    # Quoted-printable ISO-8859-1, with a soft line break.
    assert search(imap, "BODY", charset="UTF-8",
                  literal="MÜNCHEN".encode()) == [3]
    assert search(imap, "BODY", charset="UTF-8",
                  literal="grüsse".encode()) == [3]         # ß folds
    assert search(imap, "BODY", charset="ISO-8859-1",
                  literal="m\xfcnchen".encode("latin-1")) == [3]
    assert search(imap, "BODY", charset="UTF-8",
                  literal="€ part".encode()) == [4]
    assert search(imap, "CHARSET", "US-ASCII", "BODY", "short") == [6]


def test_badcharset(raw):
    lines, tagged = run(raw, "c SEARCH CHARSET X-NO-SUCH-CHARSET TEXT x")
    assert tagged == "c NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"
    assert lines == []
    _, tagged = run(raw, "d SORT (DATE) X-NOPE ALL")
    assert tagged.startswith("d NO [BADCHARSET")
    _, tagged = run(raw, "e THREAD REFERENCES X-NOPE ALL")
    assert tagged.startswith("e NO [BADCHARSET")
    lines, tagged = run(raw, "f SEARCH CHARSET windows-1252 BODY x")
    assert tagged.startswith("f OK")


def test_date_size_and_set_keys(imap):
    assert search(imap, "BEFORE", "03-Jun-2026") == [1, 2, 6]
    assert search(imap, "ON", "03-Jun-2026") == [3]
    assert search(imap, "SINCE", "03-Jun-2026") == [3, 4, 5]
    assert search(imap, "SENTBEFORE", "03-Jun-2026") == [1, 2]
    assert search(imap, "SENTON", "06-Jun-2026") == [6]
    assert search(imap, "SENTSINCE", "05-Jun-2026") == [5, 6]
    sizes = [len(m[0]) for m in MESSAGES]
    assert search(imap, "LARGER", str(len(M1))) == [
        i + 1 for i, n in enumerate(sizes) if n > len(M1)]
    assert search(imap, "SMALLER", str(len(M1))) == [
        i + 1 for i, n in enumerate(sizes) if n < len(M1)]
    assert search(imap, "2:4") == [2, 3, 4]
    assert search(imap, "5:*") == [5, 6]
    assert search(imap, "UID", "1,3,6") == [1, 3, 6]
    assert search(imap, "NOT", "UID", "2:5") == [1, 6]
    assert search(imap, "OR", "FLAGGED", "DRAFT") == [1, 4]
    assert search(imap, "(OR FLAGGED DRAFT)", "UNSEEN") == [4]
    assert search(imap, "NOT", "(OR FROM alice OR DELETED ANSWERED)") == [
        3, 4, 6]
    typ, data = imap.uid("SEARCH", None, "FROM", "bob")
    assert typ == "OK" and data[0].split() == [b"2"]


def test_within_savedate_and_objectid_keys(imap):
    assert search(imap, "OLDER", "1") == [1, 2, 3, 4, 5, 6]
    assert search(imap, "YOUNGER", "1") == []
    assert search(imap, "YOUNGER", "4000000000") == [1, 2, 3, 4, 5, 6]
    assert search(imap, "SAVEDATESUPPORTED") == [1, 2, 3, 4, 5, 6]
    assert search(imap, "SAVEDSINCE", "1-Jan-2020") == [1, 2, 3, 4, 5, 6]
    assert search(imap, "SAVEDBEFORE", "1-Jan-2020") == []
    emailid = "M" + hashlib.sha1(M3).hexdigest()[:24]
    assert search(imap, "EMAILID", emailid) == [3]
    assert search(imap, "EMAILID", "Mnope") == []
    assert search(imap, "THREADID", "T123") == []


def test_modseq_key(raw):
    lines, tagged = run(raw, "c SEARCH MODSEQ 1")
    assert tagged.startswith("c OK")
    # the first CONDSTORE enabling command while selected reports
    # HIGHESTMODSEQ first (RFC 7162 3.1)
    assert lines[0].startswith("* OK [HIGHESTMODSEQ "), lines
    m = re.fullmatch(r"\* SEARCH 1 2 3 4 5 6 \(MODSEQ (\d+)\)", lines[1])
    assert m, lines
    top = int(m.group(1))
    lines, _ = run(raw, f"d SEARCH MODSEQ {top}")
    assert lines[0].startswith("* SEARCH ") and "(MODSEQ %d)" % top in lines[0]
    lines, _ = run(raw, f"e SEARCH MODSEQ {top + 1}")
    assert lines == ["* SEARCH"]
    lines, tagged = run(raw, 'f SEARCH MODSEQ "/flags/\\\\draft" all 1 DRAFT')
    assert tagged.startswith("f OK") and lines[0].startswith("* SEARCH 4 (")
    _, tagged = run(raw, "g SEARCH MODSEQ x")
    assert tagged.startswith("g BAD")


def test_esearch(raw):
    lines, tagged = run(raw, "c SEARCH RETURN (MIN MAX COUNT ALL) UNDELETED")
    assert tagged.startswith("c OK")
    assert lines == ['* ESEARCH (TAG "c") MIN 1 MAX 6 COUNT 5 ALL 1:4,6']
    lines, _ = run(raw, "d UID SEARCH RETURN () FLAGGED")
    assert lines == ['* ESEARCH (TAG "d") UID ALL 1']
    lines, _ = run(raw, "e SEARCH RETURN (COUNT) KEYWORD nothing")
    assert lines == ['* ESEARCH (TAG "e") COUNT 0']
    lines, _ = run(raw, "f SEARCH RETURN (MIN) RECENT")
    assert lines == ['* ESEARCH (TAG "f")']
    _, tagged = run(raw, "g SEARCH RETURN (BOGUS) ALL")
    assert tagged.startswith("g BAD")
    _, tagged = run(raw, "h SEARCH RETURN MIN ALL")
    assert tagged.startswith("h BAD")
    _, tagged = run(raw, "i SEARCH RETURN (ALL)")
    assert tagged.startswith("i BAD")
    lines, _ = run(raw, "j SEARCH RETURN (COUNT) CHARSET UTF-8 DRAFT")
    assert lines == ['* ESEARCH (TAG "j") COUNT 1']
    # IMAP4rev2 has no SEARCH response: ESEARCH ALL is the default.
    assert run(raw, "k ENABLE IMAP4rev2")[1].startswith("k OK")
    lines, _ = run(raw, "l UID SEARCH FLAGGED")
    assert lines == ['* ESEARCH (TAG "l") UID ALL 1']
    lines, _ = run(raw, "m SEARCH RECENT")
    assert lines == ['* ESEARCH (TAG "m")']


def test_searchres(raw):
    # SAVE alone sends no result; "$" then selects it in later commands.
    lines, tagged = run(raw, "c SEARCH RETURN (SAVE) OR FLAGGED ANSWERED")
    assert tagged.startswith("c OK") and lines == []
    lines, tagged = run(raw, "d FETCH $ (UID)")
    assert tagged.startswith("d OK")
    assert lines == ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)"]
    lines, _ = run(raw, "e UID FETCH $ (UID)")
    assert lines == ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)"]
    lines, _ = run(raw, "f SEARCH $ SEEN")
    assert lines == ["* SEARCH 1"]
    lines, _ = run(raw, "g UID SEARCH NOT $")
    assert lines == ["* SEARCH 3 4 5 6"]
    _, tagged = run(raw, "h STORE $ +FLAGS (Saved)")
    assert tagged.startswith("h OK")
    lines, _ = run(raw, "i SEARCH KEYWORD Saved")
    assert lines == ["* SEARCH 1 2"]
    _, tagged = run(raw, "j COPY $ Other")
    assert tagged.startswith("j OK")
    _, tagged = run(raw, "k STORE $ -FLAGS (Saved)")
    assert tagged.startswith("k OK")
    # With MIN and MAX only, only those are saved; with ALL, all.
    lines, _ = run(raw, "l SEARCH RETURN (SAVE MIN MAX) UNDELETED")
    assert lines == ['* ESEARCH (TAG "l") MIN 1 MAX 6']
    lines, _ = run(raw, "m SEARCH $")
    assert lines == ["* SEARCH 1 6"]
    lines, _ = run(raw, "n SEARCH RETURN (SAVE ALL) 2:3")
    assert lines == ['* ESEARCH (TAG "n") ALL 2:3']
    lines, _ = run(raw, "o SEARCH $")
    assert lines == ["* SEARCH 2 3"]
    # A failed SEARCH ... SAVE empties the saved result.
    _, tagged = run(raw, "p SEARCH RETURN (SAVE) CHARSET X-NOPE BODY x")
    assert tagged.startswith("p NO")
    lines, _ = run(raw, "q SEARCH $")
    assert lines == ["* SEARCH"]
    # "$" is a whole set on its own, not a set element.
    _, tagged = run(raw, "r FETCH 1,$ (UID)")
    assert tagged.startswith("r BAD")


def test_searchres_reset_by_select(raw):
    run(raw, "c SEARCH RETURN (SAVE) ALL")
    assert run(raw, "d SELECT INBOX")[1].startswith("d OK")
    lines, _ = run(raw, "e SEARCH $")
    assert lines == ["* SEARCH"]


def test_hostile_search_input(raw):
    for cmd in ("SEARCH (FLAGGED", "SEARCH FLAGGED)", "SEARCH",
                "SEARCH NOSUCHKEY", "SEARCH BEFORE 32-Foo-2026",
                "SEARCH LARGER -1", "SEARCH LARGER 1x", "SEARCH OR FLAGGED",
                "SEARCH NOT", "SEARCH ()", "SEARCH HEADER \"a b\" x",
                "SEARCH UID 0", "SEARCH 99", "SEARCH CHARSET",
                "SEARCH " + "(" * 5000 + "ALL" + ")" * 5000,
                "SEARCH " + "OR " * 2000 + "ALL " * 2001,
                "SEARCH " + "NOT " * 10000 + "ALL",
                "SEARCH " + "ALL " * 3000,
                "SORT (DATE", "SORT (NOPE) UTF-8 ALL",
                "SORT (REVERSE) UTF-8 ALL",
                "SORT (DATE) UTF-8", "SORT DATE UTF-8 ALL",
                "THREAD NOPE UTF-8 ALL", "THREAD REFERENCES", "THREAD"):
        _, tagged = run(raw, "h " + cmd)
        assert tagged.startswith("h BAD"), (cmd, tagged)
    # A deep but reasonable OR chain still works.
    lines, tagged = run(raw, "i SEARCH " + "OR FLAGGED " * 20 + "DRAFT")
    assert tagged.startswith("i OK") and lines == ["* SEARCH 1 4"]
    assert run(raw, "j NOOP")[1].startswith("j OK")


def test_sort(imap):
    def sort(*criteria, uid=False):
        if uid:
            typ, data = imap.uid("SORT", "(%s)" % " ".join(criteria),
                                 "UTF-8", "ALL")
        else:
            typ, data = imap.sort("(%s)" % " ".join(criteria), "UTF-8",
                                  "ALL")
        assert typ == "OK", data
        return [int(x) for x in data[0].split()]

    assert sort("SUBJECT") == [1, 2, 4, 5, 6, 3]
    assert sort("REVERSE", "SUBJECT") == [3, 5, 6, 1, 2, 4]
    assert sort("FROM") == [1, 2, 4, 3, 6, 5]
    assert sort("DISPLAYFROM") == [6, 1, 2, 4, 3, 5]
    assert sort("TO") == [5, 2, 3, 6, 1, 4]
    assert sort("DISPLAYTO") == [5, 2, 3, 6, 1, 4]
    assert sort("CC") == [2, 3, 4, 5, 6, 1]
    assert sort("DATE") == [1, 2, 3, 4, 5, 6]
    assert sort("REVERSE", "DATE") == [6, 5, 4, 3, 2, 1]
    assert sort("ARRIVAL") == [6, 1, 2, 3, 4, 5]
    sizes = sorted(range(6), key=lambda i: (len(MESSAGES[i][0]), i))
    assert sort("SIZE") == [i + 1 for i in sizes]
    assert sort("SUBJECT", "REVERSE", "DATE") == [4, 2, 1, 6, 5, 3]
    assert sort("ARRIVAL", uid=True) == [6, 1, 2, 3, 4, 5]
    typ, data = imap.sort("(DATE)", "UTF-8", "UNDELETED", "NOT", "FLAGGED")
    assert [int(x) for x in data[0].split()] == [2, 3, 4, 6]


def test_esort(raw):
    lines, tagged = run(raw, "c SORT RETURN (MIN MAX COUNT ALL) "
                             "(REVERSE ARRIVAL) UTF-8 ALL")
    assert tagged.startswith("c OK")
    assert lines == ['* ESEARCH (TAG "c") MIN 5 MAX 6 COUNT 6 ALL 5,4,3,2,1,6']
    lines, _ = run(raw, "d UID SORT RETURN () (DATE) UTF-8 1:3")
    assert lines == ['* ESEARCH (TAG "d") UID ALL 1:3']
    lines, _ = run(raw, "e SORT (DATE) UTF-8 KEYWORD nothing")
    assert lines == ["* SORT"]


def test_thread(imap):
    typ, data = imap.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK"
    assert data[0] == b"(1 2 4)(3)(5 6)"
    typ, data = imap.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert data[0] == b"(1 (2)(4))(3)(5 6)"
    typ, data = imap.uid("THREAD", "REFERENCES", "UTF-8", "NOT", "2")
    # Without message 2, message 4 still hangs below 1 (through <m2>).
    assert data[0] == b"(1 4)(3)(5 6)"
    typ, data = imap.thread("REFERENCES", "US-ASCII", "KEYWORD", "nothing")
    assert typ == "OK" and data[0] in (None, b"")
