"""End-to-end tests of timsieved, the ManageSieve server (RFC 5804):
capabilities, STARTTLS, AUTHENTICATE through Cyrus SASL (sasldb), every
script command with its response codes, quotas, UTF-8 script names,
literals, hostile input, the on-disk layout lmtpd reads, and Debian's
sieve-connect against a real master on loopback."""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import unicodedata

import pytest

from columba import Instance, format_cyrus_conf, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2") or not shutil.which("openssl"),
    reason="needs saslpasswd2 (sasl2-bin) and openssl")

SERVERNAME = "columba.test"
USERS = {"alice": "wonderland", "bob": "builder", "carol": "singer",
         "dave": "denied", "erin": "quota"}
MAXSCRIPTS = 3
MAXSIZE = 4096

GOOD = b'require "fileinto";\r\nif header :contains "subject" "x" {\r\n' \
       b'  fileinto "INBOX.x";\r\n}\r\nkeep;\r\n'
BAD = b"keep;\r\nfrobnicate error;\r\n"


def _make_sasldb(path):
    for user, password in USERS.items():
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", path,
                        "-u", SERVERNAME, user],
                       input=password.encode(), check=True)
    os.chmod(path, 0o644)


def _make_cert(base):
    cert = os.path.join(base, "server.pem")
    key = os.path.join(base, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=" + SERVERNAME,
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


@pytest.fixture(scope="module")
def server():
    port = free_port()
    plain_port = free_port()
    inst = Instance(name="timsieved")
    # A second service with its own imapd.conf that allows plaintext
    # logins without TLS, for clients that never do STARTTLS.
    plain_conf = inst.path("plain.conf")
    inst.write_cyrus_conf(format_cyrus_conf(services=[
        ("sieve", {"cmd": program("sieve/timsieved"),
                   "listen": f"127.0.0.1:{port}"}),
        ("sieveplain", {"cmd": program("sieve/timsieved") + " -C "
                        + plain_conf,
                        "listen": f"127.0.0.1:{plain_port}"})]))
    sasldb = inst.path("sasldb2")
    _make_sasldb(sasldb)
    cert, key = _make_cert(inst.basedir)
    os.makedirs(inst.path("sieve"))
    inst.options.update({
        "servername": SERVERNAME,
        "allowplaintext": "no",
        "failedloginpause": "0",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
        "tls_server_cert": cert,
        "tls_server_key": key,
        "sievedir": inst.path("sieve"),
        "sieve_maxscripts": str(MAXSCRIPTS),
        "sieve_maxscriptsize": "4K",
    })
    inst.write_imapd_conf()
    with open(inst.imapd_conf) as f:
        conf = f.read().replace("allowplaintext: no", "allowplaintext: yes")
    with open(plain_conf, "w") as f:
        f.write(conf)
    inst.start()
    subprocess.run([program("imap/cyr_deny"), "-C", inst.imapd_conf,
                    "-m", "no sieve for you", "dave"], check=True)
    inst.port = port
    inst.plain_port = plain_port
    yield inst
    inst.stop()
    inst.cleanup()


# -- a small ManageSieve client ---------------------------------------------

class Response:
    def __init__(self, status, code, code_arg, text, lines):
        self.status = status        # "OK", "NO", "BYE"
        self.code = code            # "QUOTA/MAXSIZE", ... or None
        self.code_arg = code_arg    # the string after TAG / SASL
        self.text = text            # bytes or None
        self.lines = lines          # earlier lines, each a token list

    def __repr__(self):
        return (f"Response({self.status} ({self.code} {self.code_arg!r}) "
                f"{self.text!r}, {len(self.lines)} lines)")


class Client:
    """ManageSieve over a socket; tokens are bytes (strings) or str
    (atoms, "(" and ")")."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _byte(self):
        return self._take(1)

    def read_tokens(self):
        """One line of tokens (literals included)."""
        tokens = []
        while True:
            c = self._byte()
            if c == b" ":
                continue
            if c == b"\r":
                assert self._byte() == b"\n"
                return tokens
            if c in b"()":
                tokens.append(c.decode())
            elif c == b'"':
                s = b""
                while True:
                    c = self._byte()
                    if c == b"\\":
                        s += self._byte()
                    elif c == b'"':
                        break
                    else:
                        assert c not in b"\r\n"
                        s += c
                tokens.append(s)
            elif c == b"{":
                n = b""
                while (c := self._byte()) != b"}":
                    n += c
                assert self._take(2) == b"\r\n"
                tokens.append(self._take(int(n)))
            else:
                a = c
                while self.buf[:1] not in (b" ", b"\r", b"(", b")") \
                        or not self.buf:
                    if not self.buf:
                        self._fill()
                        continue
                    a += self._byte()
                tokens.append(a.decode())

    def response(self):
        """Read lines up to OK/NO/BYE."""
        lines = []
        while True:
            t = self.read_tokens()
            if t and isinstance(t[0], str) and t[0] in ("OK", "NO", "BYE"):
                status, rest = t[0], t[1:]
                code = code_arg = text = None
                if rest and rest[0] == "(":
                    end = rest.index(")")
                    code = rest[1]
                    if end > 2:
                        code_arg = rest[2]
                    rest = rest[end + 1:]
                if rest:
                    text = rest[0]
                return Response(status, code, code_arg, text, lines)
            lines.append(t)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def command(self, line, *literals):
        """Send `line` (str) followed by literals given as bytes; each
        literal is announced as {n+} in place of a "%L" in `line`."""
        data = line.encode()
        for lit in literals:
            data = data.replace(b"%L", b"{%d+}\r\n" % len(lit) + lit, 1)
        self.send(data + b"\r\n")
        return self.response()

    def starttls(self):
        r = self.command("STARTTLS")
        assert r.status == "OK"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname=SERVERNAME)
        self.buf = b""
        return self.response()

    def login(self, user="alice", password=None):
        ir = base64.b64encode(
            b"\0" + user.encode() + b"\0"
            + (password or USERS[user]).encode()).decode()
        return self.command(f'AUTHENTICATE "PLAIN" "{ir}"')

    def close(self):
        self.sock.close()


def connect(server):
    c = Client(server.port)
    greeting = c.response()
    assert greeting.status == "OK", greeting
    c.greeting = greeting
    return c


def session(server, user="alice"):
    c = connect(server)
    assert c.starttls().status == "OK"
    r = c.login(user)
    assert r.status == "OK", r
    return c


def caps(resp):
    return {line[0].decode(): (line[1] if len(line) > 1 else None)
            for line in resp.lines}


def listing(c):
    r = c.command("LISTSCRIPTS")
    assert r.status == "OK", r
    return [(line[0], len(line) > 1 and line[1] == "ACTIVE")
            for line in r.lines]


def user_dir(server, user):
    return os.path.join(server.path("sieve"), user[0], user)


def clean(c):
    """Remove every script of the logged-in user."""
    assert c.command('SETACTIVE ""').status == "OK"
    for name, _ in listing(c):
        assert c.command("DELETESCRIPT %L", name).status == "OK"


# -- capabilities, STARTTLS, AUTHENTICATE -----------------------------------

def test_greeting_is_capability_response(server):
    c = connect(server)
    cap = caps(c.greeting)
    assert cap["IMPLEMENTATION"].startswith(b"Columba")
    assert cap["VERSION"] == b"1.0"
    assert "STARTTLS" in cap and "UNAUTHENTICATE" in cap
    assert cap["SASL"] == b""           # PLAIN needs TLS here
    assert b"fileinto" in cap["SIEVE"].split()
    assert cap["MAXREDIRECTS"] == b"32"
    if b"enotify" in cap["SIEVE"].split():
        assert cap["NOTIFY"] == b"mailto"
    assert "OWNER" not in cap
    r = c.command("CAPABILITY")
    assert r.status == "OK" and caps(r) == cap
    assert c.command("LOGOUT").status == "OK"
    with pytest.raises(EOFError):
        c.read_tokens()


def test_starttls_resends_capabilities(server):
    c = connect(server)
    r = c.starttls()
    assert r.status == "OK"
    cap = caps(r)
    assert cap["SASL"] == b"PLAIN"
    assert "STARTTLS" not in cap
    r = c.command("STARTTLS")
    assert r.status == "NO"
    c.close()


def test_plaintext_needs_tls(server):
    c = connect(server)
    r = c.login()
    assert (r.status, r.code) == ("NO", "ENCRYPT-NEEDED")
    assert c.command('AUTHENTICATE "NOSUCH"').status == "NO"
    c.close()


def test_authenticate_forms(server):
    c = connect(server)
    c.starttls()
    # Wrong password, then no initial response: an empty challenge, the
    # response as a literal.
    assert c.login(password="wrong").status == "NO"
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.read_tokens() == [b""]
    ir = base64.b64encode(b"\0alice\0wonderland")
    c.send(b"{%d+}\r\n" % len(ir) + ir + b"\r\n")
    r = c.response()
    assert r.status == "OK", r
    cap = caps(c.command("CAPABILITY"))
    assert cap["OWNER"] == b"alice" and cap["SASL"] == b""
    assert "STARTTLS" not in cap
    assert c.command('AUTHENTICATE "PLAIN"').status == "NO"
    assert c.command("STARTTLS").status == "NO"

    # UNAUTHENTICATE: back to the start, TLS kept.
    assert c.command("UNAUTHENTICATE").status == "OK"
    assert c.command("LISTSCRIPTS").status == "NO"
    cap = caps(c.command("CAPABILITY"))
    assert "OWNER" not in cap and cap["SASL"] == b"PLAIN"
    assert c.command("UNAUTHENTICATE").status == "NO"

    # A quoted continuation, and "*" to abort.
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.read_tokens() == [b""]
    c.send('"*"\r\n')
    assert c.response().status == "NO"
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.read_tokens() == [b""]
    c.send('"%s"\r\n' % base64.b64encode(b"\0bob\0builder").decode())
    assert c.response().status == "OK"
    assert caps(c.command("CAPABILITY"))["OWNER"] == b"bob"
    c.close()


def test_denied_user(server):
    c = connect(server)
    c.starttls()
    r = c.login("dave")
    assert r.status == "NO"
    c.close()


def test_noop_and_logout(server):
    c = connect(server)
    r = c.command("NOOP")
    assert (r.status, r.code) == ("OK", None)
    r = c.command('NOOP "STARTTLS-SYNC-42"')
    assert (r.status, r.code, r.code_arg) == ("OK", "TAG",
                                              b"STARTTLS-SYNC-42")
    r = c.command("noop %L", b"multi\r\nline")
    assert (r.code, r.code_arg) == ("TAG", b"multi\r\nline")
    assert c.command("LOGOUT").status == "OK"
    c.close()


def test_commands_before_auth(server):
    c = connect(server)
    for line in ("LISTSCRIPTS", 'GETSCRIPT "a"', 'SETACTIVE "a"',
                 'DELETESCRIPT "a"', 'RENAMESCRIPT "a" "b"',
                 'HAVESPACE "a" 1', "UNAUTHENTICATE"):
        assert c.command(line).status == "NO", line
    assert c.command("PUTSCRIPT \"a\" %L", GOOD).status == "NO"
    assert c.command("CHECKSCRIPT %L", GOOD).status == "NO"
    assert c.command("NOOP").status == "OK"
    c.close()


# -- the script commands -----------------------------------------------------

def test_script_lifecycle(server):
    c = session(server, "alice")
    clean(c)
    d = user_dir(server, "alice")

    r = c.command('PUTSCRIPT "main" %L', GOOD)
    assert r.status == "OK", r
    assert c.command('PUTSCRIPT "spare" %L', b"keep;\r\n").status == "OK"
    assert listing(c) == [(b"main", False), (b"spare", False)]
    assert os.path.isfile(os.path.join(d, "main.script"))
    assert os.path.isfile(os.path.join(d, "main.bc"))
    with open(os.path.join(d, "main.script"), "rb") as f:
        assert f.read() == GOOD

    r = c.command('GETSCRIPT "main"')
    assert r.status == "OK" and r.lines == [[GOOD]]

    assert c.command('SETACTIVE "main"').status == "OK"
    assert listing(c) == [(b"main", True), (b"spare", False)]
    assert os.readlink(os.path.join(d, "defaultbc")) == "main.bc"

    r = c.command('DELETESCRIPT "main"')
    assert (r.status, r.code) == ("NO", "ACTIVE")
    r = c.command('RENAMESCRIPT "main" "spare"')
    assert (r.status, r.code) == ("NO", "ALREADYEXISTS")
    r = c.command('RENAMESCRIPT "main" "primary"')
    assert r.status == "OK", r
    assert listing(c) == [(b"primary", True), (b"spare", False)]
    assert os.readlink(os.path.join(d, "defaultbc")) == "primary.bc"
    assert not os.path.exists(os.path.join(d, "main.bc"))

    # Replacing the active script keeps it active.
    assert c.command('PUTSCRIPT "primary" %L', b"keep;\r\n").status == "OK"
    assert listing(c)[0] == (b"primary", True)

    assert c.command('SETACTIVE ""').status == "OK"
    assert listing(c) == [(b"primary", False), (b"spare", False)]
    assert not os.path.lexists(os.path.join(d, "defaultbc"))
    assert c.command('DELETESCRIPT "primary"').status == "OK"
    assert listing(c) == [(b"spare", False)]
    assert not os.path.exists(os.path.join(d, "primary.script"))

    # A script without bytecode (copied in by hand) is compiled when it
    # is activated.
    os.unlink(os.path.join(d, "spare.bc"))
    assert c.command('SETACTIVE "spare"').status == "OK"
    assert os.path.isfile(os.path.join(d, "spare.bc"))
    assert os.readlink(os.path.join(d, "defaultbc")) == "spare.bc"
    assert c.command('SETACTIVE ""').status == "OK"

    for line in ('GETSCRIPT "gone"', 'SETACTIVE "gone"',
                 'DELETESCRIPT "gone"', 'RENAMESCRIPT "gone" "x"'):
        r = c.command(line)
        assert (r.status, r.code) == ("NO", "NONEXISTENT"), line
    clean(c)
    c.close()


def test_synchronizing_literal(server):
    """A client sending "{n}" gets no continuation request (ManageSieve
    has none) and is taken like "{n+}"."""
    c = session(server, "bob")
    clean(c)
    c.send(b'PUTSCRIPT "sync" {5}\r\nkeep;\r\n')
    assert c.response().status == "OK"
    assert c.command('GETSCRIPT "sync"').lines == [[b"keep;"]]
    clean(c)
    c.close()


def test_check_and_errors(server):
    c = session(server, "bob")
    clean(c)
    assert c.command("CHECKSCRIPT %L", GOOD).status == "OK"
    r = c.command("CHECKSCRIPT %L", BAD)
    assert r.status == "NO" and b"line " in r.text
    r = c.command('PUTSCRIPT "bad" %L', BAD)
    assert r.status == "NO" and b"line 2" in r.text
    assert listing(c) == []
    # Quoted scripts are strings too.
    assert c.command('PUTSCRIPT "q" "keep;"').status == "OK"
    assert c.command('GETSCRIPT "q"').lines == [[b"keep;"]]
    clean(c)
    c.close()


def test_quotas(server):
    c = session(server, "erin")
    clean(c)
    r = c.command(f'HAVESPACE "x" {MAXSIZE + 1}')
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSIZE")
    assert c.command(f'HAVESPACE "x" {MAXSIZE}').status == "OK"

    big = b"keep;\r\n" + b"#" * MAXSIZE + b"\r\n"
    r = c.command('PUTSCRIPT "big" %L', big)
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSIZE")
    # The session stays in step after the refused literal.
    assert c.command("NOOP").status == "OK"

    for i in range(MAXSCRIPTS):
        assert c.command(f'PUTSCRIPT "s{i}" %L', b"keep;").status == "OK"
    r = c.command('PUTSCRIPT "one-more" %L', b"keep;")
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSCRIPTS")
    r = c.command('HAVESPACE "one-more" 10')
    assert (r.status, r.code) == ("NO", "QUOTA/MAXSCRIPTS")
    # Replacing one is fine at the limit.
    assert c.command('HAVESPACE "s0" 10').status == "OK"
    assert c.command('PUTSCRIPT "s0" %L', b"stop;").status == "OK"
    clean(c)
    c.close()


def test_utf8_names(server):
    c = session(server, "carol")
    clean(c)
    name = "Gr\u00fc\u00dfe \u20ac \"quoted\" \\ \U0001F4E7".encode()
    assert c.command("PUTSCRIPT %L %L", name, b"keep;").status == "OK"
    assert listing(c) == [(name, False)]
    assert c.command("SETACTIVE %L", name).status == "OK"
    assert listing(c) == [(name, True)]
    d = user_dir(server, "carol")
    assert os.fsencode(os.readlink(os.path.join(d, "defaultbc"))) == \
        name + b".bc"
    assert c.command("GETSCRIPT %L", name).lines == [[b"keep;"]]
    # The same name as a quoted string.
    r = c.command('GETSCRIPT "Gr\u00fc\u00dfe \u20ac \\"quoted\\" \\\\ '
                  '\U0001F4E7"')
    assert r.status == "OK" and r.lines == [[b"keep;"]]

    nfd = unicodedata.normalize("NFD", "caf\u00e9").encode()
    for bad in (b"bad\xff", b"over\xc0\xaf", nfd, b"tab\there",
                b"c1\xc2\x85", b"a/b", b".hidden", b"",
                b"x" * 201):
        r = c.command("PUTSCRIPT %L %L", bad, b"keep;")
        assert r.status == "NO", bad
    assert listing(c) == [(name, True)]
    clean(c)
    c.close()


# -- hostile input -----------------------------------------------------------

def test_malformed_commands(server):
    c = session(server, "alice")
    for line in ("FROBNICATE", "", "X" * 100, 'LISTSCRIPTS "extra"',
                 'GETSCRIPT "a" "b" "c"', 'HAVESPACE "a" 99999999999',
                 'HAVESPACE "a" "b"', 'GETSCRIPT 12', 'GETSCRIPT "open',
                 'GETSCRIPT "bad\\escape"', 'GETSCRIPT {x+}',
                 "GETSCRIPT\t\"a\""):
        r = c.command(line)
        assert r.status == "NO", line
    # A NUL in a quoted string, a literal that is not a name.
    c.send(b'GETSCRIPT "a\0b"\r\n')
    assert c.response().status == "NO"
    assert c.command("NOOP").status == "OK"
    c.close()


def test_huge_literal_refused_unread(server):
    c = session(server, "alice")
    c.send(b'PUTSCRIPT "huge" {2000000000+}\r\n')
    r = c.response()
    assert r.status == "BYE"
    with pytest.raises((EOFError, ConnectionResetError)):
        c.read_tokens()
    c.close()

    # Before login the bound is small and nothing is skipped.
    c = connect(server)
    c.send(b'AUTHENTICATE "PLAIN" {100000+}\r\n')
    assert c.response().status == "BYE"
    c.close()

    # Nor in an AUTHENTICATE continuation.
    c = connect(server)
    c.starttls()
    c.send('AUTHENTICATE "PLAIN"\r\n')
    assert c.read_tokens() == [b""]
    c.send(b"{100000+}\r\n")
    assert c.response().status == "BYE"
    c.close()

    # The server carries on.
    c = session(server, "alice")
    assert c.command("NOOP").status == "OK"
    c.close()


def test_failed_logins_end_session(server):
    c = connect(server)
    c.starttls()
    assert c.login(password="x").status == "NO"
    assert c.login(password="y").status == "NO"
    r = c.login(password="z")
    assert r.status == "NO"
    assert c.response().status == "BYE"
    c.close()


# -- a real client -----------------------------------------------------------

def test_sieve_connect(server, tmp_path):
    if not shutil.which("sieve-connect"):
        pytest.skip("sieve-connect is not installed")
    local = tmp_path / "vacation.sieve"
    local.write_bytes(GOOD)
    back = tmp_path / "back.sieve"

    def run(*args):
        rfd, wfd = os.pipe()
        os.write(wfd, b"wonderland\n")
        os.close(wfd)
        try:
            p = subprocess.run(
                ["sieve-connect", "--server", "127.0.0.1", "--nosrv",
                 "--port", str(server.port), "--user", "alice",
                 "--authmech", "PLAIN", "--notlsverify", "--noclearchan",
                 "--passwordfd", str(rfd)] + list(args),
                capture_output=True, timeout=30, pass_fds=(rfd,),
                stdin=subprocess.DEVNULL)
        finally:
            os.close(rfd)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout.decode() + p.stderr.decode()

    c = session(server, "alice")
    clean(c)
    c.close()
    run("--localsieve", str(local), "--upload")
    assert "vacation.sieve" in run("--list")
    run("--remotesieve", "vacation.sieve", "--activate")
    assert "vacation.sieve" in run("--list")
    d = user_dir(server, "alice")
    assert os.readlink(os.path.join(d, "defaultbc")) == "vacation.sieve.bc"
    run("--remotesieve", "vacation.sieve", "--localsieve", str(back),
        "--download")
    assert back.read_bytes() == GOOD
    run("--deactivate")
    assert not os.path.lexists(os.path.join(d, "defaultbc"))
    run("--remotesieve", "vacation.sieve", "--delete")
    assert "vacation.sieve" not in run("--list")


def test_sieveshell(server, tmp_path):
    """Cyrus's own client (Debian's cyrus-admin) against us."""
    if not shutil.which("sieveshell"):
        pytest.skip("sieveshell is not installed")
    c = session(server, "bob")
    clean(c)
    c.close()
    local = tmp_path / "filter"
    local.write_bytes(GOOD)
    back = tmp_path / "filter.back"
    script = (f"put {local} filter\nactivate filter\nlist\n"
              f"get filter {back}\n")
    p = subprocess.run(
        ["sieveshell", "-a", "bob", "-u", "bob", "-p", USERS["bob"],
         "-e", script, f"127.0.0.1:{server.plain_port}"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    out = p.stdout.decode() + p.stderr.decode()
    assert "filter  <- active script" in out, out
    assert back.read_bytes() == GOOD
    c = session(server, "bob")
    assert listing(c) == [(b"filter", True)]
    clean(c)
    c.close()
