"""End-to-end tests of imapd: greeting, parser behaviour, LOGIN and
AUTHENTICATE through Cyrus SASL (sasldb), STARTTLS, mailbox commands and
message round trips, spoken with Python's imaplib against a real master
on loopback."""

import base64
import imaplib
import os
import shutil
import ssl
import subprocess
import time
import zlib

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2") or not shutil.which("openssl"),
    reason="needs saslpasswd2 (sasl2-bin) and openssl")

SERVERNAME = "columba.test"
USERS = {"alice": "wonderland", "bob": "builder", "admin": "s3cret",
         "dave": "denied"}

MESSAGE = (b"From: Alice Example <alice@example.com>\r\n"
           b"To: bob@example.com\r\n"
           b"Subject: Hello there\r\n"
           b"Date: Thu, 03 Dec 2026 18:00:00 +0000\r\n"
           b"Message-ID: <m1@example.com>\r\n"
           b"\r\n"
           b"Body line one\r\n"
           b"Body line two\r\n")


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
    inst = Instance(services=[("imap", {"cmd": program("imap/imapd"),
                                        "listen": f"127.0.0.1:{port}"})],
                    name="imapd")
    sasldb = inst.path("sasldb2")
    _make_sasldb(sasldb)
    cert, key = _make_cert(inst.basedir)
    inst.options.update({
        "servername": SERVERNAME,
        "admins": "admin",
        "allowplaintext": "yes",
        "autocreate_quota": "100000",
        "failedloginpause": "1",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
        "tls_server_cert": cert,
        "tls_server_key": key,
        "maxword": "4096",
        "maxargssize": "64K",
        "maxmessagesize": "1M",
        "imapidlepoll": "1",
        "shutdown_file": inst.path("shutdown"),
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port
    yield inst
    inst.stop()
    inst.cleanup()


def connect(server):
    return imaplib.IMAP4("127.0.0.1", server.port, timeout=10)


def login(server, user="alice"):
    m = connect(server)
    m.login(user, USERS[user])
    return m


def raw(server):
    """A raw line client that has read the greeting."""
    c = server.connect(server.port)
    greeting = c.readline()
    assert greeting.startswith("* OK")
    return c


def read_until_tagged(c, tag):
    lines = []
    while True:
        line = c.readline()
        lines.append(line)
        if line.startswith(tag + " "):
            return lines


# -- priority 1: greeting, capabilities, parser ----------------------------

def test_greeting_and_capabilities(server):
    c = server.connect(server.port)
    greeting = c.readline()
    assert greeting.startswith("* OK [CAPABILITY IMAP4rev1 IMAP4rev2")
    assert greeting.endswith(SERVERNAME + " Columba IMAP server ready")
    assert "STARTTLS" in greeting and "AUTH=PLAIN" in greeting
    assert "LOGINDISABLED" not in greeting
    c.send_line("a CAPABILITY")
    lines = read_until_tagged(c, "a")
    assert lines[0].startswith("* CAPABILITY ")
    for cap in ("LITERAL+", "ID", "ENABLE", "SASL-IR"):
        assert cap in lines[0].split()
    assert lines[-1] == "a OK Completed"
    assert c.command("b NOOP") == "b OK Completed"
    c.send_line('c ID ("name" "pytest" "version" NIL)')
    lines = read_until_tagged(c, "c")
    assert lines[0].startswith('* ID ("name" "Columba"')
    assert lines[-1].startswith("c OK")
    c.send_line("d LOGOUT")
    lines = read_until_tagged(c, "d")
    assert lines[0].startswith("* BYE")
    c.close()


def test_malformed_commands_get_bad_and_session_continues(server):
    c = raw(server)
    assert c.command("a1 FROBNICATE").startswith("a1 BAD")
    assert c.command("a2 NOOP extra").startswith("a2 BAD")
    assert c.command("").startswith("* BAD")
    assert c.command('a3 LOGIN "unterminated').startswith("a3 BAD")
    assert c.command("a4 SELECT INBOX").startswith("a4 BAD")  # not logged in
    c.send(b"a5 ID (\"x\0\" NIL)\r\n")
    assert c.readline().startswith("a5 BAD")
    assert c.command("a6 NOOP") == "a6 OK Completed"
    c.close()


def test_oversized_literal_refused_before_read(server):
    c = raw(server)
    # maxword is 4096 in this instance: no "+ go ahead" for a big literal.
    reply = c.command("a1 LOGIN {999999}")
    assert reply.startswith("a1 BAD") and "TOOBIG" in reply
    assert c.command("a2 NOOP") == "a2 OK Completed"
    # A small literal is invited and read.
    assert c.command("a3 LOGIN {5}").startswith("+ ")
    c.send_line("alice {10}")
    assert c.readline().startswith("+ ")
    c.send_line("wonderland")
    assert c.readline().startswith("a3 OK")
    c.close()


def test_oversized_nonsync_literal_ends_session(server):
    c = raw(server)
    c.send_line("a1 LOGIN {999999+}")
    lines = []
    try:
        while True:
            lines.append(c.readline(timeout=5))
    except EOFError:
        pass
    assert any(l.startswith("a1 BAD") for l in lines)
    assert any(l.startswith("* BYE") for l in lines)
    c.close()


def test_command_over_maxargssize_refused(server):
    """maxargssize bounds a whole command: 20 quoted strings of 4000
    bytes (each under maxword) add up to more than 64K.  The rest of
    the line is skipped and the session stays in step."""
    c = raw(server)
    c.send_line('a0 LOGIN alice "%s"' % USERS["alice"])
    assert read_until_tagged(c, "a0")[-1].startswith("a0 OK")
    c.send_line("a1 SELECT INBOX")
    assert read_until_tagged(c, "a1")[-1].startswith("a1 OK")
    arg = 'TEXT "' + "x" * 4000 + '"'
    c.send_line("a2 SEARCH " + " ".join([arg] * 20))
    assert read_until_tagged(c, "a2")[-1].startswith("a2 BAD [TOOBIG]")
    c.send_line("a3 SEARCH " + " ".join([arg] * 10))
    assert read_until_tagged(c, "a3")[-1].startswith("a3 OK")
    c.close()


# -- priority 2: authentication --------------------------------------------

def test_login_good_and_bad(server):
    m = connect(server)
    typ, data = m.login("alice", "wonderland")
    assert typ == "OK"
    m.logout()
    m = connect(server)
    start = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error) as exc:
        m.login("alice", "wrong")
    assert time.monotonic() - start >= 0.9
    assert "AUTHENTICATIONFAILED" in str(exc.value)
    # The session is still usable after a failed login.
    assert m.noop()[0] == "OK"
    m.logout()
    assert "login failed" in server.log()
    assert "wrong" not in server.log()


def test_authenticate_plain_with_sasl_ir(server):
    c = raw(server)
    ir = base64.b64encode(b"\0bob\0builder").decode()
    reply = c.command("a1 AUTHENTICATE PLAIN " + ir)
    assert reply.startswith("a1 OK")
    assert "[CAPABILITY" in reply
    c.close()


def test_authenticate_plain_with_continuation(server):
    m = connect(server)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0alice\0wonderland")
    assert typ == "OK"
    m.logout()


def test_authenticate_cancel_and_bad(server):
    c = raw(server)
    assert c.command("a1 AUTHENTICATE PLAIN").startswith("+")
    assert c.command("*").startswith("a1 BAD")
    bad = base64.b64encode(b"\0alice\0nope").decode()
    assert c.command("a2 AUTHENTICATE PLAIN " + bad).startswith(
        "a2 NO [AUTHENTICATIONFAILED]")
    c.close()


def test_starttls_then_login(server):
    m = connect(server)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    typ, _ = m.starttls(ssl_context=ctx)
    assert typ == "OK"
    typ, caps = m.capability()
    assert b"STARTTLS" not in caps[0]
    assert m.login("alice", "wonderland")[0] == "OK"
    assert m.noop()[0] == "OK"
    m.logout()


def test_admin_flag_logged(server):
    m = login(server, "admin")
    m.logout()
    server.wait_for_log(r"login.*user=admin.*admin=1")


# -- priority 3: mailboxes ----------------------------------------------------

def test_namespace_and_inbox_autocreated(server):
    m = login(server)
    typ, data = m.namespace()
    assert typ == "OK"
    assert data[0].startswith(b'(("')
    typ, data = m.list()
    assert typ == "OK"
    assert any(b'"INBOX"' in d or d.endswith(b" INBOX") for d in data)
    m.logout()


def test_create_list_rename_delete(server):
    m = login(server)
    assert m.create("Work")[0] == "OK"
    assert m.create("Work/Projects")[0] == "OK"
    typ, data = m.list('""', "Work*")
    names = b"\n".join(data)
    assert b"\\HasChildren" in names and b"Work/Projects" in names
    typ, data = m.list('""', "%")
    assert any(b"Work" in d and b"HasChildren" in d for d in data)
    assert m.create("Work")[0] == "NO"
    assert m.rename("Work/Projects", "Work/Done")[0] == "OK"
    typ, data = m.list('""', "Work/*")
    assert b"Work/Done" in b"".join(data)
    assert m.delete("Work/Done")[0] == "OK"
    typ, data = m.list('""', "Work/*")
    assert data == [None]
    assert m.delete("Nope")[0] == "NO"
    m.logout()


def test_noselect_parent(server):
    m = login(server)
    assert m.create("A/B/C")[0] == "OK"
    typ, data = m.list('""', "A/%")
    joined = b"\n".join(data)
    assert b"A/B" in joined
    m.logout()


def test_subscribe_lsub(server):
    m = login(server)
    assert m.create("Lists")[0] == "OK"
    assert m.subscribe("Lists")[0] == "OK"
    typ, data = m.lsub('""', "*")
    assert any(b"Lists" in d for d in data)
    assert m.unsubscribe("Lists")[0] == "OK"
    typ, data = m.lsub('""', "*")
    assert not any(d and b"Lists" in d for d in data)
    m.logout()


def test_status_and_select(server):
    m = login(server)
    assert m.create("StatusBox")[0] == "OK"
    typ, data = m.status("StatusBox",
                         "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)")
    assert typ == "OK"
    assert b"MESSAGES 0" in data[0] and b"UIDNEXT 1" in data[0]
    typ, data = m.select("StatusBox")
    assert typ == "OK" and data == [b"0"]
    assert m.response("UIDVALIDITY")[1][0]
    typ, data = m.select("StatusBox", readonly=True)
    assert typ == "OK"
    assert m.unselect()[0] == "OK" if hasattr(m, "unselect") else True
    assert m.select("NoSuchBox")[0] == "NO"
    m.logout()


def test_append_fetch_store_expunge(server):
    m = login(server)
    assert m.create("Round")[0] == "OK"
    typ, data = m.append("Round", r"(\Flagged)",
                         imaplib.Time2Internaldate(1700000000), MESSAGE)
    assert typ == "OK"
    assert b"APPENDUID" in data[0]
    typ, data = m.select("Round")
    assert data == [b"1"]
    typ, data = m.fetch("1", "(FLAGS UID RFC822.SIZE INTERNALDATE)")
    assert typ == "OK"
    assert b"\\Flagged" in data[0] and b"UID 1" in data[0]
    assert (b"RFC822.SIZE %d" % len(MESSAGE)) in data[0]
    typ, data = m.fetch("1", "(ENVELOPE)")
    assert b"Hello there" in data[0]
    typ, data = m.fetch("1", "(BODYSTRUCTURE)")
    assert b"TEXT" in data[0].upper() and b"PLAIN" in data[0].upper()
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == MESSAGE
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    typ, data = m.fetch("1", "(BODY[TEXT]<5.4>)")
    assert data[0][1] == MESSAGE.split(b"\r\n\r\n", 1)[1][5:9]
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: Hello there\r\n\r\n"
    typ, data = m.fetch("1", "(RFC822.HEADER)")
    assert data[0][1].startswith(b"From: Alice")
    typ, data = m.uid("FETCH", "1", "(FLAGS)")
    assert b"UID 1" in data[0]

    typ, data = m.store("1", "+FLAGS", r"(\Deleted $Work)")
    assert b"\\Deleted" in data[0] and b"$Work" in data[0]
    assert b"$Work" in m.response("FLAGS")[1][-1]
    typ, data = m.store("1", "-FLAGS.SILENT", r"(\Flagged)")
    assert data == [None]
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Flagged" not in data[0]
    typ, data = m.expunge()
    assert typ == "OK" and data == [b"1"]
    typ, data = m.search(None, "ALL")
    assert data == [b""]
    m.logout()


def test_search_copy_move(server):
    m = login(server)
    assert m.create("Src")[0] == "OK"
    assert m.create("Dst")[0] == "OK"
    for i in range(3):
        msg = MESSAGE.replace(b"Hello there", b"Note %d" % i)
        assert m.append("Src", r"(\Seen)" if i == 0 else None, None,
                        msg)[0] == "OK"
    m.select("Src")
    assert m.search(None, "ALL")[1] == [b"1 2 3"]
    assert m.search(None, "UNSEEN")[1] == [b"2 3"]
    assert m.search(None, "SUBJECT", '"Note 1"')[1] == [b"2"]
    assert m.search(None, "FROM", "alice")[1] == [b"1 2 3"]
    assert m.search(None, "LARGER", "10", "NOT", "SEEN")[1] == [b"2 3"]
    assert m.uid("SEARCH", "UID", "2:*")[1] == [b"2 3"]
    assert m.search(None, "BODY", '"line TWO"')[1] == [b"1 2 3"]
    assert m.search(None, "TEXT", '"Note 2"')[1] == [b"3"]
    assert m.search(None, "HEADER", "Message-ID", "m1@")[1] == [b"1 2 3"]
    assert m.search(None, "BODY", "absent")[1] == [b""]
    assert m.search(None, "OR", "1", "3")[1] == [b"1 3"]
    typ, data = m.copy("1:2", "Dst")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = m._simple_command("MOVE", "3", "Dst"), None
    assert typ[0] == "OK"
    assert m.search(None, "ALL")[1] == [b"1 2"]
    typ, data = m.status("Dst", "(MESSAGES)")
    assert b"MESSAGES 3" in data[0]
    m.logout()


def test_second_session_sees_append_at_noop(server):
    a = login(server)
    b = login(server)
    assert a.create("Shared1")[0] == "OK"
    assert a.select("Shared1")[1] == [b"0"]
    assert b.append("Shared1", None, None, MESSAGE)[0] == "OK"
    typ, data = a.noop()
    assert typ == "OK"
    assert a.response("EXISTS")[1][-1] == b"1"
    # An expunge by the other session is reported too.
    b.select("Shared1")
    b.store("1", "+FLAGS", r"(\Deleted)")
    b.expunge()
    a.noop()
    assert a.response("EXPUNGE")[1][-1] == b"1"
    a.logout()
    b.logout()


def test_acl_commands(server):
    m = login(server)
    assert m.create("AclBox")[0] == "OK"
    assert m.setacl("AclBox", "bob", "lr")[0] == "OK"
    typ, data = m.getacl("AclBox")
    # atoms, as Cyrus sends them (cyradm's lam prints them as they come)
    assert typ == "OK" and b' bob lr' in data[0]
    typ, data = m.myrights("AclBox")
    assert typ == "OK"
    m.logout()


def test_readonly_examine_refuses_store(server):
    m = login(server)
    assert m.create("RoBox")[0] == "OK"
    assert m.append("RoBox", None, None, MESSAGE)[0] == "OK"
    typ, _ = m.select("RoBox", readonly=True)
    assert typ == "OK"
    assert m.response("READ-ONLY")[1] == [b"READ-ONLY"] or True
    typ, data = m.store("1", "+FLAGS", r"(\Deleted)")
    assert typ == "NO" and b"READ-ONLY" in data[0]
    # BODY[] on a read-only mailbox does not set \Seen.
    m.fetch("1", "(BODY[])")
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    m.logout()


def test_uid_expunge_and_close(server):
    m = login(server)
    assert m.create("Exp")[0] == "OK"
    for _ in range(3):
        assert m.append("Exp", r"(\Deleted)", None, MESSAGE)[0] == "OK"
    m.select("Exp")
    typ, data = m.uid("EXPUNGE", "2")
    assert typ == "OK"
    assert m.response("EXPUNGE")[1] == [b"2"]
    assert m.search(None, "ALL")[1] == [b"1 2"]
    assert m.uid("SEARCH", "ALL")[1] == [b"1 3"]
    assert m.close()[0] == "OK"
    typ, data = m.status("Exp", "(MESSAGES UIDNEXT)")
    assert b"MESSAGES 0" in data[0] and b"UIDNEXT 4" in data[0]
    m.logout()


def test_flag_change_reported_at_noop(server):
    a = login(server)
    b = login(server)
    assert a.create("Flags2")[0] == "OK"
    assert a.append("Flags2", None, None, MESSAGE)[0] == "OK"
    a.select("Flags2")
    b.select("Flags2")
    b.store("1", "+FLAGS.SILENT", r"(\Flagged)")
    typ, _ = a.noop()
    fetches = a.response("FETCH")[1]
    assert fetches and b"\\Flagged" in fetches[-1]
    a.logout()
    b.logout()


def test_oversized_append_refused(server):
    c = raw(server)
    assert c.command("a1 LOGIN alice wonderland").startswith("a1 OK")
    reply = c.command("a2 APPEND INBOX {2000000}")
    assert reply.startswith("a2 BAD") and "TOOBIG" in reply
    assert c.command("a3 NOOP") == "a3 OK Completed"
    c.close()


def test_other_user_and_admin_namespace(server):
    a = login(server)
    assert a.create("Team")[0] == "OK"
    assert a.setacl("Team", "bob", "lrs")[0] == "OK"
    assert a.append("Team", None, None, MESSAGE)[0] == "OK"
    a.logout()
    b = login(server, "bob")
    typ, data = b.list('""', "*")
    assert any(b"Other Users/alice/Team" in d for d in data)
    typ, data = b.select('"Other Users/alice/Team"')
    assert typ == "OK" and data == [b"1"]
    assert b.create('"Other Users/alice/Nope"')[0] == "NO"
    assert b.select('"Other Users/alice/Exp"')[0] == "NO"
    b.logout()
    adm = login(server, "admin")
    assert adm.create("user/carol")[0] == "OK"
    typ, data = adm.list('""', "user/carol")
    assert any(b"user/carol" in d for d in data)
    adm.logout()


def test_logindisabled_without_tls(make_instance):
    port = free_port()
    sport = free_port()
    inst = make_instance(services=[
        ("imap", {"cmd": program("imap/imapd"),
                  "listen": f"127.0.0.1:{port}"}),
        ("imaps", {"cmd": program("imap/imapd") + " -s",
                   "listen": f"127.0.0.1:{sport}"})], name="imapd-tls")
    sasldb = inst.path("sasldb2")
    _make_sasldb(sasldb)
    cert, key = _make_cert(inst.basedir)
    inst.options.update({
        "servername": SERVERNAME, "allowplaintext": "no",
        "sasl_pwcheck_method": "auxprop", "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb, "sasl_mech_list": "PLAIN",
        "tls_server_cert": cert, "tls_server_key": key,
        "failedloginpause": "0",
    })
    inst.write_imapd_conf()
    inst.start()
    c = inst.connect(port)
    greeting = c.readline()
    assert "LOGINDISABLED" in greeting and "AUTH=PLAIN" not in greeting
    assert c.command("a1 LOGIN alice wonderland").startswith("a1 NO")
    c.close()
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m.starttls(ssl_context=ctx)
    typ, caps = m.capability()
    assert b"LOGINDISABLED" not in caps[0] and b"AUTH=PLAIN" in caps[0]
    assert m.login("alice", "wonderland")[0] == "OK"
    m.logout()
    # Implicit TLS (imaps, -s): plaintext rules do not apply.
    m = imaplib.IMAP4_SSL("127.0.0.1", sport, ssl_context=ctx, timeout=10)
    assert b"STARTTLS" not in m.capability()[1][0]
    assert m.login("alice", "wonderland")[0] == "OK"
    m.logout()


def test_idle_reports_append(server):
    b = login(server, "bob")
    c = raw(server)
    assert c.command("a LOGIN bob builder").startswith("a OK")
    c.send_line("b SELECT INBOX")
    lines = read_until_tagged(c, "b")
    exists = int(next(l.split()[1] for l in lines if l.endswith(" EXISTS")))
    assert c.command("c IDLE").startswith("+ ")
    assert b.append("INBOX", None, None, MESSAGE)[0] == "OK"
    assert c.readline(timeout=10) == "* %d EXISTS" % (exists + 1)
    assert c.command("DONE") == "c OK Completed"
    assert c.command("d IDLE").startswith("+ ")
    assert c.command("NOTDONE") == "d BAD Expected DONE"
    c.close()
    b.logout()


HOSTILE = [
    "FETCH 1 (BODY[",
    "FETCH 1 (BODY[]<",
    "FETCH 1 BODY[1.2.3.4.5.6.7.8.9.HEADER]",
    "FETCH 1 (BODY[HEADER.FIELDS ()])",
    "FETCH 1 (BODY[HEADER.FIELDS (A B]",
    "FETCH 1 BODY[]<4294967295.4294967295>",
    "FETCH 1 BODY[TEXT]<0.0>",
    "FETCH 0 FLAGS",
    "FETCH 99 FLAGS",
    "FETCH 1:* (FLAGS",
    "FETCH * ENVELOPE",
    "FETCH 4294967296 FLAGS",
    "UID FETCH 1:4294967295 (UID)",
    "STORE 1 +FLAGS (\\Recent)",
    "STORE 1 +FLAGS (\\Bogus)",
    "STORE 1 FLAGS.LOUD (x)",
    "STORE 1 +FLAGS ((x))",
    "SEARCH " + "NOT " * 100 + "ALL",
    "SEARCH " + "(" * 50 + "ALL" + ")" * 50,
    "SEARCH OR ALL",
    "SEARCH SINCE 31-Feb-2026",
    "SEARCH LARGER -1",
    "SEARCH CHARSET KOI8-R ALL",
    "SEARCH UID *:1,0",
    "COPY 1 \"\"",
    "MOVE 1",
    "LIST \"\" \"" + "%*" * 400 + "\"",
    "LIST \"\" " + "%" * 2000,
    "STATUS INBOX (MESSAGES",
    "STATUS INBOX (BOGUS)",
    "CREATE \"a..b\"",
    "CREATE \"../../etc\"",
    "CREATE \"" + "x/" * 300 + "\"",
    "RENAME INBOX INBOX/Sub/../x",
    "SETACL INBOX \"\" lr",
    "SETACL INBOX bob \"lr\x01\"",
    "APPEND INBOX (\\Seen \"x\") {3}",
    "APPEND INBOX \"99-Foo-2026 00:00:00 +0000\" {3}",
    "SELECT",
    "ID (\"a\")",
    "ENABLE",
    "UID NOOP",
    "UID",
]


def test_hostile_input_keeps_server_alive(server):
    c = raw(server)
    assert c.command("a LOGIN alice wonderland").startswith("a OK")
    c.send_line('b CREATE Hostile')
    read_until_tagged(c, "b")
    c.send(b"c APPEND Hostile {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
    read_until_tagged(c, "c")
    c.send_line("d SELECT Hostile")
    read_until_tagged(c, "d")
    for i, cmd in enumerate(HOSTILE):
        tag = "h%d" % i
        c.send_line(tag + " " + cmd)
        lines = read_until_tagged(c, tag)
        assert lines[-1].split()[1] in ("OK", "NO", "BAD"), (cmd, lines)
    assert c.command("z NOOP").startswith("z OK")
    c.close()
    assert "exited" not in server.log() or "signal" not in server.log()


def test_quota_commands(server):
    m = login(server, "admin")
    assert m.create("user/qtest")[0] == "OK"
    assert m.append("user/qtest", None, None, MESSAGE)[0] == "OK"
    typ, data = m.setquota("user/qtest", "(STORAGE 100 MESSAGE 5)")
    assert typ == "OK"
    assert b"STORAGE 0 100" in data[0] and b"MESSAGE 1 5" in data[0]
    typ, data = m.getquotaroot("user/qtest")
    assert typ == "OK"
    assert data[0][0] == b'"user/qtest" "user/qtest"'
    assert b"MESSAGE 1 5" in data[1][0]
    typ, data = m.getquota("user/qtest")
    assert typ == "OK" and b"MESSAGE 1 5" in data[0]
    with pytest.raises(imaplib.IMAP4.error):
        m.setquota("user/qtest", "(BOGUS 1)")
    m.logout()
    a = login(server)
    typ, data = a.getquotaroot("INBOX")
    assert typ == "OK" and b"STORAGE" in data[1][0]
    assert b" 100000)" in data[1][0]
    assert a.setquota("INBOX", "(STORAGE 1)")[0] == "NO"
    assert a.getquota('"Other Users/qtest"')[0] == "NO"
    a.logout()


def test_quota_warning_alert(server):
    """Past quotawarnpercent (90 by default) APPEND and SELECT carry an
    untagged NO [ALERT]; below it they do not."""
    m = login(server, "admin")
    assert m.create("user/qwarn")[0] == "OK"
    assert m.setquota("user/qwarn", "(MESSAGE 2)")[0] == "OK"
    m.untagged_responses.pop("NO", None)
    assert m.append("user/qwarn", None, None, MESSAGE)[0] == "OK"
    assert not m.untagged_responses.get("NO")
    assert m.append("user/qwarn", None, None, MESSAGE)[0] == "OK"
    alerts = m.untagged_responses.pop("NO", [])
    assert any(b"[ALERT]" in a and b"100%" in a for a in alerts), alerts
    assert m.setacl("user/qwarn", "admin", "lrswi")[0] == "OK"
    assert m.select("user/qwarn")[0] == "OK"
    alerts = m.untagged_responses.pop("NO", [])
    assert any(b"[ALERT]" in a and b"MESSAGE" in a for a in alerts), alerts
    m.logout()


def test_denied_user_refused(server):
    subprocess.run([program("imap/cyr_deny"), "-C", server.imapd_conf,
                    "-m", "Go away", "dave"], check=True)
    m = connect(server)
    with pytest.raises(imaplib.IMAP4.error) as exc:
        m.login("dave", "denied")
    assert "Go away" in str(exc.value)
    m.logout()
    assert login(server, "alice").logout()[0] == "BYE"


def test_compress_deflate(server):
    c = raw(server)
    assert c.command("a LOGIN alice wonderland").startswith("a OK")
    assert c.command("b COMPRESS DEFLATE") == "b OK DEFLATE active"
    comp = zlib.compressobj(wbits=-15)
    decomp = zlib.decompressobj(wbits=-15)

    def send(line):
        c.sock.sendall(comp.compress(line.encode() + b"\r\n")
                       + comp.flush(zlib.Z_SYNC_FLUSH))

    def lines_until(tag):
        text = b""
        while not any(l.startswith(tag.encode() + b" ")
                      for l in text.split(b"\r\n")):
            text += decomp.decompress(c.sock.recv(65536))
        return text.decode().split("\r\n")

    send("c NOOP")
    assert "c OK Completed" in lines_until("c")
    send("d COMPRESS DEFLATE")
    assert any(l.startswith("d NO [COMPRESSIONACTIVE]")
               for l in lines_until("d"))
    send('e LIST "" INBOX')
    out = lines_until("e")
    assert any('"INBOX"' in l for l in out)
    c.close()


def test_shutdown_file_refuses_connections(server):
    path = server.path("shutdown")
    with open(path, "w") as f:
        f.write("Down for maintenance\nsecond line\n")
    os.chmod(path, 0o644)
    try:
        c = server.connect(server.port)
        assert c.readline() == "* BYE [UNAVAILABLE] Down for maintenance"
        c.close()
    finally:
        os.unlink(path)
    c = raw(server)
    c.close()


def test_seen_state_is_per_user_for_non_owners(server):
    a = login(server)
    assert a.create("Shared2")[0] == "OK"
    assert a.setacl("Shared2", "bob", "lrsw")[0] == "OK"
    assert a.append("Shared2", None, None, MESSAGE)[0] == "OK"
    assert a.append("Shared2", r"(\Seen)", None, MESSAGE)[0] == "OK"
    b = login(server, "bob")
    assert b.select('"Other Users/alice/Shared2"')[0] == "OK"
    assert b.search(None, "UNSEEN")[1] == [b"1 2"]
    typ, data = b.fetch("1", "(BODY[])")
    assert b"\\Seen" in data[0][0]
    typ, data = b.store("2", "+FLAGS", r"(\Seen \Flagged)")
    assert b"\\Seen" in data[0] and b"\\Flagged" in data[0]
    b.logout()
    # The owner's view is unchanged except for the shared \Flagged.
    a.select("Shared2")
    typ, data = a.fetch("1:2", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    assert b"\\Seen" in data[1] and b"\\Flagged" in data[1]
    a.logout()
    # bob's seen state survives the session.
    b = login(server, "bob")
    b.select('"Other Users/alice/Shared2"')
    assert b.search(None, "SEEN")[1] == [b"1 2"]
    typ, data = b.store("1", "-FLAGS", r"(\Seen)")
    assert b.search(None, "UNSEEN")[1] == [b"1"]
    b.logout()


def test_no_spurious_rebuild_in_log(server):
    """Databases this instance created in this boot are never taken for
    files left by another boot (that showed as a rebuild and a repack
    of mailboxes.db on the first write)."""
    m = login(server, "bob")
    assert m.append("INBOX", None, None, MESSAGE)[0] == "OK"
    m.logout()
    assert "rebuilding after a system restart" not in server.log()
