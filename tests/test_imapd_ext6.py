"""End-to-end tests of imapd beyond the mainstream: CATENATE (RFC 4469),
URLAUTH (RFC 4467) with URLAUTH=BINARY (RFC 5524) and URL-PARTIAL
(RFC 5550), REPLACE (RFC 8508) and UIDONLY (RFC 9586), with hostile
input for each."""

import base64
import imaplib
import os
import re
import shutil
import subprocess
import urllib.parse

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2"), reason="needs saslpasswd2 (sasl2-bin)")

SERVERNAME = "columba.test"
USERS = {"alice": "wonderland", "bob": "builder", "smtp": "relay"}
# Small enough that an oversize CATENATE is cheap to build.
MAXMESSAGE = 200000

ATTACHMENT = bytes(range(256))
MULTIPART = (b"From: Alice <alice@example.com>\r\n"
             b"To: bob@example.com\r\n"
             b"Subject: Parts\r\n"
             b"MIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
             b"\r\n"
             b"--b1\r\n"
             b"Content-Type: text/plain\r\n"
             b"\r\n"
             b"First part text.\r\n"
             b"--b1\r\n"
             b"Content-Type: application/octet-stream\r\n"
             b"Content-Transfer-Encoding: base64\r\n"
             b"\r\n"
             + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n") +
             b"--b1--\r\n")

PLAIN = (b"From: Alice <alice@example.com>\r\n"
         b"Subject: Plain\r\n"
         b"\r\n"
         b"Hello Bob.\r\n")


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
                    name="imapd-ext6")
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
        "maxmessagesize": str(MAXMESSAGE),
        "submitservers": "smtp",
        "autocreate_quota": "100000",
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port
    yield inst
    inst.stop()
    inst.cleanup()


class Client:
    """A raw IMAP client that reads responses with their literals and
    sends every literal as LITERAL+."""

    def __init__(self, server, user="alice"):
        self.c = server.connect(server.port)
        self.n = 0
        assert self.c.readline().startswith("* OK")
        if user:
            self.ok("LOGIN %s %s" % (user, USERS[user]))

    def _fill(self, pred, timeout):
        c = self.c
        c.sock.settimeout(timeout)
        while not pred(c.buf):
            data = c.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            c.buf += data

    def _readline(self, timeout):
        self._fill(lambda b: b"\n" in b, timeout)
        line, self.c.buf = self.c.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def _read(self, n, timeout):
        self._fill(lambda b: len(b) >= n, timeout)
        data, self.c.buf = self.c.buf[:n], self.c.buf[n:]
        return data

    def response(self, timeout=10):
        line = self._readline(timeout)
        out = line
        while True:
            m = re.search(rb"~?\{(\d+)\}$", line)
            if not m:
                return out
            out += b"\r\n" + self._read(int(m.group(1)), timeout)
            line = self._readline(timeout)
            out += line

    def send(self, data):
        self.c.send(data if isinstance(data, bytes) else data.encode())

    def runb(self, cmd, timeout=10):
        """Send a tagged command (str or bytes, without CRLF); return
        (untagged responses as bytes, tagged line as str)."""
        self.n += 1
        tag = b"t%d" % self.n
        if isinstance(cmd, str):
            cmd = cmd.encode()
        self.send(tag + b" " + cmd + b"\r\n")
        untagged = []
        while True:
            r = self.response(timeout)
            if r.startswith(tag + b" "):
                return untagged, r[len(tag) + 1:].decode(errors="replace")
            untagged.append(r)

    def run(self, cmd, timeout=10):
        untagged, tagged = self.runb(cmd, timeout)
        return [u.decode(errors="replace") for u in untagged], tagged

    def ok(self, cmd):
        untagged, tagged = self.run(cmd)
        assert tagged.startswith("OK"), (cmd, untagged, tagged)
        return untagged

    def append(self, mailbox, message, flags=""):
        _, tagged = self.runb(b"APPEND %s %s{%d+}\r\n%s" % (
            mailbox.encode(), (flags + " ").encode() if flags else b"",
            len(message), message))
        assert tagged.startswith("OK"), tagged
        return int(re.search(r"APPENDUID \d+ (\d+)", tagged).group(1))

    def fetch_body(self, mailbox, uid):
        self.ok("EXAMINE %s" % mailbox)
        untagged, tagged = self.runb("UID FETCH %d BODY.PEEK[]" % uid)
        assert tagged.startswith("OK"), tagged
        self.ok("UNSELECT")
        m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", untagged[0])
        start = m.end()
        return untagged[0][start:start + int(m.group(1))]

    def close(self):
        self.c.close()


def lit(data):
    """A LITERAL+ literal."""
    return b"{%d+}\r\n%s" % (len(data), data)


def uidvalidity(client, mailbox):
    untagged = client.ok("STATUS %s (UIDVALIDITY)" % mailbox)
    return int(re.search(r"UIDVALIDITY (\d+)", untagged[0]).group(1))


def genurlauth(client, rump, mech="INTERNAL"):
    untagged, tagged = client.run('GENURLAUTH "%s" %s' % (rump, mech))
    assert tagged.startswith("OK"), (untagged, tagged)
    m = re.match(r'\* GENURLAUTH "(.*)"$', untagged[0])
    return m.group(1)


def urlfetch_one(client, url):
    """The data URLFETCH returns for one URL, or None for NIL."""
    untagged, tagged = client.runb('URLFETCH "%s"' % url)
    assert tagged.startswith("OK"), tagged
    line = untagged[0]
    prefix = b'* URLFETCH "%s" ' % url.encode()
    assert line.startswith(prefix), line
    rest = line[len(prefix):]
    if rest == b"NIL":
        return None
    m = re.match(rb"\{(\d+)\}\r\n", rest)
    return rest[m.end():m.end() + int(m.group(1))]


# -- capabilities (with imaplib) ---------------------------------------------

def test_capabilities_advertised(server):
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    try:
        m.login("alice", USERS["alice"])
        typ, data = m.capability()
        caps = data[0].decode().split()
        for cap in ("CATENATE", "URLAUTH", "URLAUTH=BINARY", "URL-PARTIAL",
                    "REPLACE", "UIDONLY", "MULTIAPPEND"):
            assert cap in caps, cap
        # Plain APPEND through imaplib still works next to CATENATE.
        typ, data = m.append("INBOX", None, None, PLAIN)
        assert typ == "OK"
    finally:
        m.logout()


# -- CATENATE -----------------------------------------------------------------

def test_catenate_rfc4469_example(server):
    """Forward a part of a draft with new text around it, using URLs
    with UIDVALIDITY, sections, a relative ;UID URL and URL-PARTIAL."""
    a = Client(server)
    a.ok("CREATE Drafts6")
    uid = a.append("Drafts6", MULTIPART)
    uv = uidvalidity(a, "Drafts6")
    a.ok("SELECT Drafts6")
    text1 = (b"\r\n--abcd\r\nContent-Type: text/plain\r\n\r\n"
             b"The attachment follows.\r\n--abcd\r\n")
    cmd = (b"APPEND Drafts6 (\\Seen) CATENATE ("
           b"URL \"/Drafts6;UIDVALIDITY=%d/;UID=%d/;SECTION=HEADER\" "
           b"TEXT %s "
           b"URL \"/Drafts6/;UID=%d/;SECTION=2.MIME\" "
           b"URL \";UID=%d/;SECTION=2\" "
           b"TEXT %s "
           b"URL \"imap://alice@columba.test/Drafts6/;UID=%d/;SECTION=1"
           b"/;PARTIAL=6.4\")" % (
               uv, uid, lit(text1), uid, uid, lit(b"\r\n--abcd--\r\n"),
               uid))
    untagged, tagged = a.runb(cmd)
    assert tagged.startswith("OK [APPENDUID %d " % uv), tagged
    newuid = int(re.search(r"APPENDUID \d+ (\d+)", tagged).group(1))
    a.ok("UNSELECT")

    header = MULTIPART[:MULTIPART.index(b"\r\n\r\n") + 4]
    part2_mime = (b"Content-Type: application/octet-stream\r\n"
                  b"Content-Transfer-Encoding: base64\r\n\r\n")
    part2 = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")[:-2]
    expect = (header + text1 + part2_mime + part2 + b"\r\n--abcd--\r\n"
              + b"part")
    assert a.fetch_body("Drafts6", newuid) == expect
    a.close()


def test_catenate_multiappend(server):
    a = Client(server)
    a.ok("CREATE Multi6")
    src = a.append("Multi6", PLAIN)
    cmd = (b"APPEND Multi6 (\\Flagged) CATENATE (TEXT %s URL "
           b"\"/Multi6/;UID=%d/;SECTION=TEXT\") %s "
           b"CATENATE (TEXT %s)" % (
               lit(b"Subject: one\r\n\r\n"), src, lit(PLAIN),
               lit(b"Subject: three\r\n\r\nbody\r\n")))
    _, tagged = a.runb(cmd)
    assert tagged.startswith("OK [APPENDUID"), tagged
    uids = re.search(r"APPENDUID \d+ (\S+)\]", tagged).group(1)
    assert uids == "%d:%d" % (src + 1, src + 3)
    assert a.fetch_body("Multi6", src + 1) == (b"Subject: one\r\n\r\n"
                                                b"Hello Bob.\r\n")
    assert a.fetch_body("Multi6", src + 2) == PLAIN
    assert a.fetch_body("Multi6", src + 3) == (b"Subject: three\r\n\r\n"
                                                b"body\r\n")
    a.close()


def other_user_prefix(client):
    """The other-users namespace prefix and separator, e.g. ("user/",
    "/")."""
    untagged = client.ok("NAMESPACE")
    m = re.match(r'\* NAMESPACE (?:NIL|\(\(.*?\)\)) \(\("([^"]*)" "(.)"\)',
                 untagged[0])
    assert m, untagged
    return m.group(1), m.group(2)


def test_catenate_bad_urls(server):
    a = Client(server)
    b = Client(server, "bob")
    a.ok("CREATE Bad6")
    uid = a.append("Bad6", PLAIN)
    uv = uidvalidity(a, "Bad6")
    b.ok("CREATE Secret6")
    buid = b.append("Secret6", PLAIN)
    b.ok("SETACL Secret6 alice l")
    prefix, sep = other_user_prefix(a)
    secret = urllib.parse.quote("%sbob%sSecret6" % (prefix, sep))

    cases = [
        "/Bad6/;UID=%d" % (uid + 100),                  # no such message
        "/Bad6;UIDVALIDITY=%d/;UID=%d" % (uv + 1, uid),  # stale
        "/Nope6/;UID=1",                                 # no such mailbox
        "/%s/;UID=%d" % (secret, buid),                  # lookup only
        "imap://bob@columba.test/Secret6/;UID=%d" % buid,  # another user
        ";UID=%d" % uid,                                 # nothing selected
        "/Bad6/;UID=%d/;SECTION=9" % uid,                # no such part
        "imap://alice@columba.test/Bad6/;UID=%d;URLAUTH=anonymous:"
        "INTERNAL:%s" % (uid, "0" * 40),                 # forged token
        "http://example.com/",                           # not IMAP
    ]
    for url in cases:
        _, tagged = a.runb(b"APPEND Bad6 CATENATE (TEXT %s URL \"%s\" "
                           b"TEXT %s)" % (lit(b"x\r\n"), url.encode(),
                                          lit(b"y\r\n")))
        assert tagged == "NO [BADURL %s] " % url + tagged.split("] ", 1)[1], \
            (url, tagged)
        # The session stays in step after the refused command.
        a.ok("NOOP")
    # Nothing was appended.
    untagged = a.ok("STATUS Bad6 (MESSAGES)")
    assert "MESSAGES 1" in untagged[0]

    # With read access granted, the same URL works.
    b.ok("SETACL Secret6 alice lr")
    _, tagged = a.runb(b"APPEND Bad6 CATENATE (URL \"/%s/;UID=%d\")"
                       % (secret.encode(), buid))
    assert tagged.startswith("OK [APPENDUID"), tagged
    a.close()
    b.close()


def test_catenate_toobig_and_syntax(server):
    a = Client(server)
    a.ok("CREATE Big6")
    big = b"Subject: big\r\n\r\n" + b"x" * (MAXMESSAGE // 2) + b"\r\n"
    uid = a.append("Big6", big)
    url = b'URL "/Big6/;UID=%d"' % uid
    _, tagged = a.runb(b"APPEND Big6 CATENATE (%s %s %s)" % (url, url, url))
    assert tagged.startswith("NO [TOOBIG]"), tagged
    a.ok("NOOP")

    # Syntax errors: BAD, and the session carries on.
    for bad in (b"APPEND Big6 CATENATE (FOO {1+}\r\nx)",
                b"APPEND Big6 CATENATE (TEXT \"quoted\")",
                b"APPEND Big6 CATENATE TEXT {1+}\r\nx",
                b"APPEND Big6 CATENATE (URL)",
                b"APPEND Big6 CATENATE ()",
                b"APPEND Big6 CATENATE (TEXT {1+}\r\nx"):
        _, tagged = a.runb(bad)
        assert tagged.startswith("BAD"), (bad, tagged)
        a.ok("NOOP")
    # An overlong URL is refused without being echoed back.
    long_url = b"/Big6/" + b"a" * 9000 + b"/;UID=1"
    _, tagged = a.runb(b'APPEND Big6 CATENATE (URL "%s")' % long_url)
    assert tagged.startswith("NO Bad URL"), tagged
    # Control bytes, NUL and "]" in a URL literal are not echoed either.
    for raw in (b"/Big6/;UID=1\x01", b"/Big6\x00/;UID=1", b"/Big6]/;UID=1",
                b"/Big6/;UID=1\r\n"):
        _, tagged = a.runb(b"APPEND Big6 CATENATE (URL %s)" % lit(raw))
        assert tagged.startswith("NO Bad URL"), (raw, tagged)
    untagged = a.ok("STATUS Big6 (MESSAGES)")
    assert "MESSAGES 1" in untagged[0]
    a.close()


# -- URLAUTH -------------------------------------------------------------------

def test_urlauth_rfc4467_flow(server):
    a = Client(server)
    b = Client(server, "bob")
    a.ok("CREATE Auth6")
    uid = a.append("Auth6", MULTIPART)
    rump = ("imap://alice@columba.test/Auth6/;uid=%d/;section=1"
            ";urlauth=anonymous" % uid)
    url = genurlauth(a, rump)
    assert re.fullmatch(re.escape(rump) + r":INTERNAL:[0-9a-f]{40}", url)
    assert urlfetch_one(b, url) == b"First part text."
    # Deterministic until RESETKEY.
    assert genurlauth(a, rump) == url
    # Not yet logged in: anonymous access still needs a login here, and
    # URLFETCH is refused before it.
    c = Client(server, None)
    _, tagged = c.run('URLFETCH "%s"' % url)
    assert tagged.startswith("BAD")
    c.close()

    # Whole message, and URL-PARTIAL (RFC 5550).
    whole = genurlauth(a, "imap://alice@columba.test/Auth6/;UID=%d"
                          ";URLAUTH=authuser" % uid)
    assert urlfetch_one(b, whole) == MULTIPART
    part = genurlauth(a, "imap://alice@columba.test/Auth6/;UID=%d"
                         "/;PARTIAL=5.8;URLAUTH=authuser" % uid)
    assert urlfetch_one(b, part) == MULTIPART[5:13]
    past = genurlauth(a, "imap://alice@columba.test/Auth6/;UID=%d"
                         "/;PARTIAL=999999;URLAUTH=authuser" % uid)
    assert urlfetch_one(b, past) == b""
    fields = genurlauth(a, "imap://alice@columba.test/Auth6/;UID=%d"
                           "/;SECTION=HEADER.FIELDS%%20(SUBJECT%%20TO)"
                           ";URLAUTH=authuser" % uid)
    assert urlfetch_one(b, fields) == (b"To: bob@example.com\r\n"
                                       b"Subject: Parts\r\n\r\n")

    # Several URLs in one command, one of them bad.
    untagged, tagged = b.runb('URLFETCH "%s" "%s"' % (url, url[:-1] + "0"))
    assert tagged.startswith("OK")
    assert untagged[0].endswith(b"NIL")
    assert b"First part text." in untagged[0]
    a.close()
    b.close()


def test_urlauth_access_identifiers(server):
    a = Client(server)
    b = Client(server, "bob")
    s = Client(server, "smtp")
    a.ok("CREATE Acc6")
    uid = a.append("Acc6", PLAIN)
    base = "imap://alice@columba.test/Acc6/;UID=%d;URLAUTH=" % uid
    for_bob = genurlauth(a, base + "user+bob")
    assert urlfetch_one(b, for_bob) == PLAIN
    assert urlfetch_one(a, for_bob) is None
    assert urlfetch_one(s, for_bob) is None
    submit = genurlauth(a, base + "submit+alice")
    assert urlfetch_one(s, submit) == PLAIN
    assert urlfetch_one(b, submit) is None
    assert urlfetch_one(a, submit) is None

    # CATENATE takes an authorized URL to a message bob cannot read
    # otherwise; the plain URL to the same message is refused.
    b.ok("CREATE Cat6")
    _, tagged = b.runb(b'APPEND Cat6 CATENATE (URL "%s" TEXT %s)'
                       % (for_bob.encode(), lit(b"-- forwarded\r\n")))
    assert tagged.startswith("OK [APPENDUID"), tagged
    assert b.fetch_body("Cat6", 1) == PLAIN + b"-- forwarded\r\n"
    plain_url = for_bob.split(";URLAUTH=")[0]
    _, tagged = b.runb(b'APPEND Cat6 CATENATE (URL "%s")' % plain_url.encode())
    assert tagged.startswith("NO [BADURL"), tagged
    _, tagged = s.runb(b'APPEND INBOX CATENATE (URL "%s")' % for_bob.encode())
    assert tagged.startswith("NO [BADURL"), tagged
    a.close()
    b.close()
    s.close()


def test_urlauth_hostile(server):
    a = Client(server)
    b = Client(server, "bob")
    a.ok("CREATE Host6")
    uid = a.append("Host6", PLAIN)
    rump = "imap://alice@columba.test/Host6/;UID=%d;URLAUTH=anonymous" % uid
    url = genurlauth(a, rump)
    token = url.rsplit(":", 1)[1]

    # Tampering: another UID, another mailbox, a flipped token digit,
    # an unknown mechanism, a truncated token.
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")
    other_uid = url.replace(";UID=%d;" % uid, ";UID=%d;" % (uid + 1))
    a.ok("CREATE Host6b")
    a.append("Host6b", PLAIN)
    other_box = url.replace("/Host6/", "/Host6b/")
    for bad in (flipped, other_uid, other_box,
                url.replace(":INTERNAL:", ":OTHER:"), url[:-10]):
        assert urlfetch_one(b, bad) is None, bad
    # Upper-case hex is the same token.
    assert urlfetch_one(b, url[:-40] + token.upper()) == PLAIN

    # Expired and not yet expired.
    expired = genurlauth(a, "imap://alice@columba.test/Host6/;UID=%d"
                            ";EXPIRE=2001-01-01T00:00:00Z;URLAUTH=anonymous"
                         % uid)
    assert urlfetch_one(b, expired) is None
    later = genurlauth(a, "imap://alice@columba.test/Host6/;UID=%d"
                          ";EXPIRE=2099-01-01T00:00:00Z;URLAUTH=anonymous"
                       % uid)
    assert urlfetch_one(b, later) == PLAIN

    # A rump URL (no token) and a plain URL are not authorized URLs.
    assert urlfetch_one(b, rump) is None
    assert urlfetch_one(b, "imap://alice@columba.test/Host6/;UID=%d"
                        % uid) is None
    assert urlfetch_one(b, "garbage") is None

    # GENURLAUTH refuses: another user's URL, a URL with a token, no
    # URLAUTH, an unknown mechanism, a mailbox without rights.
    for bad_rump, mech in (
            (rump.replace("alice@", "bob@"), "INTERNAL"),
            (url, "INTERNAL"),
            ("imap://alice@columba.test/Host6/;UID=%d" % uid, "INTERNAL"),
            (rump, "XSECRET"),
            ("imap://alice@columba.test/Nope6/;UID=1;URLAUTH=anonymous",
             "INTERNAL")):
        _, tagged = a.run('GENURLAUTH "%s" %s' % (bad_rump, mech))
        assert tagged.startswith("NO"), (bad_rump, tagged)
    for bad in ("GENURLAUTH", 'GENURLAUTH "%s"' % rump,
                "URLFETCH", "URLFETCH (", 'URLFETCH ("%s" FOO)' % url,
                'URLFETCH ("%s")' % url,
                'URLFETCH ("%s" BODY BINARY)' % url,
                "URLFETCH " + " ".join(['"x"'] * 101),
                "RESETKEY INBOX XSECRET"):
        _, tagged = a.run(bad)
        assert tagged.startswith(("BAD", "NO")), (bad, tagged)
        a.ok("NOOP")
    for bad in (b"URLFETCH %s" % lit(url.encode() + b"\x00"),
                b"URLFETCH (%s BINARY)" % lit(b"\x00"),
                b"GENURLAUTH %s INTERNAL" % lit(rump.encode() + b"\x00")):
        _, tagged = a.runb(bad)
        assert tagged.startswith("BAD"), (bad, tagged)
        a.ok("NOOP")
    a.close()
    b.close()


def test_resetkey(server):
    a = Client(server)
    b = Client(server, "bob")
    a.ok("CREATE Reset6")
    uid = a.append("Reset6", PLAIN)
    rump = ("imap://alice@columba.test/Reset6/;UID=%d;URLAUTH=anonymous"
            % uid)
    url = genurlauth(a, rump)
    assert urlfetch_one(b, url) == PLAIN
    a.ok("RESETKEY Reset6 INTERNAL")
    assert urlfetch_one(b, url) is None
    url2 = genurlauth(a, rump)
    assert url2 != url
    assert urlfetch_one(b, url2) == PLAIN
    a.ok("RESETKEY")
    assert urlfetch_one(b, url2) is None
    _, tagged = a.run("RESETKEY Nope6")
    assert tagged.startswith("NO")
    a.close()
    b.close()


def test_urlfetch_binary_rfc5524(server):
    a = Client(server)
    b = Client(server, "bob")
    a.ok("CREATE Bin6")
    uid = a.append("Bin6", MULTIPART)
    url = genurlauth(a, "imap://alice@columba.test/Bin6/;UID=%d/;SECTION=2"
                        ";URLAUTH=authuser" % uid)
    untagged, tagged = b.runb('URLFETCH ("%s" BODYPARTSTRUCTURE BINARY)'
                              % url)
    assert tagged.startswith("OK"), tagged
    line = untagged[0]
    assert line.startswith(b'* URLFETCH "%s" (BODYPARTSTRUCTURE ("APPLICATION"'
                           b' "OCTET-STREAM"' % url.encode()), line
    m = re.search(rb"\(BINARY ~\{256\}\r\n", line)
    assert m, line
    assert line[m.end():m.end() + 256] == ATTACHMENT
    assert line.endswith(b")")

    untagged, _ = b.runb('URLFETCH ("%s" BODY)' % url)
    raw = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")[:-2]
    assert re.search(rb"\(BODY \{%d\}\r\n" % len(raw), untagged[0])
    assert raw in untagged[0]
    untagged, _ = b.runb('URLFETCH ("%s" BODYPARTSTRUCTURE)' % url)
    assert b"(BINARY" not in untagged[0] and b"BODYPARTSTRUCTURE" in \
        untagged[0]
    # A bad URL in the extended form is NIL too.
    untagged, _ = b.runb('URLFETCH ("%s" BINARY)' % (url[:-1] + "x"))
    assert untagged[0].endswith(b" NIL")
    a.close()
    b.close()


# -- REPLACE -------------------------------------------------------------------

def test_replace_rfc8508(server):
    a = Client(server)
    a.ok("CREATE Repl6")
    a.ok("CREATE Repl6b")
    u1 = a.append("Repl6", PLAIN)
    u2 = a.append("Repl6", PLAIN)
    a.ok("SELECT Repl6")
    new = b"Subject: replaced\r\n\r\nnew text\r\n"
    untagged, tagged = a.runb(b"REPLACE 1 Repl6 (\\Seen \\Draft) %s"
                              % lit(new))
    assert tagged.startswith("OK"), tagged
    lines = [u.decode() for u in untagged]
    assert re.match(r"\* OK \[APPENDUID \d+ %d\]" % (u2 + 1), lines[0])
    # The expunge is reported before the new count (either order is
    # allowed; this server sends EXPUNGE first, then EXISTS).
    assert lines[1:] == ["* 1 EXPUNGE", "* 2 EXISTS"], lines

    # UID REPLACE into another mailbox, with CATENATE.
    untagged, tagged = a.runb(b"UID REPLACE %d Repl6b CATENATE (TEXT %s "
                              b"URL \"/Repl6/;UID=%d/;SECTION=TEXT\")"
                              % (u2, lit(b"Subject: cat\r\n\r\n"), u2 + 1))
    assert tagged.startswith("OK"), tagged
    assert untagged[0].startswith(b"* OK [APPENDUID")
    assert b"* 1 EXPUNGE" in untagged
    assert a.fetch_body("Repl6b", 1) == b"Subject: cat\r\n\r\nnew text\r\n"

    a.ok("SELECT Repl6")
    # Bad message number, unknown UID, bad URL: nothing changes.
    _, tagged = a.runb(b"REPLACE 9 Repl6 %s" % lit(new))
    assert tagged.startswith("BAD"), tagged
    _, tagged = a.runb(b"UID REPLACE 999 Repl6 %s" % lit(new))
    assert tagged.startswith("NO"), tagged
    _, tagged = a.runb(b"REPLACE 1 Repl6 CATENATE (URL \"/Repl6/;UID=999\")")
    assert tagged.startswith("NO [BADURL"), tagged
    _, tagged = a.runb(b"REPLACE 1 Repl6 %s %s" % (lit(new), lit(new)))
    assert tagged.startswith("BAD"), tagged
    untagged = a.ok("UID SEARCH ALL")
    assert untagged == ["* SEARCH %d" % (u2 + 1)]

    # Read-only: refused.
    a.ok("EXAMINE Repl6")
    _, tagged = a.runb(b"REPLACE 1 Repl6 %s" % lit(new))
    assert tagged.startswith("NO"), tagged
    _, tagged = a.runb(b"REPLACE 1 Repl6 %s" % lit(new))
    a.ok("UNSELECT")
    _, tagged = a.runb(b"REPLACE 1 Repl6 %s" % lit(new))
    assert tagged.startswith("BAD"), tagged
    a.close()


# -- UIDONLY -------------------------------------------------------------------

def test_uidonly(server):
    a = Client(server)
    b = Client(server)
    a.ok("CREATE Only6")
    u1 = a.append("Only6", PLAIN)
    u2 = a.append("Only6", PLAIN)
    untagged = a.ok("ENABLE UIDONLY")
    assert untagged == ["* ENABLED UIDONLY"]
    a.ok("SELECT Only6")

    for cmd in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "COPY 1 INBOX",
                "MOVE 1 INBOX", "SEARCH ALL", "SORT (DATE) UTF-8 ALL",
                "THREAD REFERENCES UTF-8 ALL"):
        _, tagged = a.run(cmd)
        assert tagged.startswith("BAD [UIDREQUIRED]"), (cmd, tagged)
    _, tagged = a.runb(b"REPLACE 1 Only6 %s" % lit(PLAIN))
    assert tagged.startswith("BAD [UIDREQUIRED]"), tagged
    # a message-number key inside a UID command is refused too
    _, tagged = a.run("UID SEARCH 1:2")
    assert tagged.startswith("BAD [UIDREQUIRED]"), tagged
    untagged = a.ok("UID SEARCH UID %d:%d" % (u1, u2))
    assert untagged == ["* SEARCH %d %d" % (u1, u2)], untagged
    a.ok("NOOP")

    untagged = a.ok("UID FETCH %d:%d (FLAGS UID)" % (u1, u2))
    assert untagged == ["* %d UIDFETCH (FLAGS ())" % u1,
                        "* %d UIDFETCH (FLAGS ())" % u2], untagged
    untagged = a.ok("UID STORE %d +FLAGS (\\Flagged)" % u2)
    assert untagged == ["* %d UIDFETCH (FLAGS (\\Flagged))" % u2], untagged
    assert "\\Flagged" in untagged[0]

    # Changes from another session: UIDFETCH and VANISHED, never a
    # message number.
    b.ok("SELECT Only6")
    b.ok("UID STORE %d +FLAGS (\\Seen)" % u1)
    b.ok("UID STORE %d +FLAGS (\\Deleted)" % u2)
    b.ok("EXPUNGE")
    untagged = a.ok("NOOP")
    assert "* VANISHED %d" % u2 in untagged, untagged
    assert any(l.startswith("* %d UIDFETCH (" % u1) for l in untagged)
    assert not any(re.match(r"\* \d+ (EXPUNGE|FETCH)", l) for l in untagged)

    # The session's own EXPUNGE reports VANISHED too.
    a.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % u1)
    untagged = a.ok("EXPUNGE")
    assert untagged == ["* VANISHED %d" % u1], untagged
    # Sessions without UIDONLY keep message numbers.
    b2 = Client(server)
    b2.ok("SELECT Only6")
    assert b2.ok("UID SEARCH ALL") == ["* SEARCH"]
    a.close()
    b.close()
    b2.close()
