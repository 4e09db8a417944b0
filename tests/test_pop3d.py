"""End-to-end tests of pop3d (RFC 1939, RFC 2449 CAPA and response
codes, RFC 5034 AUTH, RFC 2595 STLS) with Python's poplib against a real
master on loopback.  Messages are put into mailboxes with IMAP APPEND
through imapd, which also checks what POP3 did to the mailbox."""

import base64
import imaplib
import os
import poplib
import re
import shutil
import socket
import ssl
import subprocess

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2") or not shutil.which("openssl"),
    reason="needs saslpasswd2 (sasl2-bin) and openssl")

SERVERNAME = "columba.test"
ADMIN = ("admin", "s3cret")


def message(n, body=None):
    """A small RFC 5322 message numbered `n`, CRLF line ends."""
    body = body or f"Body of message {n}\r\nSecond line\r\n"
    return (f"From: sender@example.com\r\n"
            f"To: rcpt@example.com\r\n"
            f"Subject: message {n}\r\n"
            f"Message-ID: <m{n}@example.com>\r\n"
            f"\r\n{body}").encode()


def make_cert(base):
    cert = os.path.join(base, "server.pem")
    key = os.path.join(base, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=" + SERVERNAME,
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PopServer:
    """An instance running imapd, pop3d and pop3d -s, with a sasldb to
    which users are added as tests need them."""

    def __init__(self, make_instance, name, **options):
        self.port = free_port()
        self.sport = free_port()
        self.iport = free_port()
        pop3d = program("imap/pop3d")
        self.inst = make_instance(services=[
            ("imap", {"cmd": program("imap/imapd"),
                      "listen": f"127.0.0.1:{self.iport}"}),
            ("pop3", {"cmd": pop3d, "listen": f"127.0.0.1:{self.port}"}),
            ("pop3s", {"cmd": pop3d + " -s",
                       "listen": f"127.0.0.1:{self.sport}"})], name=name)
        self.sasldb = self.inst.path("sasldb2")
        cert, key = make_cert(self.inst.basedir)
        self.inst.options.update({
            "servername": SERVERNAME,
            "admins": ADMIN[0],
            "allowplaintext": "yes",
            "autocreate_quota": "0",
            "failedloginpause": "0",
            "sasl_pwcheck_method": "auxprop",
            "sasl_auxprop_plugin": "sasldb",
            "sasl_sasldb_path": self.sasldb,
            "sasl_mech_list": "PLAIN",
            "tls_server_cert": cert,
            "tls_server_key": key,
            "popexpiretime": "30",
        })
        self.inst.options.update(options)
        self.inst.write_imapd_conf()
        self.add_user(*ADMIN)
        self.inst.start()
        self.passwords = {}

    def add_user(self, user, password):
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", self.sasldb,
                        "-u", SERVERNAME, user],
                       input=password.encode(), check=True)
        os.chmod(self.sasldb, 0o644)

    def user(self, name, messages=()):
        """Create user `name` (password "pw-<name>") and append
        `messages` to its INBOX; returns the password."""
        password = "pw-" + name
        self.add_user(name, password)
        m = self.imap(name, password)
        for msg in messages:
            assert m.append("INBOX", None, None, msg)[0] == "OK"
        m.logout()
        return password

    def imap(self, user, password=None):
        m = imaplib.IMAP4("127.0.0.1", self.iport, timeout=10)
        m.starttls(ssl_context=tls_context())
        m.login(user, password or "pw-" + user)
        return m

    def pop(self, user=None, password=None):
        """A poplib session, logged in with USER/PASS when `user`."""
        p = poplib.POP3("127.0.0.1", self.port, timeout=10)
        if user:
            p.user(user)
            p.pass_(password or "pw-" + user)
        return p

    def raw(self):
        c = self.inst.connect(self.port)
        greeting = c.readline()
        assert greeting.startswith("+OK")
        return c

    def log(self):
        return self.inst.log()


@pytest.fixture(scope="module")
def make_module_instance():
    made = []

    def factory(**kwargs):
        inst = Instance(**kwargs)
        made.append(inst)
        return inst
    yield factory
    for inst in made:
        inst.stop()
        inst.cleanup()


@pytest.fixture(scope="module")
def server(make_module_instance):
    return PopServer(make_module_instance, "pop3d")


def multiline(c):
    """Read a multi-line POP3 reply body after its +OK line."""
    lines = []
    while True:
        line = c.readline()
        if line == ".":
            return lines
        lines.append(line)


# -- greeting and capabilities -------------------------------------------

def test_greeting_and_capa(server):
    p = server.pop()
    greeting = p.getwelcome().decode()
    assert greeting.startswith("+OK " + SERVERNAME)
    assert re.search(r"<[0-9.]+@" + re.escape(SERVERNAME) + ">$", greeting)
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE",
                "PIPELINING", "STLS"):
        assert cap in caps, caps
    assert caps["SASL"] == ["PLAIN"]
    assert caps["EXPIRE"] == ["30"]
    assert caps["IMPLEMENTATION"][0].startswith("Columba")
    assert "LOGIN-DELAY" not in caps
    p.quit()

    server.user("capa")
    p = server.pop("capa")
    caps = p.capa()
    assert "TOP" in caps and "UIDL" in caps
    for cap in ("USER", "SASL", "STLS"):
        assert cap not in caps
    p.quit()


# -- the basic commands ----------------------------------------------------

def test_stat_list_retr_uidl(server):
    msgs = [message(i) for i in range(1, 4)]
    server.user("basic", msgs)
    p = server.pop("basic")
    count, total = p.stat()
    assert count == 3 and total == sum(len(m) for m in msgs)
    resp, listing, _ = p.list()
    assert resp.startswith(b"+OK")
    assert listing == [f"{i} {len(m)}".encode()
                       for i, m in enumerate(msgs, 1)]
    assert p.list(2) == f"+OK 2 {len(msgs[1])}".encode()
    resp, lines, octets = p.retr(2)
    assert resp.startswith(b"+OK")
    assert b"\r\n".join(lines) + b"\r\n" == msgs[1]
    resp, uidls, _ = p.uidl()
    ids = [u.split()[1] for u in uidls]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(rb"\d+\.\d+", i) for i in ids)
    assert p.uidl(3).split()[2] == ids[2]
    assert p.noop().startswith(b"+OK")
    p.quit()
    assert "user=basic mech=USER" in server.log()
    assert "pw-basic" not in server.log()


def test_top(server):
    msg = message(1, "line one\r\nline two\r\nline three\r\n")
    server.user("top", [msg])
    p = server.pop("top")
    header, body = msg.split(b"\r\n\r\n", 1)
    resp, lines, _ = p.top(1, 0)
    assert lines == header.split(b"\r\n") + [b""]
    resp, lines, _ = p.top(1, 2)
    assert lines[-3:] == [b"", b"line one", b"line two"]
    resp, lines, _ = p.top(1, 1000)
    assert b"\r\n".join(lines) + b"\r\n" == msg
    with pytest.raises(poplib.error_proto):
        p.top(1, -1)
    with pytest.raises(poplib.error_proto):
        p.top(2, 0)
    p.quit()


def test_dele_rset_and_quit_expunges(server):
    server.user("dele", [message(i) for i in range(1, 5)])
    p = server.pop("dele")
    uidls = p.uidl()[1]
    assert p.dele(1).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match="already deleted"):
        p.dele(1)
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    assert p.stat()[0] == 3
    assert len(p.list()[1]) == 3
    assert p.rset().startswith(b"+OK")
    assert p.stat()[0] == 4
    p.dele(2)
    p.dele(4)
    assert p.quit().startswith(b"+OK")

    p = server.pop("dele")
    assert p.stat()[0] == 2
    # Survivors keep their UIDLs; the message numbers are renumbered.
    assert [u.split()[1] for u in p.uidl()[1]] == \
        [uidls[0].split()[1], uidls[2].split()[1]]
    p.quit()
    m = server.imap("dele")
    assert m.select("INBOX")[1] == [b"2"]
    m.logout()
    server.inst.wait_for_log(r"expunged .*user=dele .*deleted=2 expunged=2")


def test_dropped_connection_expunges_nothing(server):
    server.user("drop", [message(1), message(2)])
    p = server.pop("drop")
    p.dele(1)
    p.dele(2)
    p.sock.close()
    p = server.pop("drop")
    assert p.stat()[0] == 2
    p.quit()


def test_quit_in_authorization_state(server):
    c = server.raw()
    assert c.command("QUIT").startswith("+OK")
    with pytest.raises(EOFError):
        c.readline()
    c.close()


# -- message transparency --------------------------------------------------

def test_dot_stuffing(server):
    body = ".starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
    msg = message(1, body)
    server.user("dots", [msg])
    c = server.raw()
    c.send_line("USER dots")
    assert c.readline().startswith("+OK")
    c.send_line("PASS pw-dots")
    assert c.readline().startswith("+OK")
    c.send_line("RETR 1")
    assert c.readline().startswith("+OK")
    lines = multiline(c)
    assert lines[-4:] == ["..starts with a dot", "...two dots", "..", "end"]
    c.send_line("TOP 1 2")
    assert c.readline().startswith("+OK")
    assert multiline(c)[-2:] == ["..starts with a dot", "...two dots"]
    c.close()
    # poplib undoes the stuffing: the message comes back unchanged.
    p = server.pop("dots")
    assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == msg
    p.quit()


def test_header_dot_and_bare_lf(server):
    """A stored message with bare LF line ends goes out with CRLF."""
    server.user("barelf")
    m = server.imap("barelf")
    raw = b"Subject: lf\n.X-Dot: yes\n\nline\n.dot\nlast"
    typ, _ = m.append("INBOX", None, None, raw)
    m.logout()
    assert typ == "OK"
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER barelf\r\nPASS pw-barelf\r\nRETR 1\r\n")
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK")
    data = b""
    while not data.endswith(b"\r\n.\r\n"):
        chunk = f.readline()
        assert chunk
        data += chunk
    s.close()
    assert b"\n" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert b"..X-Dot: yes" in lines
    assert b"..dot" in lines
    assert lines[-3:] == [b"last", b".", b""]


# -- stability and concurrency ---------------------------------------------

def test_uidl_stable_across_sessions_and_reconstruct(server):
    server.user("stable", [message(i) for i in range(1, 4)])
    p = server.pop("stable")
    before = p.uidl()[1]
    p.quit()
    p = server.pop("stable")
    assert p.uidl()[1] == before
    p.quit()
    r = subprocess.run([program("imap/reconstruct"), "-C",
                        server.inst.imapd_conf, "user/stable"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p = server.pop("stable")
    assert p.uidl()[1] == before
    p.quit()


def test_concurrent_pop_and_imap_sessions(server):
    msgs = [message(i) for i in range(1, 5)]
    server.user("shared", msgs)
    a = server.pop("shared")
    b = server.pop("shared")
    m = server.imap("shared")
    assert m.select("INBOX")[1] == [b"4"]
    assert a.stat()[0] == 4 and b.stat()[0] == 4

    a.dele(1)
    a.dele(2)
    assert a.quit().startswith(b"+OK")
    # b keeps its snapshot: still four messages and the same numbers ...
    assert b.stat()[0] == 4
    assert len(b.uidl()[1]) == 4
    # ... but a message expunged by `a` can no longer be read.
    with pytest.raises(poplib.error_proto, match="removed"):
        b.retr(1)
    assert b"\r\n".join(b.retr(3)[1]) + b"\r\n" == msgs[2]
    # Deleting an already expunged message is harmless at QUIT.
    b.dele(2)
    b.dele(4)
    assert b.quit().startswith(b"+OK")

    m.noop()
    assert m.select("INBOX")[1] == [b"1"]
    m.logout()
    c = server.pop("shared")
    assert c.stat()[0] == 1
    assert b"\r\n".join(c.retr(1)[1]) + b"\r\n" == msgs[2]
    c.quit()


def test_pipelining(server):
    server.user("pipe", [message(1), message(2)])
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER pipe\r\nPASS pw-pipe\r\nSTAT\r\nLIST 1\r\n"
              b"UIDL 2\r\nNOOP\r\nQUIT\r\n")
    replies = [f.readline() for _ in range(7)]
    s.close()
    assert all(r.startswith(b"+OK") for r in replies), replies
    assert replies[2].startswith(b"+OK 2 ")


# -- authentication ------------------------------------------------------

def test_pass_wrong_and_before_user(server):
    server.user("wrong")
    c = server.raw()
    assert c.command("PASS pw-wrong").startswith("-ERR")
    assert c.command("USER wrong").startswith("+OK")
    reply = c.command("PASS nope")
    assert reply.startswith("-ERR [AUTH]")
    assert c.command("STAT").startswith("-ERR")
    # USER is forgotten after a PASS.
    assert c.command("PASS pw-wrong").startswith("-ERR")
    assert c.command("USER wrong").startswith("+OK")
    assert c.command("PASS pw-wrong").startswith("+OK")
    c.close()
    assert "nope" not in server.log()


def test_pass_with_spaces(server):
    server.add_user("spacey", "a b  c")
    p = server.pop("spacey", "a b  c")
    assert p.stat()[0] == 0
    p.quit()


def test_apop(server):
    server.user("apop", [message(1)])
    p = poplib.POP3("127.0.0.1", server.port, timeout=10)
    assert p.apop("apop", "pw-apop").startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()
    p = poplib.POP3("127.0.0.1", server.port, timeout=10)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.apop("apop", "wrong")
    p.quit()


def test_auth_plain(server):
    server.user("sasl", [message(1)])
    # With an initial response.
    c = server.raw()
    ir = base64.b64encode(b"\0sasl\0pw-sasl").decode()
    assert c.command("AUTH PLAIN " + ir).startswith("+OK")
    assert c.command("STAT").startswith("+OK 1 ")
    c.close()
    # Without: an empty challenge first.
    c = server.raw()
    assert c.command("AUTH PLAIN") == "+ "
    assert c.command(ir).startswith("+OK")
    c.close()
    # Cancelled, then a wrong password, then an unknown mechanism.
    c = server.raw()
    assert c.command("AUTH PLAIN") == "+ "
    assert c.command("*").startswith("-ERR")
    bad = base64.b64encode(b"\0sasl\0nope").decode()
    assert c.command("AUTH PLAIN " + bad).startswith("-ERR [AUTH]")
    assert c.command("AUTH X-NOPE").startswith("-ERR")
    assert c.command("AUTH PLAIN !!!").startswith("-ERR")
    # A response over the bound is refused, and the session goes on.
    assert c.command("AUTH PLAIN") == "+ "
    assert c.command("A" * 40000).startswith("-ERR")
    assert c.command("AUTH PLAIN " + ir).startswith("+OK")
    c.close()
    # AUTH alone lists the mechanisms.
    c = server.raw()
    assert c.command("AUTH").startswith("+OK")
    assert multiline(c) == ["PLAIN"]
    c.close()


def test_auth_proxy_authorization(server):
    """An admin may act as another user; an ordinary user may not."""
    server.user("target", [message(1), message(2)])
    server.user("other")
    c = server.raw()
    ir = base64.b64encode(b"target\0other\0pw-other").decode()
    assert c.command("AUTH PLAIN " + ir).startswith("-ERR")
    ir = base64.b64encode(b"target\0admin\0s3cret").decode()
    assert c.command("AUTH PLAIN " + ir).startswith("+OK")
    assert c.command("STAT").startswith("+OK 2 ")
    c.close()
    server.inst.wait_for_log(r"login .*user=target authcid=admin mech=PLAIN")


def test_stls(server):
    server.user("stls", [message(1)])
    p = poplib.POP3("127.0.0.1", server.port, timeout=10)
    assert p.stls(context=tls_context()).startswith(b"+OK")
    assert "STLS" not in p.capa()
    p.user("stls")
    p.pass_("pw-stls")
    assert p.stat()[0] == 1
    p.quit()
    server.inst.wait_for_log(r"login .*user=stls mech=USER tls=1")


def test_stls_discards_pipelined_plaintext(server):
    # Commands sent in plaintext behind STLS are never run (the classic
    # STARTTLS command injection).
    server.user("stlsinject", [message(1)])
    c = server.raw()
    c.send(b"STLS\r\nUSER stlsinject\r\nPASS pw-stlsinject\r\n")
    assert c.readline().startswith("+OK")
    t = tls_context().wrap_socket(c.sock, server_hostname=SERVERNAME)
    t.sendall(b"STAT\r\n")
    assert t.makefile("rb").readline().startswith(b"-ERR")
    t.close()
    server.inst.wait_for_log(r"plaintext after STARTTLS discarded")


def test_implicit_tls(server):
    server.user("pop3s", [message(1)])
    p = poplib.POP3_SSL("127.0.0.1", server.sport, context=tls_context(),
                        timeout=10)
    assert "STLS" not in p.capa()
    p.user("pop3s")
    p.pass_("pw-pop3s")
    assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == message(1)
    p.quit()


def test_implicit_tls_without_certificate_is_logged(make_module_instance):
    port = free_port()
    inst = make_module_instance(services=[
        ("pop3s", {"cmd": program("imap/pop3d") + " -s",
                   "listen": f"127.0.0.1:{port}"})], name="pop3d-nocert")
    inst.write_imapd_conf()
    inst.start()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    inst.wait_for_log(r"TLS unavailable.*needs tls_server_cert")
    s.close()


def test_denied_user(server):
    server.user("denied")
    subprocess.run([program("imap/cyr_deny"), "-C", server.inst.imapd_conf,
                    "-m", "Go away", "denied"], check=True)
    c = server.raw()
    c.command("USER denied")
    reply = c.command("PASS pw-denied")
    assert reply.startswith("-ERR") and "Go away" in reply
    c.close()


# -- hostile input -------------------------------------------------------

def test_hostile_input(server):
    server.user("hostile", [message(1)])
    c = server.raw()
    assert c.command("X" * 10240).startswith("-ERR")
    c.send(b"US\0ER hostile\r\n")
    assert c.readline().startswith("-ERR")
    assert c.command("FROB").startswith("-ERR")
    assert c.command("").startswith("-ERR")
    assert c.command("RETR 1").startswith("-ERR")
    assert c.command("USER a b c d").startswith("-ERR")
    assert c.command("USER hostile").startswith("+OK")
    assert c.command("PASS pw-hostile").startswith("+OK")
    for bad in ("RETR 0", "RETR 2", "RETR -1", "RETR abc",
                "RETR 99999999999999999999", "TOP 1", "TOP 1 x",
                "DELE", "LIST 1 2", "USER again", "STLS", "X" * 300):
        assert c.command(bad).startswith("-ERR"), bad
    c.send(b"NOOP\0\r\n")
    assert c.readline().startswith("-ERR")
    # The session still works.
    assert c.command("STAT").startswith("+OK 1 ")
    assert c.command("QUIT").startswith("+OK")
    c.close()


# -- options ---------------------------------------------------------------

@pytest.fixture(scope="module")
def strict(make_module_instance):
    return PopServer(make_module_instance, "pop3d-strict",
                     allowplaintext="no", popminpoll="1",
                     popuseacl="yes", popuseimapflags="yes",
                     popexpiretime="-1", serverinfo="off")


def test_plaintext_needs_tls(strict):
    strict.user("plain", [message(1)])
    p = strict.pop()
    caps = p.capa()
    assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
    assert caps["EXPIRE"] == ["NEVER"]
    assert caps["LOGIN-DELAY"] == ["60"]
    assert "IMPLEMENTATION" not in caps
    with pytest.raises(poplib.error_proto):
        p.user("plain")
    p.stls(context=tls_context())
    caps = p.capa()
    assert "USER" in caps and caps["SASL"] == ["PLAIN"]
    p.user("plain")
    p.pass_("pw-plain")
    p.quit()


def login_tls(server, user):
    p = poplib.POP3("127.0.0.1", server.port, timeout=10)
    p.stls(context=tls_context())
    p.user(user)
    p.pass_("pw-" + user)
    return p


def test_login_delay_enforced(strict):
    strict.user("delay", [message(1)])
    p = login_tls(strict, "delay")
    p.quit()
    p = poplib.POP3("127.0.0.1", strict.port, timeout=10)
    p.stls(context=tls_context())
    p.user("delay")
    with pytest.raises(poplib.error_proto, match=r"\[LOGIN-DELAY\]"):
        p.pass_("pw-delay")
    p.quit()


def test_popuseimapflags_seen_and_deleted(strict):
    strict.user("flags", [message(1), message(2), message(3)])
    m = strict.imap("flags")
    m.select("INBOX")
    m.store("3", "+FLAGS", "\\Deleted")
    m.logout()
    p = login_tls(strict, "flags")
    # The \Deleted message is hidden from POP3.
    assert p.stat()[0] == 2
    p.retr(1)
    p.top(2, 0)
    p.quit()
    m = strict.imap("flags")
    m.select("INBOX")
    flags = m.fetch("1:3", "FLAGS")[1]
    m.logout()
    assert b"\\Seen" in flags[0]          # RETR sets \Seen
    assert b"\\Seen" not in flags[1]      # TOP does not


def test_popuseacl(strict):
    strict.user("acl", [message(1)])
    strict.user("acl2", [message(1)])
    m = strict.imap(*ADMIN)
    assert m.setacl("user/acl", "acl", "lkxa")[0] == "OK"
    assert m.setacl("user/acl2", "acl2", "lrskxa")[0] == "OK"
    m.logout()
    p = poplib.POP3("127.0.0.1", strict.port, timeout=10)
    p.stls(context=tls_context())
    p.user("acl")
    with pytest.raises(poplib.error_proto, match="not readable"):
        p.pass_("pw-acl")
    p.quit()
    p = login_tls(strict, "acl2")
    assert p.retr(1)[0].startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match="Permission"):
        p.dele(1)
    p.quit()
