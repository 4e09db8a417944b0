"""End-to-end tests of lmtpd (RFC 2033) and deliver: per-recipient
outcomes, dot-stuffing, bare LF, the size limit, plus-addressing,
shared-folder delivery, virtual domains, pipelining, hostile input,
AUTH and STARTTLS, spoken with smtplib.LMTP and raw sockets against a
real master on loopback, with messages read back over IMAP."""

import base64
import imaplib
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2") or not shutil.which("openssl"),
    reason="needs saslpasswd2 (sasl2-bin) and openssl")

SERVERNAME = "columba.test"
USERS = {"admin": "s3cret", "alice": "wonderland", "bob": "builder",
         "carol": "singer", "dave": "denied", "mta": "relay"}
MAXSIZE = 20000
FOLDER = "Entw&APw-rfe"         # modified UTF-7 for "Entwuerfe" with u-umlaut


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


def imap_admin(server):
    m = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    m.login("admin", USERS["admin"])
    return m


def start_server(extra_options=None):
    """A master with imapd, lmtpd -a on TCP, lmtpd without -a on TCP and
    lmtpd on the Unix socket, the users of USERS in sasldb."""
    imap_port, lmtp_port, auth_port = free_port(), free_port(), free_port()
    inst = Instance(name="lmtpd")
    sock = inst.path("run", "lmtp.sock")
    inst.write_cyrus_conf(
        "SERVICES {\n"
        f'  imap cmd="{program("imap/imapd")}" '
        f'listen="127.0.0.1:{imap_port}"\n'
        f'  lmtp cmd="{program("imap/lmtpd")} -a" '
        f'listen="127.0.0.1:{lmtp_port}"\n'
        f'  lmtpauth cmd="{program("imap/lmtpd")}" '
        f'listen="127.0.0.1:{auth_port}"\n'
        f'  lmtpunix cmd="{program("imap/lmtpd")}" listen="{sock}"\n'
        "}\n")
    sasldb = inst.path("sasldb2")
    _make_sasldb(sasldb)
    cert, key = _make_cert(inst.basedir)
    inst.options.update({
        "servername": SERVERNAME,
        "admins": "admin",
        "allowplaintext": "yes",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN SCRAM-SHA-1",
        "tls_server_cert": cert,
        "tls_server_key": key,
        "maxmessagesize": str(MAXSIZE),
        "virtdomains": "userid",
        "defaultdomain": SERVERNAME,
        "postuser": "bb",
        "lmtpsocket": sock,
    })
    inst.options.update(extra_options or {})
    inst.write_imapd_conf()
    inst.start()
    inst.imap_port, inst.lmtp_port, inst.auth_port = (imap_port, lmtp_port,
                                                      auth_port)
    inst.sock = sock
    return inst


@pytest.fixture(scope="module")
def server():
    inst = start_server()
    m = imap_admin(inst)
    for name in ("user/alice", "user/bob", "user/carol", "user/dave",
                 "user/alice/" + FOLDER, "user/alice/Private",
                 "shared/news", "shared/closed", "user/bob@example.org"):
        assert m.create(name)[0] == "OK", name
    assert m.setacl("user/alice/" + FOLDER, "anyone", "p")[0] == "OK"
    assert m.setacl("shared/news", "anyone", "lrp")[0] == "OK"
    assert m.setacl("user/bob@example.org", "admin", "lr")[0] == "OK"
    assert m.setacl("shared/news", "admin", "lr")[0] == "OK"
    assert m.setquota("user/carol", "(STORAGE 1)")[0] == "OK"
    m.logout()
    subprocess.run([program("imap/cyr_deny"), "-C", inst.imapd_conf,
                    "-s", "lmtp*", "dave"], check=True)
    yield inst
    inst.stop()
    inst.cleanup()


def message(subject, body="Hello.\r\n", msgid=None, extra=""):
    msgid = msgid or "<%s.%f@test>" % (subject.replace(" ", "-"),
                                       time.time())
    return ("From: Sender <sender@example.net>\r\n"
            "To: someone@columba.test\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: {msgid}\r\n"
            f"{extra}"
            "\r\n" + body)


def lmtp(server, port=None):
    c = smtplib.LMTP("127.0.0.1", port or server.lmtp_port, timeout=20)
    code, _ = c.ehlo("client.example")
    assert code == 250
    return c


def raw(server, port=None):
    s = socket.create_connection(("127.0.0.1", port or server.lmtp_port),
                                 timeout=20)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    return s, f


def read_reply(f):
    """One possibly multi-line reply as (code, [lines])."""
    lines = []
    while True:
        line = f.readline().decode().rstrip("\r\n")
        assert line, "connection closed"
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return int(line[:3]), lines


def user_messages(server, user, mailbox="INBOX"):
    """The raw messages in `mailbox` of `user`, read over IMAP."""
    m = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    m.login(user, USERS[user])
    return _fetch_all(m, mailbox)


def admin_messages(server, mailbox):
    return _fetch_all(imap_admin(server), mailbox)


def _fetch_all(m, mailbox):
    typ, data = m.select('"%s"' % mailbox, readonly=True)
    assert typ == "OK", (mailbox, data)
    out = []
    if int(data[0]) > 0:
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        out = [d[1] for d in data if isinstance(d, tuple)]
    m.logout()
    return out


def find(msgs, subject):
    return [m for m in msgs if b"Subject: " + subject.encode() in m]


def send_data(c, msg, nrcpt):
    """DATA on an smtplib connection with `nrcpt` accepted recipients;
    returns one (code, text) per recipient, as LMTP answers."""
    code, _ = c.docmd("DATA")
    assert code == 354
    data = re.sub(rb"(?m)^\.", b"..", msg.encode())
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    c.send(data + b".\r\n")
    return [c.getreply() for _ in range(nrcpt)]


# -- session basics ----------------------------------------------------------

def test_greeting_and_lhlo_keywords(server):
    c = smtplib.LMTP("127.0.0.1", server.auth_port, timeout=10)
    code, text = c.ehlo("client.example")
    assert code == 250
    lines = text.decode().split("\n")
    assert lines[0] == SERVERNAME
    for kw in ("8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING",
               "SIZE %d" % MAXSIZE, "STARTTLS", "IGNOREQUOTA"):
        assert kw in lines, kw
    assert any(l.startswith("AUTH ") and "PLAIN" in l for l in lines)
    assert c.docmd("NOOP")[0] == 250
    assert c.docmd("HELO", "x")[0] == 500
    assert c.docmd("VRFY", "alice")[0] == 252
    assert c.docmd("QUIT")[0] == 221
    c.close()


def test_tcp_without_preauth_needs_auth(server):
    c = lmtp(server, server.auth_port)
    code, text = c.docmd("MAIL", "FROM:<a@example.net>")
    assert code == 530 and text.startswith(b"5.7.0")
    assert c.docmd("AUTH", "PLAIN " + base64.b64encode(
        b"\0mta\0wrong").decode())[0] == 535
    code, _ = c.docmd("AUTH", "PLAIN " + base64.b64encode(
        b"\0mta\0relay").decode())
    assert code == 235
    assert c.docmd("AUTH", "PLAIN x")[0] == 503
    assert c.mail("a@example.net")[0] == 250
    assert c.rcpt("alice@columba.test")[0] == 250
    replies = send_data(c, message("authenticated delivery"), 1)
    assert replies[0][0] == 250
    c.quit()
    got = find(user_messages(server, "alice"), "authenticated delivery")
    assert len(got) == 1
    assert re.search(rb"\r\n\tby columba\.test \(Columba lmtpd\) with LMTPA "
                     rb"id lmtp-", got[0])


def test_auth_exchange_with_challenge_and_cancel(server):
    s, f = raw(server, server.auth_port)
    s.sendall(b"LHLO x\r\nAUTH PLAIN\r\n")
    assert read_reply(f)[0] == 250
    assert read_reply(f)[1] == ["334 "]
    s.sendall(b"*\r\n")
    assert read_reply(f)[0] == 501
    s.sendall(b"AUTH PLAIN\r\n")
    assert read_reply(f)[0] == 334
    s.sendall(b"not base64!\r\n")
    assert read_reply(f)[0] == 501
    s.sendall(b"AUTH PLAIN\r\n")
    assert read_reply(f)[0] == 334
    s.sendall(base64.b64encode(b"\0mta\0relay") + b"\r\n")
    assert read_reply(f)[0] == 235
    s.sendall(b"MAIL FROM:<a@example.net>\r\nQUIT\r\n")
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 221
    s.close()
    assert "relay" not in server.log()


def test_starttls_then_auth(server):
    c = lmtp(server, server.auth_port)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    code, _ = c.starttls(context=ctx)
    assert code == 220
    code, text = c.ehlo("client.example")
    assert code == 250 and b"STARTTLS" not in text
    c.login("mta", "relay")
    assert c.mail("a@example.net")[0] == 250
    assert c.rcpt("bob@columba.test")[0] == 250
    assert send_data(c, message("over tls"), 1)[0][0] == 250
    c.quit()
    got = find(user_messages(server, "bob"), "over tls")
    assert len(got) == 1 and b" with LMTPSA id " in got[0]


def test_starttls_forgets_auth_and_pipelined_plaintext(server):
    # RFC 3207 4.2: the AUTH identity does not survive the handshake, and
    # commands sent in plaintext behind STARTTLS are never run.
    s, f = raw(server, server.auth_port)
    s.sendall(b"LHLO x\r\nAUTH PLAIN "
              + base64.b64encode(b"\0mta\0relay") + b"\r\n")
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 235
    s.sendall(b"STARTTLS\r\nLHLO injected\r\n"
              b"MAIL FROM:<injected@example.net>\r\n")
    assert read_reply(f)[0] == 220
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s, server_hostname=SERVERNAME)
    tf = t.makefile("rb")
    t.sendall(b"MAIL FROM:<a@example.net>\r\nLHLO y\r\n"
              b"MAIL FROM:<a@example.net>\r\n")
    assert read_reply(tf)[0] == 503             # no LHLO since TLS
    assert read_reply(tf)[0] == 250
    code, lines = read_reply(tf)
    assert code == 530, lines                   # AUTH forgotten
    t.close()
    server.wait_for_log(r"plaintext after STARTTLS discarded")


def test_cancelled_exchange_leaves_no_login_behind(server):
    from test_imapd_auth import ScramSha1

    s, f = raw(server, server.auth_port)
    scram = ScramSha1("mta", "relay")
    s.sendall(b"LHLO x\r\nAUTH SCRAM-SHA-1 " + scram.first().encode()
              + b"\r\n")
    assert read_reply(f)[0] == 250
    code, lines = read_reply(f)
    assert code == 334
    s.sendall(scram.final(lines[0][4:]).encode() + b"\r\n")
    assert read_reply(f)[0] == 334              # server-final, v=...
    s.sendall(b"*\r\n")
    assert read_reply(f)[0] == 501
    s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0mta\0wrong") + b"\r\n")
    assert read_reply(f)[0] == 535
    s.sendall(b"MAIL FROM:<a@example.net>\r\n")
    assert read_reply(f)[0] == 530
    s.close()


def test_unix_socket_is_trusted(server):
    c = smtplib.LMTP(server.sock, timeout=10)
    assert c.ehlo("local")[0] == 250
    assert c.mail("u@example.net")[0] == 250
    assert c.rcpt("bob")[0] == 250
    assert send_data(c, message("via unix socket"), 1)[0][0] == 250
    c.quit()
    got = find(user_messages(server, "bob"), "via unix socket")
    assert len(got) == 1
    assert b"Received: from local (unix socket)\r\n" in got[0]


# -- recipients and their outcomes ------------------------------------------

def test_multi_recipient_each_gets_its_own_outcome(server):
    # carol's quota (1 KiB) is filled first: a lenient delivery may take
    # her over, the next one is refused.
    c = lmtp(server)
    c.mail("filler@example.net")
    assert c.rcpt("carol")[0] == 250
    assert send_data(c, message("filler", "x" * 3000 + "\r\n"), 1)[0][0] \
        == 250
    msg = message("multi", msgid="<multi-1@test>")
    assert c.mail("sender@example.net")[0] == 250
    code, text = c.rcpt("nosuchuser@columba.test")
    assert (code, text[:5]) == (550, b"5.1.1")
    code, text = c.rcpt("carol@columba.test")
    assert (code, text[:5]) == (452, b"4.2.2")
    assert c.rcpt("alice@columba.test")[0] == 250
    assert c.rcpt("bob@columba.test")[0] == 250
    code, text = c.rcpt("dave@columba.test")
    assert (code, text[:5]) == (550, b"5.7.1")
    replies = send_data(c, msg, 2)
    assert [r[0] for r in replies] == [250, 250]
    assert all(r[1].startswith(b"2.1.5") for r in replies)

    # The same Message-ID again: alice's is suppressed (answered 250),
    # carol with IGNOREQUOTA gets it, the new recipient too.
    assert c.mail("sender@example.net")[0] == 250
    assert c.rcpt("alice@columba.test")[0] == 250
    assert c.docmd("RCPT", "TO:<carol@columba.test> IGNOREQUOTA")[0] == 250
    replies = send_data(c, msg, 2)
    assert [r[0] for r in replies] == [250, 250]
    assert b"duplicate" in replies[0][1]
    c.quit()
    assert len(find(user_messages(server, "alice"), "multi")) == 1
    assert len(find(user_messages(server, "bob"), "multi")) == 1
    assert len(find(user_messages(server, "carol"), "multi")) == 1


def test_same_mailbox_twice_in_one_transaction_stored_once(server):
    c = lmtp(server)
    c.mail("s@example.net")
    assert c.rcpt("bob")[0] == 250
    assert c.rcpt("BOB@columba.test")[0] == 250
    replies = send_data(c, message("twice in one"), 2)
    assert [r[0] for r in replies] == [250, 250]
    c.quit()
    assert len(find(user_messages(server, "bob"), "twice in one")) == 1


def test_plus_addressing(server):
    c = lmtp(server)
    c.mail("s@example.net")
    # Into the folder: it exists and anyone may post; case of the detail
    # is kept although the user part is lower-cased.
    assert c.rcpt("ALICE+%s@columba.test" % FOLDER)[0] == 250
    replies = send_data(c, message("plus folder"), 1)
    assert replies[0][0] == 250
    # No such folder, or no post right: the INBOX.
    c.mail("s@example.net")
    assert c.rcpt("alice+nosuch@columba.test")[0] == 250
    assert c.rcpt("alice+Private@columba.test")[0] == 250
    replies = send_data(c, message("plus fallback"), 2)
    assert [r[0] for r in replies] == [250, 250]
    c.quit()
    assert len(find(user_messages(server, "alice", FOLDER),
                    "plus folder")) == 1
    assert not find(user_messages(server, "alice"), "plus folder")
    # Two recipients, one INBOX: stored once.
    assert len(find(user_messages(server, "alice"), "plus fallback")) == 1
    assert not find(user_messages(server, "alice", "Private"),
                    "plus fallback")


def test_postuser_shared_folder(server):
    c = lmtp(server)
    c.mail("s@example.net")
    assert c.rcpt("bb+shared/news@columba.test")[0] == 250
    code, text = c.rcpt("bb+shared/closed@columba.test")
    assert (code, text[:5]) == (550, b"5.7.1")
    code, text = c.rcpt("bb+shared/none@columba.test")
    assert (code, text[:5]) == (550, b"5.1.1")
    assert send_data(c, message("to shared"), 1)[0][0] == 250
    c.quit()
    assert len(find(admin_messages(server, "shared/news"), "to shared")) == 1


def test_virtual_domains(server):
    c = lmtp(server)
    c.mail("s@example.net")
    assert c.rcpt("Bob@Example.ORG")[0] == 250
    code, text = c.rcpt("carol@example.org")
    assert (code, text[:5]) == (550, b"5.1.1")
    assert send_data(c, message("virtual domain"), 1)[0][0] == 250
    c.quit()
    assert len(find(admin_messages(server, "user/bob@example.org"),
                    "virtual domain")) == 1
    assert not find(user_messages(server, "bob"), "virtual domain")


# -- message content ---------------------------------------------------------

def test_dot_stuffing_round_trip(server):
    body = "first\r\n. \r\n..\r\n.x\r\n.\r\nlast\r\n"
    c = lmtp(server)
    c.sendmail("s@example.net", ["alice"], message("dots", body))
    c.quit()
    got = find(user_messages(server, "alice"), "dots")
    assert len(got) == 1
    assert got[0].endswith(b"\r\n\r\n" + body.encode())


def test_bare_lf_stored_as_crlf_and_no_smuggling(server):
    s, f = raw(server)
    s.sendall(b"LHLO x\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<alice>\r\n"
              b"DATA\r\n")
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 354
    s.sendall(b"Subject: bare lf\nMessage-ID: <bare@test>\n\nline one\n"
              b".\nMAIL FROM:<smuggled@example.net>\r\n"
              b"line two\n.\r\nstill inside\r\n.\r\n")
    code, lines = read_reply(f)
    assert code == 250, lines
    s.sendall(b"QUIT\r\n")
    assert read_reply(f)[0] == 221
    s.close()
    got = find(user_messages(server, "alice"), "bare lf")
    assert len(got) == 1
    body = got[0].split(b"\r\n\r\n", 1)[1]
    assert body == (b"line one\r\n.\r\nMAIL FROM:<smuggled@example.net>\r\n"
                    b"line two\r\n.\r\nstill inside\r\n")
    assert b"\n" not in got[0].replace(b"\r\n", b"")


def test_size_limit_exact_and_over(server):
    def sized(subject, size):
        head = message(subject, body="")
        filler = size - len(head) - 2
        lines = []
        while filler > 0:
            n = min(filler, 78)
            lines.append("y" * max(n, 1))
            filler -= n + 2
        text = head + "\r\n".join(lines) + "\r\n"
        return text[:size - 2] + "\r\n" if len(text) > size else text

    exact = sized("exact size", MAXSIZE)
    assert len(exact.encode()) == MAXSIZE
    over = sized("over size", MAXSIZE + 1)
    assert len(over.encode()) == MAXSIZE + 1
    c = lmtp(server)
    code, text = c.docmd("MAIL", "FROM:<s@example.net> SIZE=%d"
                         % (MAXSIZE + 1))
    assert (code, text[:5]) == (552, b"5.3.4")
    c.mail("s@example.net")
    c.rcpt("alice")
    assert send_data(c, exact, 1)[0][0] == 250
    c.mail("s@example.net")
    c.rcpt("alice")
    c.rcpt("bob")
    replies = send_data(c, over, 2)
    assert [(r[0], r[1][:5]) for r in replies] == [(552, b"5.3.4")] * 2
    # Still in step.
    assert c.docmd("NOOP")[0] == 250
    c.quit()
    assert len(find(user_messages(server, "alice"), "exact size")) == 1
    assert not find(user_messages(server, "alice"), "over size")


def test_trace_fields(server):
    c = lmtp(server)
    msg = message("trace", extra="Return-Path: <forged@evil>\r\n")
    c.sendmail("bounce@example.net", ["alice"], msg)
    c.quit()
    got = find(user_messages(server, "alice"), "trace")[0]
    assert got.startswith(b"Return-Path: <bounce@example.net>\r\n"
                          b"Received: from client.example ([127.0.0.1])\r\n"
                          b"\tby columba.test (Columba lmtpd) with LMTP id ")
    assert b"forged@evil" not in got
    m = re.search(rb"with LMTP id (lmtp-[^;]+);\r\n\t(.+?)\r\n", got)
    assert m and re.match(rb"\w{3}, \d{2} \w{3} \d{4} ", m.group(2))
    assert m.group(1).decode() in server.log()


def test_null_reverse_path(server):
    c = lmtp(server)
    c.sendmail("", ["alice"], message("null sender"))
    c.quit()
    got = find(user_messages(server, "alice"), "null sender")
    assert len(got) == 1 and got[0].startswith(b"Return-Path: <>\r\n")


# -- protocol robustness --------------------------------------------------

def test_pipelined_transaction(server):
    s, f = raw(server)
    s.sendall(b"LHLO pipe\r\nMAIL FROM:<p@example.net>\r\n"
              b"RCPT TO:<alice>\r\nRCPT TO:<nobody-here>\r\n"
              b"RCPT TO:<bob>\r\nDATA\r\n"
              + message("pipelined").encode() + b".\r\n"
              b"RSET\r\nQUIT\r\n")
    codes = [read_reply(f)[0] for _ in range(9)]
    assert codes == [250, 250, 250, 550, 250, 354, 250, 250, 250]
    assert read_reply(f)[0] == 221
    s.close()
    assert len(find(user_messages(server, "alice"), "pipelined")) == 1
    assert len(find(user_messages(server, "bob"), "pipelined")) == 1


def test_hostile_input(server):
    s, f = raw(server)
    s.sendall(b"LHLO " + b"x" * 100000 + b"\r\n")
    code, lines = read_reply(f)
    assert code == 500
    s.sendall(b"NO\0OP\r\n")
    assert read_reply(f)[0] == 500
    s.sendall(b"RCPT TO:<alice>\r\n")
    assert read_reply(f)[0] == 503
    s.sendall(b"LHLO x\r\n")
    assert read_reply(f)[0] == 250
    s.sendall(b"DATA\r\n")
    assert read_reply(f)[0] == 503
    s.sendall(b"MAIL FROM:<s@example.net>\r\nMAIL FROM:<s@example.net>\r\n")
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 503
    s.sendall(b"RCPT TO:<nosuchuser>\r\nDATA\r\n")
    assert read_reply(f)[0] == 550
    code, lines = read_reply(f)
    assert code == 503 and lines[0].startswith("503 5.5.1")
    s.sendall(b"RCPT TO:<" + b"a" * 2000 + b">\r\nRCPT TO:alice\r\n"
              b"RCPT TO:<al\x80ice>\r\nMAIL FROM:<>\r\n")
    assert read_reply(f)[0] == 501
    assert read_reply(f)[0] == 501
    assert read_reply(f)[0] == 501
    assert read_reply(f)[0] == 503
    s.sendall(b"RSET\r\nNOOP\r\n")
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 250
    s.close()
    # The server is still there for the next client.
    c = lmtp(server)
    assert c.docmd("NOOP")[0] == 250
    c.quit()


def test_nul_in_message_refused(server):
    c = lmtp(server)
    c.mail("s@example.net")
    c.rcpt("alice")
    replies = send_data(c, message("nul body", "a\0b\r\n"), 1)
    assert replies[0][0] == 554
    assert c.docmd("NOOP")[0] == 250
    c.quit()


# -- deliver ----------------------------------------------------------------

def run_deliver(server, *args, data):
    return subprocess.run([program("imap/deliver"), "-C", server.imapd_conf]
                          + list(args), input=data, capture_output=True,
                          timeout=30)


def test_deliver_program(server):
    msg = ("Subject: via deliver\nMessage-ID: <deliver-1@test>\n\n"
           ".leading dot\nend\n").encode()
    res = run_deliver(server, "-f", "env@example.net", "alice", data=msg)
    assert res.returncode == 0, res.stderr
    got = find(user_messages(server, "alice"), "via deliver")
    assert len(got) == 1
    assert got[0].startswith(b"Return-Path: <env@example.net>\r\n")
    assert got[0].endswith(b"\r\n\r\n.leading dot\r\nend\r\n")

    res = run_deliver(server, "-m", FOLDER, "alice",
                      data=b"Subject: deliver folder\n\nx\n")
    assert res.returncode == 0, res.stderr
    assert find(user_messages(server, "alice", FOLDER), "deliver folder")

    res = run_deliver(server, "nosuchuser", data=b"Subject: x\n\nx\n")
    assert res.returncode == 67         # EX_NOUSER
    assert b"5.1.1" in res.stderr

    # A shared folder with the sender's rights (-a), without a user.
    res = run_deliver(server, "-a", "alice", "-m", "shared/news",
                      data=b"Subject: deliver shared\n\nx\n")
    assert res.returncode == 0, res.stderr
    assert find(admin_messages(server, "shared/news"), "deliver shared")
    res = run_deliver(server, "-m", "shared/closed",
                      data=b"Subject: deliver closed\n\nx\n")
    assert res.returncode == 77         # EX_NOPERM


def test_deliver_quota(server):
    big = b"Subject: deliver big\n\n" + b"z" * 3000 + b"\n"
    # -q: IGNOREQUOTA, so this goes in even though carol has 1 KiB.
    res = run_deliver(server, "-q", "carol", data=big)
    assert res.returncode == 0, res.stderr
    res = run_deliver(server, "carol", data=b"Subject: refused\n\nx\n")
    assert res.returncode == 75, res.stderr     # EX_TEMPFAIL (452)
    assert b"4.2.2" in res.stderr
    res = run_deliver(server, "-q", "carol", "nosuchuser",
                      data=b"Subject: deliver mixed\n\nx\n")
    assert res.returncode == 67                 # EX_NOUSER
    assert len(find(user_messages(server, "carol"), "deliver mixed")) == 1


def test_deliver_without_server_is_tempfail(server, tmp_path):
    conf = tmp_path / "imapd.conf"
    text = re.sub(r"(?m)^lmtpsocket: .*$", "lmtpsocket: %s"
                  % (tmp_path / "nosock"), open(server.imapd_conf).read())
    conf.write_text(text)
    res = subprocess.run([program("imap/deliver"), "-C", str(conf),
                          "alice"], input=b"Subject: x\n\nx\n",
                         capture_output=True, timeout=30)
    assert res.returncode == 75         # EX_TEMPFAIL


# -- other configurations -------------------------------------------------

def test_strict_quota_perm_failure_catchall_reject8bit_fuzzy():
    inst = start_server({"lmtp_over_quota_perm_failure": "yes",
                         "lmtp_strict_quota": "yes",
                         "lmtp_catchall_mailbox": "bob",
                         "reject8bit": "yes",
                         "lmtp_fuzzy_mailbox_match": "yes"})
    try:
        m = imap_admin(inst)
        for name in ("user/alice", "user/bob", '"user/bob/Work Items"'):
            assert m.create(name)[0] == "OK"
        assert m.setacl('"user/bob/Work Items"', "anyone", "p")[0] == "OK"
        assert m.setquota("user/alice", "(STORAGE 2)")[0] == "OK"
        m.logout()
        c = lmtp(inst)
        # Strict: the announced size must fit (2 KiB).
        c.docmd("MAIL", "FROM:<s@example.net> SIZE=3000")
        code, text = c.rcpt("alice")
        assert (code, text[:5]) == (552, b"5.2.2")
        c.docmd("RSET")
        c.docmd("MAIL", "FROM:<s@example.net> SIZE=1000")
        assert c.rcpt("alice")[0] == 250
        # Unknown users go to the catch-all user's INBOX.
        assert c.rcpt("nosuchuser")[0] == 250
        assert [r[0] for r in send_data(c, message("strict"), 2)] \
            == [250, 250]
        # Fuzzy: case and blanks ignored, then the nearest parent.
        c.mail("s@example.net")
        assert c.rcpt("bob+workitems")[0] == 250
        assert c.rcpt("carol+x")[0] == 250      # catch-all
        assert [r[0] for r in send_data(c, message("fuzzy one"), 2)] \
            == [250, 250]
        c.mail("s@example.net")
        assert c.rcpt("bob+WORKITEMS/no/such")[0] == 250
        assert send_data(c, message("fuzzy two"), 1)[0][0] == 250
        c.mail("s@example.net")
        assert c.rcpt("bob")[0] == 250
        replies = send_data(c, message("8bit \u00fc"), 1)
        assert (replies[0][0], replies[0][1][:5]) == (554, b"5.6.0")
        c.quit()
        assert len(find(user_messages(inst, "bob"), "strict")) == 1
        work = user_messages(inst, "bob", "Work Items")
        assert len(find(work, "fuzzy one")) == 1
        assert len(find(work, "fuzzy two")) == 1
        assert len(find(user_messages(inst, "bob"), "fuzzy one")) == 1
    finally:
        inst.stop()
        inst.cleanup()


def test_autocreate_post_and_munge8bit():
    inst = start_server({"autocreate_post": "yes",
                         "autocreate_quota": "0"})
    try:
        # No staging directory on the partition: the spool falls back to
        # the configuration directory.
        with open(os.path.join(inst.spool, "stage."), "w") as f:
            f.write("in the way\n")
        c = lmtp(inst)
        c.mail("s@example.net")
        assert c.rcpt("carol")[0] == 250
        assert send_data(c, message("created on post", extra=(
            "X-Note: gr\u00fc\u00dfe\r\n")), 1)[0][0] == 250
        c.quit()
        got = find(user_messages(inst, "carol"), "created on post")
        assert len(got) == 1 and b"X-Note: grXXXXe\r\n" in got[0]
        assert os.path.isdir(os.path.join(inst.confdir, "stage."))
        assert os.listdir(os.path.join(inst.confdir, "stage.")) == []
    finally:
        inst.stop()
        inst.cleanup()
