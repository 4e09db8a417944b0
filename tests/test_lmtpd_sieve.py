"""End-to-end tests of Sieve at delivery: scripts uploaded over
ManageSieve (a small Python client, and once Debian's sieve-connect) run
by lmtpd for each recipient; messages delivered with smtplib.LMTP and
read back over IMAP; mail the scripts send (redirect, vacation, notify,
reject bounces) captured by a test `sendmail` program."""

import base64
import email
import email.header
import glob
import imaplib
import os
import re
import shutil
import smtplib
import socket
import subprocess
import time

import pytest

from columba import Instance, free_port, program

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2") or not shutil.which("openssl"),
    reason="needs saslpasswd2 (sasl2-bin) and openssl")

SERVERNAME = "columba.test"
USERS = {"admin": "s3cret", "alice": "wonderland", "bob": "builder",
         "carol": "singer"}

# The test sendmail: argv one per line into <n>.args, stdin into <n>.msg;
# refuses (exit 75) any message for fail@example.net.
SENDMAIL = """
for a in "$@"; do
    if [ "$a" = "fail@example.net" ]; then cat >/dev/null; exit 75; fi
done
n=$(mktemp "{outbox}/mail.XXXXXXXX") || exit 75
printf '%s\\n' "$@" > "$n.args"
cat > "$n.msg"
"""


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
    imap_port, lmtp_port, sieve_port = free_port(), free_port(), free_port()
    inst = Instance(name="lmtpsieve")
    inst.write_cyrus_conf(
        "SERVICES {\n"
        f'  imap cmd="{program("imap/imapd")}" '
        f'listen="127.0.0.1:{imap_port}"\n'
        f'  lmtp cmd="{program("imap/lmtpd")} -a" '
        f'listen="127.0.0.1:{lmtp_port}"\n'
        f'  sieve cmd="{program("sieve/timsieved")}" '
        f'listen="127.0.0.1:{sieve_port}"\n'
        "}\n")
    sasldb = inst.path("sasldb2")
    _make_sasldb(sasldb)
    cert, key = _make_cert(inst.basedir)
    outbox = inst.path("outbox")
    os.makedirs(outbox)
    os.makedirs(inst.path("sieve", "global"))
    sendmail = inst.write_script("sendmail", SENDMAIL.replace("{outbox}",
                                                              outbox))
    inst.options.update({
        "servername": SERVERNAME,
        "admins": "admin",
        "allowplaintext": "yes",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
        "tls_server_cert": cert,
        "tls_server_key": key,
        "sievedir": inst.path("sieve"),
        "sendmail": sendmail,
        "sieve_maxredirects": "2",
    })
    inst.write_imapd_conf()
    inst.start()
    inst.hand_over()
    inst.imap_port, inst.lmtp_port, inst.sieve_port = (imap_port, lmtp_port,
                                                       sieve_port)
    inst.outbox = outbox
    m = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
    m.login("admin", USERS["admin"])
    for name in ("user/alice", "user/alice/Archive", "user/bob",
                 "user/carol"):
        assert m.create(name)[0] == "OK", name
    m.logout()
    yield inst
    inst.stop()
    inst.cleanup()


# -- a small ManageSieve client (as in test_timsieved.py) ------------------

class ManageSieve:
    """Just enough RFC 5804 for the tests: PLAIN login, PUTSCRIPT,
    SETACTIVE, DELETESCRIPT."""

    def __init__(self, port, user):
        self.sock = socket.create_connection(("127.0.0.1", port), 10)
        self.f = self.sock.makefile("rb")
        self.response()
        ir = base64.b64encode(("\0%s\0%s" % (user, USERS[user])).encode())
        ok, text = self.command(b'AUTHENTICATE "PLAIN" "%s"' % ir)
        assert ok, text

    def response(self):
        """Skip data lines up to OK/NO/BYE; (is_ok, the line)."""
        while True:
            line = self.f.readline()
            assert line, "connection closed"
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if m:
                line += self.f.read(int(m.group(1)))
                line += self.f.readline()
            if line[:2] == b"OK" or line[:2] == b"NO" or line[:3] == b"BYE":
                return line.startswith(b"OK"), line

    def command(self, line, literal=None):
        if literal is not None:
            line = line.replace(b"%L", b"{%d+}\r\n" % len(literal) + literal)
        self.sock.sendall(line + b"\r\n")
        return self.response()

    def put_active(self, name, script):
        ok, text = self.command(b'PUTSCRIPT "%s" %%L' % name.encode(),
                                script.encode())
        assert ok, text
        ok, text = self.command(b'SETACTIVE "%s"' % name.encode())
        assert ok, text

    def close(self):
        self.command(b"LOGOUT")
        self.sock.close()


def install(server, user, script, name="main"):
    """Upload `script` for `user` and make it the active one."""
    c = ManageSieve(server.sieve_port, user)
    c.put_active(name, script)
    c.close()


def deactivate(server, user):
    c = ManageSieve(server.sieve_port, user)
    assert c.command(b'SETACTIVE ""')[0]
    c.close()


def user_dir(server, user):
    return os.path.join(server.path("sieve"), user[0], user)


# -- delivery and reading back ---------------------------------------------

def message(subject, to="alice@columba.test", body="Hello.\r\n", extra="",
            sender="Sender <sender@example.net>"):
    msgid = "<%s.%f@test>" % (re.sub(r"\W", "-", subject), time.time())
    return (f"From: {sender}\r\n"
            f"To: {to}\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: {msgid}\r\n"
            f"{extra}"
            "\r\n" + body), msgid


def deliver(server, msg, rcpts=("alice",), sender="sender@example.net"):
    """One LMTP transaction; returns one (code, text) per recipient."""
    c = smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=30)
    assert c.ehlo("client.example")[0] == 250
    assert c.mail(sender)[0] == 250
    for r in rcpts:
        rcpt = r if "@" in r else r + "@" + SERVERNAME
        assert c.rcpt(rcpt)[0] == 250, rcpt
    assert c.docmd("DATA")[0] == 354
    data = re.sub(rb"(?m)^\.", b"..", msg.encode("utf-8"))
    c.send(data + b".\r\n")
    replies = [c.getreply() for _ in rcpts]
    c.quit()
    return replies


def fetch(server, user, mailbox="INBOX"):
    """[(flags, raw message)] of `mailbox` of `user`."""
    m = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    m.login(user, USERS[user])
    typ, data = m.select('"%s"' % mailbox, readonly=True)
    assert typ == "OK", (mailbox, data)
    out = []
    if int(data[0]) > 0:
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[])")
        assert typ == "OK"
        for d in data:
            if isinstance(d, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", d[0]).group(1)
                out.append((flags.decode().split(), d[1]))
    m.logout()
    return out


def has(server, user, msgid, mailbox="INBOX"):
    """The flags of the message `msgid` in `mailbox`, or None."""
    for flags, raw in fetch(server, user, mailbox):
        if msgid.encode() in raw:
            return flags
    return None


def outbox(server):
    """[(argv list, message bytes)] sent so far, oldest first; then the
    outbox is emptied."""
    out = []
    for args in sorted(glob.glob(os.path.join(server.outbox, "*.args")),
                       key=os.path.getmtime):
        base = args[:-len(".args")]
        with open(args) as f:
            argv = f.read().splitlines()
        with open(base + ".msg", "rb") as f:
            out.append((argv, f.read()))
        for p in (base, args, base + ".msg"):
            os.unlink(p)
    return out


@pytest.fixture(autouse=True)
def clean_outbox(server):
    outbox(server)
    yield


# -- the tests ---------------------------------------------------------------

def test_no_script_keeps(server):
    msg, msgid = message("plain", to="bob@columba.test")
    assert deliver(server, msg, ["bob"])[0][0] == 250
    assert has(server, "bob", msgid) is not None
    assert outbox(server) == []


FILING = r"""require ["fileinto", "imap4flags", "mailbox", "copy"];
if header :contains "subject" "to-work" {
    fileinto :create :flags ["\\Flagged", "$Work"] "Projects/Work";
} elsif header :contains "subject" "to-copy" {
    fileinto :copy "Archive";
} elsif header :contains "subject" "to-missing" {
    fileinto "Nowhere";
} elsif header :contains "subject" "flag-keep" {
    addflag "\\Seen";
    keep;
}
"""


def test_fileinto_create_flags_copy_and_fallback(server):
    install(server, "alice", FILING)

    msg, work = message("to-work")
    assert deliver(server, msg)[0][0] == 250
    flags = has(server, "alice", work, "Projects/Work")
    assert flags is not None and "\\Flagged" in flags and "$Work" in flags
    assert has(server, "alice", work) is None
    # The same message again: suppressed as a duplicate, not filed twice.
    code, text = deliver(server, msg)[0]
    assert code == 250 and b"duplicate" in text
    assert len([1 for _, raw in fetch(server, "alice", "Projects/Work")
                if work.encode() in raw]) == 1

    msg, copy = message("to-copy")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", copy, "Archive") is not None
    assert has(server, "alice", copy) is not None

    # A folder that does not exist (no :create): kept, and logged.
    msg, missing = message("to-missing")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", missing) is not None
    server.wait_for_log(r"sieve: fileinto failed, keeping .*Nowhere")

    msg, seen = message("flag-keep")
    assert deliver(server, msg)[0][0] == 250
    assert "\\Seen" in has(server, "alice", seen)


def test_discard(server):
    install(server, "alice", 'if header :contains "subject" "junk" '
                             '{ discard; }\r\n')
    msg, junk = message("junk mail")
    code, text = deliver(server, msg)[0]
    assert code == 250
    msg, other = message("other mail")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", junk) is None
    assert has(server, "alice", other) is not None


REJECT = """require "reject";
if header :contains "subject" "spam" { reject "No spam, please"; }
if header :contains "subject" "umlaut" { reject "Kein M\u00fcll, bitte"; }
"""


def test_reject_single_and_multiple_recipients(server):
    install(server, "alice", REJECT)
    msg, msgid = message("spam offer")
    code, text = deliver(server, msg)[0]
    assert code == 550
    assert text == b"5.7.1 No spam, please"
    assert has(server, "alice", msgid) is None
    assert outbox(server) == []

    # With a second recipient that takes it, alice's refusal is a
    # disposition notification to the sender, and both answer 250.
    msg, msgid = message("more spam")
    replies = deliver(server, msg, ["alice", "bob"])
    assert [r[0] for r in replies] == [250, 250]
    assert has(server, "alice", msgid) is None
    assert has(server, "bob", msgid) is not None
    sent = outbox(server)
    assert len(sent) == 1
    argv, mdn = sent[0]
    assert argv[argv.index("-f") + 1] == "<>"
    assert argv[-2:] == ["--", "sender@example.net"]
    assert b"report-type=disposition-notification" in mdn
    assert b"No spam, please" in mdn
    assert b"Final-Recipient: rfc822; alice@columba.test" in mdn
    assert msgid.encode() in mdn

    # A reason that is not ASCII cannot go into the reply: a bounce.
    msg, msgid = message("umlaut")
    assert deliver(server, msg)[0][0] == 250
    (argv, mdn), = outbox(server)
    assert argv[-1] == "sender@example.net"
    parts = [part for part in email.message_from_bytes(mdn).walk()
             if part.get_content_type() == "text/plain"]
    assert "Kein M\u00fcll, bitte" in \
        parts[0].get_payload(decode=True).decode()
    assert has(server, "alice", msgid) is None

    # Every recipient rejects: each is answered 550, nothing is sent.
    install(server, "bob", REJECT)
    msg, msgid = message("spam for all")
    replies = deliver(server, msg, ["alice", "bob"])
    assert replies == [(550, b"5.7.1 No spam, please")] * 2
    assert outbox(server) == []
    assert has(server, "bob", msgid) is None
    deactivate(server, "bob")


def test_redirect_copy_limit_and_failure(server):
    install(server, "alice", """require "copy";
if header :contains "subject" "fwd" { redirect "friend@example.org"; }
if header :contains "subject" "cc" { redirect :copy "friend@example.org"; }
if header :contains "subject" "broken" { redirect "fail@example.net"; }
if header :contains "subject" "many" {
    redirect "a@example.org"; redirect "b@example.org";
    redirect "c@example.org";
}
""")
    msg, fwd = message("fwd this")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", fwd) is None
    (argv, sent), = outbox(server)
    assert argv == ["-i", "-f", "sender@example.net", "--",
                    "friend@example.org"]
    assert sent.startswith(b"Received: from columba.test by columba.test")
    assert b"with Sieve redirect for <friend@example.org>" in sent
    assert b"Return-Path" not in sent
    assert fwd.encode() in sent and b"\r\n\r\nHello.\r\n" in sent

    msg, cc = message("cc this")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", cc) is not None
    assert len(outbox(server)) == 1

    # The MTA refuses: the message is kept, not lost.
    msg, broken = message("broken forward")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", broken) is not None
    assert outbox(server) == []

    # sieve_maxredirects is 2: the third redirect fails, so a keep.
    msg, many = message("many forwards")
    assert deliver(server, msg)[0][0] == 250
    assert [a[-1] for a, _ in outbox(server)] == ["a@example.org",
                                                  "b@example.org"]
    assert has(server, "alice", many) is not None


def decode_subject(raw):
    m = re.search(rb"\r\nSubject: (.*?)\r\n(?![ \t])", raw, re.S)
    value = m.group(1).decode().replace("\r\n", "")
    return str(email.header.make_header(email.header.decode_header(value)))


def test_vacation_once_per_sender(server):
    install(server, "alice", """require "vacation";
vacation :days 1 :subject "Abwesend \u2013 Gr\u00fc\u00dfe"
    "I am away until Monday.";
""")
    msg, first = message("question one")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", first) is not None
    (argv, reply), = outbox(server)
    assert argv == ["-i", "-f", "<>", "--", "sender@example.net"]
    assert b"\r\nAuto-Submitted: auto-replied" in reply
    assert b"\r\nIn-Reply-To: " + first.encode() in reply
    assert reply.startswith(b"From: <alice@columba.test>\r\n")
    assert b"=?UTF-8?B?" in reply
    assert decode_subject(reply) == "Abwesend \u2013 Gr\u00fc\u00dfe"
    assert b"I am away until Monday." in reply

    # The same sender again within the period: no second reply.
    msg, second = message("question two")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", second) is not None
    assert outbox(server) == []

    # Another sender gets one; mailing-list mail never does.
    msg, _ = message("hello", sender="Other <other@example.net>")
    assert deliver(server, msg, sender="other@example.net")[0][0] == 250
    assert [a[-1] for a, _ in outbox(server)] == ["other@example.net"]
    msg, _ = message("list post", extra="List-Id: <l.example.net>\r\n",
                     sender="Third <third@example.net>")
    assert deliver(server, msg, sender="third@example.net")[0][0] == 250
    assert outbox(server) == []


def test_vacation_default_subject(server):
    install(server, "alice", 'require "vacation";\r\n'
                             'vacation :handle "h2" "Back soon.";\r\n')
    msg, _ = message("=?UTF-8?Q?K=C3=A4se?=",
                     sender="Fourth <fourth@example.net>")
    assert deliver(server, msg, sender="fourth@example.net")[0][0] == 250
    (argv, reply), = outbox(server)
    assert decode_subject(reply) == "Auto: K\u00e4se"


def test_notify_mailto(server):
    install(server, "alice", """require ["enotify", "fcc", "imap4flags"];
notify :fcc "Archive" :flags "\\\\Seen" :message "New mail for you"
    "mailto:alice-phone@example.com";
""")
    msg, msgid = message("ping")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid) is not None
    (argv, note), = outbox(server)
    assert argv == ["-i", "-f", "<>", "--", "alice-phone@example.com"]
    assert b"\r\nAuto-Submitted: auto-notified" in note
    assert b"\r\nSubject: New mail for you\r\n" in note
    # the :fcc copy of the notification, with its flag
    copies = [(f, raw) for f, raw in fetch(server, "alice", "Archive")
              if b"auto-notified" in raw]
    assert len(copies) == 1 and "\\Seen" in copies[0][0]


def test_specialuse_and_metadata(server):
    imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
    m = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    m.login("alice", USERS["alice"])
    assert m.create("Spam")[0] == "OK"
    for mbox, entry, value in (("Spam", "/private/specialuse", r"\\Junk"),
                               ("INBOX", "/private/comment", "filter-on")):
        typ, data = m._simple_command("SETMETADATA", '"%s"' % mbox,
                                      '(%s "%s")' % (entry, value))
        assert typ == "OK", data
    m.logout()
    install(server, "alice", r"""require ["fileinto", "special-use",
    "mboxmetadata", "mailbox"];
if allof (specialuse_exists "\\Junk",
          metadata :is "INBOX" "/private/comment" "filter-on",
          mailboxexists "Archive",
          not mailboxexists "Nowhere") {
    fileinto :specialuse "\\Junk" "Fallback";
}
""")
    msg, msgid = message("special")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid, "Spam") is not None
    assert has(server, "alice", msgid) is None


def test_mailboxid(server):
    m = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    m.login("alice", USERS["alice"])
    typ, data = m.status("Archive", "(MAILBOXID)")
    assert typ == "OK", data
    mboxid = re.search(rb"MAILBOXID \(([^)]+)\)", data[0]).group(1).decode()
    m.logout()
    install(server, "alice", f"""require ["fileinto", "mailboxid"];
if mailboxidexists "{mboxid}" {{
    fileinto :mailboxid "{mboxid}" "Renamed-Away";
}}
""")
    msg, msgid = message("by id")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid, "Archive") is not None
    assert has(server, "alice", msgid) is None


def test_redirect_loop_is_kept(server):
    install(server, "alice", 'redirect "friend@example.org";\r\n')
    hops = "".join("Received: from hop%d.example by x; "
                   "Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i
                   for i in range(101))
    msg, msgid = message("looping", extra=hops)
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid) is not None
    assert outbox(server) == []


def test_encoded_subject_matched_by_utf8_value(server):
    install(server, "alice", 'require "fileinto";\r\n'
            'if header :is "subject" "Gr\u00fc\u00dfe aus K\u00f6ln" '
            '{ fileinto "Archive"; }\r\n')
    msg, msgid = message("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid, "Archive") is not None
    assert has(server, "alice", msgid) is None


def test_editheader_changes_the_delivered_copy(server):
    install(server, "alice", 'require "editheader";\r\n'
                             'addheader "X-Sieve" "filtered";\r\n'
                             'deleteheader "X-Spam";\r\n')
    msg, msgid = message("edited", extra="X-Spam: yes\r\n")
    assert deliver(server, msg)[0][0] == 250
    (flags, raw), = [x for x in fetch(server, "alice")
                     if msgid.encode() in x[1]]
    assert b"\r\nX-Sieve: filtered\r\n" in raw
    assert b"X-Spam" not in raw


def test_envelope_environment_duplicate(server):
    install(server, "alice", """require ["envelope", "environment",
    "subaddress", "fileinto", "duplicate"];
if duplicate :header "X-Ticket" { discard; stop; }
if allof (envelope :detail "to" "lists",
          envelope :is "from" "sender@example.net",
          environment :is "location" "MDA",
          environment :is "phase" "during",
          environment :is "name" "Columba") {
    fileinto "Archive";
}
""")
    msg, msgid = message("env test", extra="X-Ticket: 42\r\n")
    assert deliver(server, msg, ["alice+lists"])[0][0] == 250
    assert has(server, "alice", msgid, "Archive") is not None
    # another message with the same ticket: a duplicate, discarded
    msg, again = message("env test again", extra="X-Ticket: 42\r\n")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", again) is None
    assert has(server, "alice", again, "Archive") is None


def test_include_personal_and_global(server):
    c = ManageSieve(server.sieve_port, "alice")
    ok, text = c.command(b'PUTSCRIPT "lib" %L',
                         b'require "fileinto";\r\nfileinto "Archive";\r\n')
    assert ok, text
    c.put_active("main", 'require "include";\r\n'
                         'include :personal "lib";\r\n'
                         'include :global :optional "nosuch";\r\n')
    c.close()
    msg, msgid = message("included")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid, "Archive") is not None


def test_runtime_error_keeps(server):
    install(server, "alice", 'require ["include", "fileinto"];\r\n'
                             'fileinto "Archive";\r\n'
                             'include :personal "missing";\r\n')
    msg, msgid = message("runtime error")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid) is not None
    assert has(server, "alice", msgid, "Archive") is None
    server.wait_for_log(r"sieve: run-time error, keeping .*missing")


def test_corrupt_bytecode(server):
    install(server, "alice", 'require "fileinto";\r\n'
                             'fileinto "Archive";\r\n', name="corrupt")
    bc = os.path.join(user_dir(server, "alice"), "corrupt.bc")
    with open(bc, "rb") as f:
        good = f.read()

    # Garbage: recompiled from the script and rewritten.
    with open(bc, "wb") as f:
        f.write(b"garbage")
    msg, msgid = message("recompiled")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid, "Archive") is not None
    with open(bc, "rb") as f:
        assert f.read() == good

    # Truncated (its header still current): a run-time error, kept.
    with open(bc, "wb") as f:
        f.write(good[:len(good) // 2 + 4])
    msg, msgid = message("truncated")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid) is not None

    # Garbage bytecode and a script that no longer compiles: kept.
    with open(bc, "wb") as f:
        f.write(b"garbage")
    with open(os.path.join(user_dir(server, "alice"),
                           "corrupt.script"), "wb") as f:
        f.write(b"this is not sieve;\r\n")
    msg, msgid = message("uncompilable")
    assert deliver(server, msg)[0][0] == 250
    assert has(server, "alice", msgid) is not None
    deactivate(server, "alice")


def test_sieve_connect_upload(server, tmp_path):
    if not shutil.which("sieve-connect"):
        pytest.skip("sieve-connect is not installed")
    local = tmp_path / "carol.sieve"
    local.write_bytes(b'require ["fileinto", "mailbox"];\r\n'
                      b'if header :contains "subject" "bulk" '
                      b'{ fileinto :create "Bulk"; }\r\n')
    rfd, wfd = os.pipe()
    os.write(wfd, USERS["carol"].encode() + b"\n")
    os.close(wfd)
    try:
        p = subprocess.run(
            ["sieve-connect", "--server", "127.0.0.1", "--nosrv",
             "--port", str(server.sieve_port), "--user", "carol",
             "--authmech", "PLAIN", "--notlsverify", "--noclearchan",
             "--passwordfd", str(rfd), "--localsieve", str(local),
             "--remotesieve", "carol", "--upload"],
            capture_output=True, timeout=30, pass_fds=(rfd,),
            stdin=subprocess.DEVNULL)
    finally:
        os.close(rfd)
    assert p.returncode == 0, p.stderr.decode()
    c = ManageSieve(server.sieve_port, "carol")
    assert c.command(b'SETACTIVE "carol"')[0]
    c.close()
    msg, msgid = message("bulk offer", to="carol@columba.test")
    assert deliver(server, msg, ["carol"])[0][0] == 250
    assert has(server, "carol", msgid, "Bulk") is not None
    assert has(server, "carol", msgid) is None

