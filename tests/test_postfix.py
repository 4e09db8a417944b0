"""End-to-end delivery through a real MTA: a private Postfix instance
(Debian's package, its own configuration, queue and data directories in
a temporary directory, smtpd on a free loopback port) hands mail for the
test domain to lmtpd over LMTP; the message is read back over IMAP.
The system's own Postfix is never started."""

import imaplib
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import tempfile
import time

import pytest

from columba import (Instance, format_cyrus_conf, free_port, program,
                     wait_until)

POSTFIX = "/usr/sbin/postfix"
SERVERNAME = "columba.test"
DOMAIN = "columba.test"
VDOMAIN = "example.org"         # delivered over lmtpd's Unix socket
USERS = {"admin": "s3cret", "alice": "wonderland"}

pytestmark = [
    pytest.mark.skipif(not os.access(POSTFIX, os.X_OK),
                       reason="needs postfix (Debian package)"),
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="a private Postfix instance needs root"),
    pytest.mark.skipif(not shutil.which("saslpasswd2"),
                       reason="needs saslpasswd2 (sasl2-bin)"),
]

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
maillog_file_prefixes = {base}
maillog_file = {base}/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination = {domain}
mynetworks = 127.0.0.0/8
local_recipient_maps =
local_transport = lmtp:inet:127.0.0.1:{lmtp_port}
virtual_mailbox_domains = {vdomain}
virtual_mailbox_maps =
virtual_transport = lmtp:unix:{lmtp_socket}
alias_maps =
alias_database =
relayhost =
smtputf8_enable = no
biff = no
lmtp_host_lookup = native
"""


class PrivatePostfix:
    """One Postfix instance living in its own temporary directory."""

    def __init__(self, lmtp_port, lmtp_socket):
        self.base = tempfile.mkdtemp(prefix="postfix-")
        os.chmod(self.base, 0o755)
        self.conf = os.path.join(self.base, "conf")
        self.port = free_port()
        os.makedirs(self.conf)
        os.makedirs(os.path.join(self.base, "queue"))
        data = os.path.join(self.base, "data")
        os.makedirs(data)
        pw = pwd.getpwnam("postfix")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(base=self.base, domain=DOMAIN,
                                   lmtp_port=lmtp_port, vdomain=VDOMAIN,
                                   lmtp_socket=lmtp_socket))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        self.started = False

    def run(self, *args, check=True):
        res = subprocess.run([POSTFIX, "-c", self.conf] + list(args),
                             capture_output=True, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError("postfix %s failed: %s%s\n%s" % (
                " ".join(args), res.stdout.decode(errors="replace"),
                res.stderr.decode(errors="replace"), self.log()))
        return res

    def start(self):
        self.run("start")
        self.started = True
        wait_until(self.listening, 20, what="postfix smtpd")

    def listening(self):
        try:
            s = smtplib.SMTP("127.0.0.1", self.port, timeout=2)
            s.quit()
            return True
        except OSError:
            return False

    def stop(self):
        if self.started:
            self.run("stop", check=False)
            self.started = False

    def log(self):
        try:
            with open(os.path.join(self.base, "maillog"),
                      errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def columba():
    imap_port, lmtp_port = free_port(), free_port()
    inst = Instance(name="postfix-columba")
    sock = inst.path("run", "lmtp.sock")
    inst.write_cyrus_conf(format_cyrus_conf(services=[
        ("imap", {"cmd": program("imap/imapd"),
                  "listen": f"127.0.0.1:{imap_port}"}),
        ("lmtp", {"cmd": program("imap/lmtpd") + " -a",
                  "listen": f"127.0.0.1:{lmtp_port}"}),
        ("lmtpunix", {"cmd": program("imap/lmtpd"), "listen": sock}),
    ]))
    sasldb = inst.path("sasldb2")
    for user, password in USERS.items():
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", sasldb,
                        "-u", SERVERNAME, user],
                       input=password.encode(), check=True)
    os.chmod(sasldb, 0o644)
    inst.options.update({
        "servername": SERVERNAME,
        "admins": "admin",
        "allowplaintext": "yes",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
        "virtdomains": "userid",
        "defaultdomain": DOMAIN,
        "lmtpsocket": sock,
    })
    inst.write_imapd_conf()
    inst.start()
    inst.imap_port, inst.lmtp_port, inst.sock = imap_port, lmtp_port, sock
    m = imaplib.IMAP4("127.0.0.1", imap_port, timeout=10)
    m.login("admin", USERS["admin"])
    assert m.create("user/alice")[0] == "OK"
    assert m.create("user/bob@" + VDOMAIN)[0] == "OK"
    assert m.setacl("user/bob@" + VDOMAIN, "admin", "lr")[0] == "OK"
    m.logout()
    yield inst
    inst.stop()
    inst.cleanup()


@pytest.fixture(scope="module")
def postfix(columba):
    pf = PrivatePostfix(columba.lmtp_port, columba.sock)
    try:
        pf.start()
        yield pf
    finally:
        pf.stop()
        pf.cleanup()


def inbox_messages(server, user="alice", mailbox="INBOX"):
    m = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    m.login(user, USERS[user])
    typ, data = m.select('"%s"' % mailbox, readonly=True)
    out = []
    if typ == "OK" and int(data[0]) > 0:
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        out = [d[1] for d in data if isinstance(d, tuple)]
    m.logout()
    return out


def test_mail_through_postfix_reaches_imap(columba, postfix):
    subject = "through postfix %f" % time.time()
    msg = ("From: Sender <sender@example.net>\r\n"
           "To: alice@%s\r\n"
           "Subject: %s\r\n"
           "Message-ID: <pf-%d@example.net>\r\n"
           "\r\n"
           "Hello through Postfix.\r\n"
           ".a line with a leading dot\r\n") % (DOMAIN, subject,
                                                  int(time.time()))
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=20) as s:
        refused = s.sendmail("sender@example.net", ["alice@" + DOMAIN], msg)
        assert refused == {}

    def delivered():
        return [m for m in inbox_messages(columba)
                if subject.encode() in m]
    try:
        got = wait_until(delivered, 20, interval=0.3,
                         what="delivery through postfix")
    except TimeoutError:
        raise AssertionError("not delivered; postfix log:\n"
                             + postfix.log()[-3000:]) from None
    assert len(got) == 1
    text = got[0]
    assert text.startswith(b"Return-Path: <sender@example.net>\r\n")
    # Ours first (from Postfix's LHLO name), then Postfix's own.
    m = re.match(rb"Return-Path: [^\r]*\r\nReceived: from mx\.columba\.test "
                 rb"\(\[127\.0\.0\.1\]\)\r\n\tby columba\.test "
                 rb"\(Columba lmtpd\) with LMTP id (lmtp-\S+);\r\n", text)
    assert m, text[:400]
    assert b"by mx.columba.test (Postfix)" in text
    assert text.endswith(b"\r\n.a line with a leading dot\r\n")
    assert re.search(r"status=sent \(250 2\.1\.5", postfix.log())


def test_unknown_recipient_refused_at_lmtp(columba, postfix):
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=20) as s:
        s.sendmail("sender@example.net", ["nobody-here@" + DOMAIN],
                   "Subject: nobody\r\n\r\nx\r\n")

    def bounced():
        return re.search(r"to=<nobody-here@columba\.test>.*status=bounced "
                         r"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 "
                         r"5\.1\.1", postfix.log())
    wait_until(bounced, 20, interval=0.3, what="bounce for unknown user")


def test_virtual_domain_over_unix_socket(columba, postfix):
    subject = "virtual over unix %f" % time.time()
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=20) as s:
        s.sendmail("sender@example.net", ["Bob@" + VDOMAIN],
                   "Subject: %s\r\n\r\nhello\r\n" % subject)

    def delivered():
        return [m for m in inbox_messages(columba, "admin",
                                          "user/bob@" + VDOMAIN)
                if subject.encode() in m]
    try:
        got = wait_until(delivered, 20, interval=0.3,
                         what="delivery over the unix socket")
    except TimeoutError:
        raise AssertionError("not delivered; postfix log:\n"
                             + postfix.log()[-3000:]) from None
    assert b"Received: from mx.columba.test (unix socket)\r\n" in got[0]
