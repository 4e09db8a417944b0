"""End-to-end tests of imapd's selected state: CONDSTORE and QRESYNC
(RFC 7162), BINARY (RFC 3516), SAVEDATE (RFC 8514), OBJECTID (RFC 8474),
PREVIEW (RFC 8970), untagged updates between two sessions on one
mailbox, and IDLE woken by file notification."""

import base64
import os
import re
import shutil
import subprocess
import time

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2"), reason="needs saslpasswd2 (sasl2-bin)")

SERVERNAME = "columba.test"
USERS = {"alice": "wonderland", "bob": "builder"}

PLAIN = (b"From: Alice <alice@example.com>\r\n"
         b"To: bob@example.com\r\n"
         b"Subject: Plain\r\n"
         b"Message-ID: <p1@example.com>\r\n"
         b"\r\n"
         b"Hello   Bob,\r\n"
         b"\r\n"
         b"the  meeting is at noon.\r\n")

ATTACHMENT = bytes(range(256))
MULTIPART = (b"From: Alice <alice@example.com>\r\n"
             b"To: bob@example.com\r\n"
             b"Subject: Parts\r\n"
             b"MIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
             b"\r\n"
             b"--b1\r\n"
             b"Content-Type: text/plain; charset=iso-8859-1\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n"
             b"\r\n"
             b"Caf=E9 au lait =\r\n"
             b"is ready.\r\n"
             b"--b1\r\n"
             b"Content-Type: application/octet-stream\r\n"
             b"Content-Transfer-Encoding: base64\r\n"
             b"Content-Disposition: attachment; filename=x.bin\r\n"
             b"\r\n"
             + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n") +
             b"--b1\r\n"
             b"Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
             b"\r\n"
             b"--b2\r\n"
             b"Content-Type: text/plain\r\n"
             b"\r\n"
             b"inner\r\n"
             b"--b2--\r\n"
             b"--b1\r\n"
             b"Content-Type: application/x-thing\r\n"
             b"Content-Transfer-Encoding: x-uuencode\r\n"
             b"\r\n"
             b"begin 644 x\r\n"
             b"--b1--\r\n")

HTML = (b"From: Alice <alice@example.com>\r\n"
        b"Subject: Html\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"\r\n"
        + b"<html><head><style>p {color: red}</style></head><body>"
        + "<p>Gr&#xfc;&#223;e &amp; <b>hallo</b></p>\r\n".encode()
        + "<p>aus K<i>ö</i>ln&nbsp;&bogus;</p>".encode()
        + b"x" * 300 + b"</body></html>\r\n")

# Markup that never ends, bad character references, a lone "<".
BAD_HTML = (b"Subject: Bad html\r\n"
            b"Content-Type: text/html\r\n"
            b"\r\n"
            b"a&#x110000;b&#55296;c&#;d&#x;e&#12345678901234;f&;g&"
            b"<b x='>'>h</b> <!-- <p> --> i <a <style>unclosed")


def _make_sasldb(path):
    for user, password in USERS.items():
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", path,
                        "-u", SERVERNAME, user],
                       input=password.encode(), check=True)
    os.chmod(path, 0o644)


@pytest.fixture(scope="module")
def server():
    port = free_port()
    inst = Instance(services=[("imap", {"cmd": program("imap/imapd"),
                                        "listen": f"127.0.0.1:{port}"})],
                    name="imapd-sync")
    sasldb = inst.path("sasldb2")
    _make_sasldb(sasldb)
    inst.options.update({
        "servername": SERVERNAME,
        "allowplaintext": "yes",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
        "maxword": "65536",
        "autocreate_quota": "100000",
        # The fallback poll is slow: IDLE must be woken by inotify.
        "imapidlepoll": "60",
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port
    yield inst
    inst.stop()
    inst.cleanup()


class Client:
    """A raw IMAP client that reads responses with their literals."""

    def __init__(self, server, user="alice"):
        self.c = server.connect(server.port)
        self.n = 0
        assert self.c.readline().startswith("* OK")
        if user:
            self.ok("LOGIN %s %s" % (user, USERS[user]))

    def _readline_raw(self, timeout):
        c = self.c
        c.sock.settimeout(timeout)
        while b"\n" not in c.buf:
            data = c.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            c.buf += data
        line, c.buf = c.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def _read(self, n, timeout):
        c = self.c
        c.sock.settimeout(timeout)
        while len(c.buf) < n:
            data = c.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            c.buf += data
        data, c.buf = c.buf[:n], c.buf[n:]
        return data

    def response(self, timeout=10):
        """One response as bytes, literals inlined after their {n}."""
        line = self._readline_raw(timeout)
        out = line
        while True:
            m = re.search(rb"~?\{(\d+)\}$", line)
            if not m:
                return out
            out += b"\r\n" + self._read(int(m.group(1)), timeout)
            line = self._readline_raw(timeout)
            out += line

    def send(self, text):
        self.c.send(text if isinstance(text, bytes) else text.encode())

    def run(self, cmd, timeout=10):
        """Send a tagged command; return (untagged responses, tagged
        line), both as str (bytes decoded leniently)."""
        self.n += 1
        tag = "t%d" % self.n
        self.send("%s %s\r\n" % (tag, cmd))
        untagged = []
        while True:
            r = self.response(timeout)
            s = r.decode("utf-8", errors="replace")
            if s.startswith(tag + " "):
                return untagged, s[len(tag) + 1:]
            untagged.append(s)

    def runb(self, cmd, timeout=10):
        """As run(), untagged responses as bytes."""
        self.n += 1
        tag = "t%d" % self.n
        self.send("%s %s\r\n" % (tag, cmd))
        untagged = []
        while True:
            r = self.response(timeout)
            if r.startswith(tag.encode() + b" "):
                return untagged, r[len(tag) + 1:].decode()
            untagged.append(r)

    def ok(self, cmd):
        untagged, tagged = self.run(cmd)
        assert tagged.startswith("OK"), (cmd, untagged, tagged)
        return untagged

    def append(self, mailbox, message, flags=""):
        self.n += 1
        tag = "t%d" % self.n
        self.send(b"%s APPEND %s %s{%d+}\r\n" % (
            tag.encode(), mailbox.encode(),
            (flags + " ").encode() if flags else b"", len(message))
                  + message + b"\r\n")
        while True:
            s = self.response().decode()
            if s.startswith(tag + " "):
                assert s.startswith(tag + " OK"), s
                return int(re.search(r"APPENDUID \d+ (\d+)", s).group(1))

    def close(self):
        self.c.close()


def code(untagged, name):
    """The value of response code [name value] among untagged OKs."""
    for line in untagged:
        m = re.match(r"\* OK \[%s (.*?)\]" % name, line)
        if m:
            return m.group(1)
    return None


def fetches(untagged):
    return [l for l in untagged if re.match(r"\* \d+ FETCH ", l)]


def modseq_of(line):
    return int(re.search(r"MODSEQ \((\d+)\)", line).group(1))


def setup_box(server, name, messages):
    """Create `name` for alice holding `messages`; return its UIDs."""
    a = Client(server)
    a.ok("CREATE %s" % name)
    uids = [a.append(name, m) for m in messages]
    a.close()
    return uids


# -- capabilities and SELECT data -------------------------------------------

def test_capabilities_advertised(server):
    a = Client(server)
    untagged, _ = a.run("CAPABILITY")
    caps = untagged[0].split()
    for cap in ("CONDSTORE", "QRESYNC", "BINARY", "SAVEDATE", "OBJECTID",
                "PREVIEW"):
        assert cap in caps
    a.close()


def test_select_condstore_reports_modseq_and_mailboxid(server):
    setup_box(server, "Cs1", [PLAIN, PLAIN, PLAIN])
    a = Client(server)
    untagged = a.ok("SELECT Cs1 (CONDSTORE)")
    highest = int(code(untagged, "HIGHESTMODSEQ"))
    mailboxid = code(untagged, "MAILBOXID")
    assert re.fullmatch(r"\([0-9a-f]{32}\)", mailboxid)
    untagged, _ = a.run("STATUS Cs1 (MAILBOXID HIGHESTMODSEQ)")
    assert untagged[0] == ('* STATUS "Cs1" (HIGHESTMODSEQ %d MAILBOXID %s)'
                           % (highest, mailboxid))

    lines = fetches(a.ok("FETCH 1:* (MODSEQ)"))
    assert len(lines) == 3
    seqs = [modseq_of(l) for l in lines]
    assert max(seqs) == highest and len(set(seqs)) == 3

    # Once CONDSTORE is on, STORE answers carry UID and MODSEQ.
    lines = fetches(a.ok(r"STORE 2 +FLAGS (\Flagged)"))
    assert len(lines) == 1 and "FLAGS (\\Flagged)" in lines[0]
    assert "UID " in lines[0] and modseq_of(lines[0]) > highest
    changed = modseq_of(lines[0])

    # CHANGEDSINCE: only the changed message, MODSEQ implied.
    lines = fetches(a.ok("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest))
    assert len(lines) == 1 and lines[0].startswith("* 2 FETCH")
    assert modseq_of(lines[0]) == changed
    assert fetches(a.ok("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % changed)) \
        == []
    untagged, _ = a.run("STATUS Cs1 (HIGHESTMODSEQ)")
    assert "HIGHESTMODSEQ %d" % changed in untagged[0]
    a.close()


def test_enable_condstore_then_plain_select(server):
    setup_box(server, "Cs2", [PLAIN])
    a = Client(server)
    a.ok("ENABLE CONDSTORE")
    untagged = a.ok("EXAMINE Cs2")
    assert code(untagged, "HIGHESTMODSEQ")
    # FETCH without MODSEQ stays as asked.
    lines = fetches(a.ok("FETCH 1 (FLAGS)"))
    assert "MODSEQ" not in lines[0]
    a.close()


def test_store_unchangedsince(server):
    setup_box(server, "Cs3", [PLAIN, PLAIN])
    a = Client(server)
    highest = int(code(a.ok("SELECT Cs3"), "HIGHESTMODSEQ"))
    # The first CONDSTORE enabling command tells HIGHESTMODSEQ.
    untagged = a.ok("FETCH 1:2 (MODSEQ)")
    assert code(untagged, "HIGHESTMODSEQ") == str(highest)
    lines = fetches(untagged)
    assert code(a.ok("FETCH 1:2 (MODSEQ)"), "HIGHESTMODSEQ") is None
    m1, m2 = modseq_of(lines[0]), modseq_of(lines[1])

    # Unchanged since: the store happens.
    untagged, tagged = a.run(r"STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\Seen)"
                             % m1)
    assert tagged == "OK Completed"
    new1 = modseq_of(fetches(untagged)[0])
    assert new1 > m1
    # Message 1 changed since m1 now: refused and named; 2 goes through.
    untagged, tagged = a.run(
        r"STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Answered)" % m2)
    assert tagged.startswith("OK [MODIFIED 1]")
    lines = fetches(untagged)
    # .SILENT still reports the new MODSEQ of what changed.
    assert len(lines) == 1 and lines[0].startswith("* 2 FETCH (UID ")
    assert "FLAGS" not in lines[0]
    lines = fetches(a.ok("FETCH 1 (FLAGS)"))
    assert "\\Answered" not in lines[0]
    # UID STORE names UIDs; UNCHANGEDSINCE 0 always fails.
    untagged, tagged = a.run(
        r"UID STORE 1:* (UNCHANGEDSINCE 0) +FLAGS (\Flagged)")
    uids = sorted(int(re.search(r"UID (\d+)", l).group(1))
                  for l in fetches(a.ok("FETCH 1:2 (UID)")))
    assert tagged.startswith("OK [MODIFIED %d:%d]" % tuple(uids))
    a.close()


# -- QRESYNC ----------------------------------------------------------------

def test_qresync_select_reports_vanished_and_changes(server):
    uids = setup_box(server, "Qr1", [PLAIN] * 5)
    a = Client(server)
    a.ok("ENABLE QRESYNC")
    untagged = a.ok("SELECT Qr1")
    uidvalidity = int(code(untagged, "UIDVALIDITY"))
    highest = int(code(untagged, "HIGHESTMODSEQ"))
    a.ok("UNSELECT")

    # Meanwhile another session flags one message and expunges two.
    b = Client(server)
    b.ok("SELECT Qr1")
    b.ok(r"STORE 1 +FLAGS (\Flagged)")
    b.ok(r"STORE 2,4 +FLAGS (\Deleted)")
    b.ok("EXPUNGE")
    b.close()

    a.ok("SELECT INBOX")
    untagged = a.ok("SELECT Qr1 (QRESYNC (%d %d))" % (uidvalidity, highest))
    assert "* OK [CLOSED] Previous mailbox closed" in untagged
    vanished = [l for l in untagged if l.startswith("* VANISHED")]
    assert vanished == ["* VANISHED (EARLIER) %d,%d" % (uids[1], uids[3])]
    lines = fetches(untagged)
    assert len(lines) == 1
    assert lines[0].startswith("* 1 FETCH (UID %d FLAGS (\\Flagged) MODSEQ"
                               % uids[0])
    # VANISHED comes before the FETCH data (RFC 7162 3.2.5.1).
    assert untagged.index(vanished[0]) < untagged.index(lines[0])

    # known-uids narrows both.
    untagged = a.ok("SELECT Qr1 (QRESYNC (%d %d %d,%d))"
                    % (uidvalidity, highest, uids[2], uids[4]))
    assert not [l for l in untagged if l.startswith("* VANISHED")]
    assert fetches(untagged) == []
    untagged = a.ok("SELECT Qr1 (QRESYNC (%d %d %d:%d (1:3 %d:%d)))"
                    % (uidvalidity, highest, uids[0], uids[4], uids[0],
                       uids[2]))
    assert "* VANISHED (EARLIER) %d,%d" % (uids[1], uids[3]) in untagged

    # A different UIDVALIDITY: a plain select.
    untagged = a.ok("SELECT Qr1 (QRESYNC (%d 1))" % (uidvalidity + 1))
    assert not [l for l in untagged if "VANISHED" in l]
    assert fetches(untagged) == []
    a.close()


def test_qresync_after_repack_uses_seq_match_data(server):
    uids = setup_box(server, "Qr4", [PLAIN] * 5)
    b = Client(server)
    b.ok("SELECT Qr4")
    b.ok(r"STORE 1 +FLAGS (\Deleted)")
    b.ok("EXPUNGE")
    a = Client(server)
    a.ok("ENABLE QRESYNC")
    untagged = a.ok("SELECT Qr4")
    uidvalidity = int(code(untagged, "UIDVALIDITY"))
    highest = int(code(untagged, "HIGHESTMODSEQ"))
    a.ok("UNSELECT")
    b.ok(r"STORE 3 +FLAGS (\Deleted)")      # uids[3]
    b.ok("EXPUNGE")
    b.close()

    # The repack drops both expunged records: which of them vanished
    # after the client's modseq is no longer known.
    res = subprocess.run([program("imap/cyr_expire"), "-C",
                          server.imapd_conf, "-X", "0"],
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr

    untagged = a.ok("SELECT Qr4 (QRESYNC (%d %d))" % (uidvalidity, highest))
    assert "* VANISHED (EARLIER) %d,%d" % (uids[0], uids[3]) in untagged
    # seq-match-data: messages 1 and 2 still are the client's UIDs, so
    # nothing at or below uids[2] can have gone.
    untagged = a.ok("SELECT Qr4 (QRESYNC (%d %d 1:* (1:2 %d:%d)))"
                    % (uidvalidity, highest, uids[1], uids[2]))
    assert "* VANISHED (EARLIER) %d" % uids[3] in untagged
    a.close()


def test_qresync_requires_enable(server):
    setup_box(server, "Qr2", [PLAIN])
    a = Client(server)
    untagged, tagged = a.run("SELECT Qr2 (QRESYNC (1 1))")
    assert tagged.startswith("BAD")
    a.close()


def test_vanished_replaces_expunge_and_uid_fetch_vanished(server):
    uids = setup_box(server, "Qr3", [PLAIN] * 4)
    a = Client(server)
    a.ok("ENABLE QRESYNC")
    untagged = a.ok("SELECT Qr3")
    highest = int(code(untagged, "HIGHESTMODSEQ"))
    b = Client(server)
    b.ok("SELECT Qr3")
    b.ok(r"STORE 2:3 +FLAGS (\Deleted)")
    b.ok("EXPUNGE")
    b.close()
    untagged = a.ok("NOOP")
    assert "* VANISHED %d:%d" % (uids[1], uids[2]) in untagged
    assert not [l for l in untagged if l.endswith("EXPUNGE")]

    # Our own EXPUNGE is reported the same way.
    a.ok(r"STORE 1 +FLAGS (\Deleted)")
    untagged = a.ok("EXPUNGE")
    assert "* VANISHED %d" % uids[0] in untagged

    untagged = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)"
                    % highest)
    assert untagged[0] == "* VANISHED (EARLIER) %d:%d" % (uids[0], uids[2])
    assert fetches(untagged) == []
    a.ok(r"STORE 1 +FLAGS (\Seen)")
    untagged = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)"
                    % highest)
    assert len(fetches(untagged)) == 1
    # VANISHED needs UID FETCH and CHANGEDSINCE.
    assert a.run("FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")[1] \
        .startswith("BAD")
    assert a.run("UID FETCH 1:* (FLAGS) (VANISHED)")[1].startswith("BAD")
    a.close()


# -- BINARY, PREVIEW, OBJECTID, SAVEDATE --------------------------------------

def test_binary_fetch(server):
    setup_box(server, "Bin1", [MULTIPART])
    a = Client(server)
    a.ok("SELECT Bin1")
    untagged, tagged = a.runb("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
    assert tagged == "OK Completed"
    resp = untagged[0]
    # Base64 undone; the NUL byte makes it a literal8.
    assert (b"BINARY[2] ~{256}\r\n" + ATTACHMENT) in resp
    assert b"BINARY.SIZE[2] 256" in resp

    untagged, _ = a.runb("FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[2]<250.10>)")
    resp = untagged[0]
    assert "Café au lait is ready.".encode("latin-1") in resp
    assert b"BINARY[1] {" in resp
    assert b"BINARY[2]<250> {6}\r\n" + ATTACHMENT[250:] in resp

    # A multipart section is sent as stored; \Seen is set by BINARY.
    untagged, tagged = a.runb("FETCH 1 (BINARY[3] FLAGS)")
    assert tagged == "OK Completed"
    assert b"inner" in untagged[0] and b"\\Seen" in untagged[0]

    # An encoding we cannot undo fails the command.
    untagged, tagged = a.run("FETCH 1 (BINARY.PEEK[4])")
    assert tagged.startswith("NO [UNKNOWN-CTE]")
    untagged, tagged = a.run("FETCH 1 (BINARY.SIZE[9])")
    assert tagged == "OK Completed"
    assert "BINARY.SIZE[9] 0" in untagged[0]
    a.close()


def test_preview_emailid_threadid_savedate(server):
    setup_box(server, "Pv1", [PLAIN, HTML, MULTIPART, PLAIN, BAD_HTML])
    a = Client(server)
    a.ok("SELECT Pv1")
    lines = fetches(a.ok("FETCH 1:4 (PREVIEW EMAILID THREADID SAVEDATE)"))
    assert len(lines) == 4
    assert 'PREVIEW "Hello Bob, the meeting is at noon."' in lines[0]
    ids = [re.search(r"EMAILID \((M[0-9a-f]{24})\)", l).group(1)
           for l in lines]
    assert ids[0] == ids[3] and len(set(ids)) == 3
    assert all("THREADID NIL" in l for l in lines)
    assert all(re.search(r'SAVEDATE "\d+-\w{3}-\d{4} [\d:]{8} [+-]\d{4}"', l)
               for l in lines)

    untagged, _ = a.runb("FETCH 2 (PREVIEW (LAZY) UID)")
    m = re.search(rb"PREVIEW \{(\d+)\}\r\n", untagged[0])
    text = untagged[0][m.end():m.end() + int(m.group(1))].decode("utf-8")
    assert text.startswith("Grüße & hallo aus Köln &bogus; xxx")
    assert len(text) == 200 and "<" not in text

    lines = fetches(a.ok("FETCH 3 PREVIEW"))
    assert "Café au lait is ready." in lines[0]
    lines = fetches(a.ok("FETCH 5 PREVIEW"))
    assert lines[0].startswith('* 5 FETCH (PREVIEW "a&#x110000;b&#55296;c&#;'
                               'd&#x;e&#12345678901234;f&;g&')
    # PREVIEW (LAZY) after a lone item is accepted too.
    assert a.run("FETCH 3 PREVIEW (LAZY)")[1] == "OK Completed"
    a.close()


# -- IMAP4rev2 --------------------------------------------------------------

def test_imap4rev2_select_has_no_recent(server):
    setup_box(server, "Rev2", [PLAIN])
    a = Client(server)
    assert "RECENT" in " ".join(a.ok("EXAMINE Rev2"))
    a.ok("ENABLE IMAP4rev2")
    untagged = a.ok("EXAMINE Rev2")
    assert not [l for l in untagged if "RECENT" in l]
    assert "* 1 EXISTS" in untagged
    a.close()


# -- two sessions -------------------------------------------------------------

def test_two_sessions_untagged_updates(server):
    uids = setup_box(server, "Two1", [PLAIN] * 3)
    a = Client(server)
    b = Client(server)
    a.ok("SELECT Two1 (CONDSTORE)")
    b.ok("SELECT Two1")

    # A delivery: EXISTS at the next command.
    new = b.append("Two1", PLAIN)
    untagged = a.ok("NOOP")
    assert "* 4 EXISTS" in untagged

    # A flag change by the other session, with MODSEQ under CONDSTORE.
    b.ok(r"STORE 1 +FLAGS (\Flagged)")
    lines = fetches(a.ok("NOOP"))
    assert len(lines) == 1 and "FLAGS (\\Flagged)" in lines[0]
    assert "UID %d" % uids[0] in lines[0] and "MODSEQ (" in lines[0]

    # An expunge by the other session is held back during FETCH, STORE
    # and SEARCH by sequence number: numbers stay as the client has them.
    b.ok(r"STORE 2 +FLAGS (\Deleted)")
    b.ok("EXPUNGE")
    untagged = a.ok("FETCH 1:4 (UID)")
    assert not [l for l in untagged if "EXPUNGE" in l]
    assert len(fetches(untagged)) == 4      # delayed expunge: still served
    untagged = a.ok(r"STORE 3 +FLAGS (\Seen)")
    assert not [l for l in untagged if "EXPUNGE" in l]
    assert fetches(untagged)[0].startswith("* 3 FETCH (UID %d " % uids[2])
    untagged = a.ok("SEARCH ALL")
    assert not [l for l in untagged if "EXPUNGE" in l]
    # NOOP reports it.
    untagged = a.ok("NOOP")
    assert "* 2 EXPUNGE" in untagged
    lines = fetches(a.ok("FETCH 1:* (UID)"))
    assert [int(re.search(r"UID (\d+)", l).group(1)) for l in lines] == [
        uids[0], uids[2], new]

    # UID commands may report expunges.
    b.ok(r"STORE 1 +FLAGS (\Deleted)")
    b.ok("EXPUNGE")
    untagged = a.ok("UID FETCH 1:* (FLAGS)")
    assert "* 1 EXPUNGE" in untagged
    a.close()
    b.close()


def test_idle_woken_by_append_and_flag_change(server):
    setup_box(server, "Idle1", [PLAIN])
    a = Client(server)
    b = Client(server)
    a.ok("ENABLE CONDSTORE")
    a.ok("SELECT Idle1")
    b.ok("SELECT Idle1")
    a.send("i1 IDLE\r\n")
    assert a.response().startswith(b"+ ")

    start = time.monotonic()
    b.append("Idle1", PLAIN)
    assert a.response(timeout=5) == b"* 2 EXISTS"
    assert time.monotonic() - start < 2.0

    start = time.monotonic()
    b.ok(r"STORE 1 +FLAGS (\Answered)")
    line = a.response(timeout=5).decode()
    assert time.monotonic() - start < 2.0
    assert line.startswith("* 1 FETCH (UID ") and "\\Answered" in line
    assert "MODSEQ (" in line

    # An expunge is reported while idling too.
    b.ok(r"STORE 2 +FLAGS (\Deleted)")
    b.ok("EXPUNGE")
    seen = []
    while b"* 2 EXPUNGE" not in seen:
        seen.append(a.response(timeout=5))
    a.send("DONE\r\n")
    assert a.response() == b"i1 OK Completed"
    a.close()
    b.close()


# -- hostile input ------------------------------------------------------------

HOSTILE = [
    "FETCH 1 (FLAGS) (CHANGEDSINCE abc)",
    "FETCH 1 (FLAGS) (CHANGEDSINCE -1)",
    "FETCH 1 (FLAGS) (CHANGEDSINCE 99999999999999999999)",
    "FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775808)",
    "FETCH 1 (FLAGS) (CHANGEDSINCE)",
    "FETCH 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)",
    "FETCH 1 (FLAGS) (BOGUS)",
    "FETCH 1 (FLAGS) (",
    "FETCH 1 (FLAGS) x",
    "FETCH 1 BINARY[1.HEADER]",
    "FETCH 1 BINARY[0]",
    "FETCH 1 BINARY[1..2]",
    "FETCH 1 BINARY[1.]",
    "FETCH 1 BINARY[",
    "FETCH 1 BINARY.SIZE[1]<0.5>",
    "FETCH 1 BINARY.FOO[1]",
    "FETCH 1 (BINARY.PEEK[99.99.99])",
    "FETCH 1 (BINARY.PEEK[]<0.4294967295>)",
    "FETCH 1 (BINARY.PEEK[3])",
    "FETCH 1 (PREVIEW (FOO))",
    "FETCH 1 (PREVIEW (LAZY)",
    "FETCH 1 (PREVIEW ())",
    "UID FETCH 1:* FLAGS (VANISHED)",
    "STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)",
    "STORE 1 (UNCHANGEDSINCE) +FLAGS (\\Seen)",
    "STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) +FLAGS (\\Seen)",
    "STORE 1 (BOGUS 1) +FLAGS (\\Seen)",
    "STORE 1 (UNCHANGEDSINCE 5)+FLAGS (\\Seen)",
    "SELECT Hostile2 (QRESYNC (1 2))",
    "SELECT Hostile2 (CONDSTORE",
    "SELECT Hostile2 (BOGUS)",
    "SELECT Hostile2 ()",
    "STATUS Hostile2 (MAILBOXID",
]

HOSTILE_QRESYNC = [
    "SELECT Hostile2 (QRESYNC (a b))",
    "SELECT Hostile2 (QRESYNC (0 1))",
    "SELECT Hostile2 (QRESYNC (1 0))",
    "SELECT Hostile2 (QRESYNC (1 1 *:0))",
    "SELECT Hostile2 (QRESYNC (1 1 1:5 (1:3)))",
    "SELECT Hostile2 (QRESYNC (1 1 1:5 (1:3 4:9))",
    "SELECT Hostile2 (QRESYNC (1 1 (1:3 4:9)))",
    "SELECT Hostile2 (QRESYNC (4294967296 1))",
    "SELECT Hostile2 (QRESYNC 1 1)",
    "SELECT Hostile2 (QRESYNC (1 1) QRESYNC (1 1))",
    "SELECT Hostile2 (QRESYNC (" + "1," * 5000 + "1 1))",
]


def test_hostile_input_keeps_server_alive(server):
    setup_box(server, "Hostile2", [MULTIPART])
    a = Client(server)
    a.ok("SELECT Hostile2")
    for cmd in HOSTILE:
        untagged, tagged = a.run(cmd)
        assert tagged.split()[0] in ("OK", "NO", "BAD"), (cmd, tagged)
        if not s_selected(a):
            a.ok("SELECT Hostile2")
    a.ok("ENABLE QRESYNC")
    for cmd in HOSTILE_QRESYNC:
        untagged, tagged = a.run(cmd)
        assert tagged.split()[0] in ("OK", "NO", "BAD"), (cmd, tagged)
    # The known bad ones are refused, not accepted.
    assert a.run("FETCH 1 (FLAGS) (CHANGEDSINCE abc)")[1].startswith("BAD")
    assert a.run("FETCH 1 BINARY[1.HEADER]")[1].startswith("BAD")
    a.ok("SELECT Hostile2")
    assert a.run("FETCH 1 (FLAGS) (CHANGEDSINCE abc)")[1].startswith("BAD")
    a.ok("NOOP")
    a.close()
    assert "signal" not in server.log()


def s_selected(client):
    """Is a mailbox selected (CHECK is only valid then)?"""
    return client.run("CHECK")[1].startswith("OK")
