"""Real POP3 clients against pop3d: Debian's fetchmail and getmail6
download from a running instance into a maildir or files, and the
messages must arrive whole; their UIDL bookkeeping must see nothing new
on a second run, and deleting clients must leave the mailbox empty."""

import email
import glob
import imaplib
import os
import shutil
import subprocess

import pytest

from columba import Instance, free_port, program

SERVERNAME = "columba.test"


def message(n):
    return (f"From: sender@example.com\r\n"
            f"To: rcpt@example.com\r\n"
            f"Subject: client test {n}\r\n"
            f"Message-ID: <client{n}@example.com>\r\n"
            f"\r\n"
            f"Body of message {n}\r\n"
            f".a line with a leading dot\r\n").encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not shutil.which("saslpasswd2"):
        pytest.skip("needs saslpasswd2 (sasl2-bin)")
    iport, port = free_port(), free_port()
    inst = Instance(services=[
        ("imap", {"cmd": program("imap/imapd"),
                  "listen": f"127.0.0.1:{iport}"}),
        ("pop3", {"cmd": program("imap/pop3d"),
                  "listen": f"127.0.0.1:{port}"})], name="pop3-clients")
    sasldb = inst.path("sasldb2")
    cert = inst.path("server.pem")
    key = inst.path("server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=" + SERVERNAME,
                    "-addext", "subjectAltName=DNS:" + SERVERNAME,
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    inst.options.update({
        "tls_server_cert": cert,
        "tls_server_key": key,
        "servername": SERVERNAME,
        "allowplaintext": "yes",
        "autocreate_quota": "0",
        "failedloginpause": "0",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port, inst.iport, inst.sasldb = port, iport, sasldb
    inst.cert = cert
    yield inst
    inst.stop()
    inst.cleanup()


def add_user(server, user, count):
    subprocess.run(["saslpasswd2", "-c", "-p", "-f", server.sasldb,
                    "-u", SERVERNAME, user],
                   input=("pw-" + user).encode(), check=True)
    os.chmod(server.sasldb, 0o644)
    m = imaplib.IMAP4("127.0.0.1", server.iport, timeout=10)
    m.login(user, "pw-" + user)
    for i in range(1, count + 1):
        assert m.append("INBOX", None, None, message(i))[0] == "OK"
    m.logout()


def imap_count(server, user):
    m = imaplib.IMAP4("127.0.0.1", server.iport, timeout=10)
    m.login(user, "pw-" + user)
    n = int(m.select("INBOX")[1][0])
    m.logout()
    return n


def check_arrived(paths, count):
    """Each of messages 1..count arrived once, body intact."""
    seen = {}
    for path in paths:
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f)
        seen[msg["Message-ID"]] = msg.get_payload()
    assert sorted(seen) == sorted(f"<client{i}@example.com>"
                                  for i in range(1, count + 1))
    for i in range(1, count + 1):
        body = seen[f"<client{i}@example.com>"].replace("\r\n", "\n")
        assert body == f"Body of message {i}\n.a line with a leading dot\n"


def run_fetchmail(server, home, user, keep, outdir):
    """One fetchmail run delivering each message to a file in `outdir`
    through its MDA; `keep` leaves them on the server.  fetchmail insists
    on STLS, with the certificate checked against the server name."""
    rc = os.path.join(home, "fetchmailrc")
    with open(rc, "w") as f:
        f.write("set no syslog\n"
                f"poll 127.0.0.1 service {server.port}"
                " protocol pop3 uidl\n"
                f'  user "{user}" there with password "pw-{user}"\n'
                f"  {'keep' if keep else 'nokeep fetchall'}\n"
                f"  sslproto 'TLS1.2+' sslcertck sslcertfile {server.cert}"
                f" sslcommonname {SERVERNAME}\n"
                f"  mda \"/bin/sh -c 'cat > {outdir}/msg.$$'\"\n")
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=home)
    return subprocess.run(["fetchmail", "-f", rc, "-N", "--nosyslog",
                           "-i", os.path.join(home, "fetchids")],
                          env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.skipif(not shutil.which("fetchmail"),
                    reason="needs fetchmail")
def test_fetchmail(server, tmp_path):
    add_user(server, "fm", 5)
    out = tmp_path / "out"
    out.mkdir()
    r = run_fetchmail(server, str(tmp_path), "fm", True, str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    check_arrived(glob.glob(str(out / "msg.*")), 5)
    assert imap_count(server, "fm") == 5

    # UIDL: the kept messages are not fetched again (1: no mail).
    r = run_fetchmail(server, str(tmp_path), "fm", True, str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert len(glob.glob(str(out / "msg.*"))) == 5

    # Without keep everything is fetched and deleted on the server.
    for path in glob.glob(str(out / "msg.*")):
        os.unlink(path)
    r = run_fetchmail(server, str(tmp_path), "fm", False, str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    check_arrived(glob.glob(str(out / "msg.*")), 5)
    assert imap_count(server, "fm") == 0


def run_getmail(server, base, user, maildir_name, read_all, delete):
    """One getmail run into the maildir `maildir_name` in the instance
    directory; returns the result and the files in its new/.  getmail
    refuses to deliver as root, so then it delivers as the test user."""
    maildir = server.path(maildir_name)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    as_user = ""
    if server.is_root:
        server.hand_over()
        as_user = f"user = {server.user}\n"
    rc = os.path.join(base, "getmailrc")
    with open(rc, "w") as f:
        f.write(f"[retriever]\n"
                f"type = SimplePOP3Retriever\n"
                f"server = 127.0.0.1\n"
                f"port = {server.port}\n"
                f"username = {user}\n"
                f"password = pw-{user}\n"
                f"\n[destination]\n"
                f"type = Maildir\n"
                f"path = {maildir}/\n"
                f"{as_user}"
                f"\n[options]\n"
                f"read_all = {'true' if read_all else 'false'}\n"
                f"delete = {'true' if delete else 'false'}\n"
                f"verbose = 0\n")
    r = subprocess.run(["getmail", "--rcfile", rc, "--getmaildir", base],
                       capture_output=True, text=True, timeout=60)
    return r, glob.glob(os.path.join(maildir, "new", "*"))


@pytest.mark.skipif(not shutil.which("getmail"),
                    reason="needs getmail6")
def test_getmail6(server, tmp_path):
    add_user(server, "gm", 4)
    r, files = run_getmail(server, str(tmp_path), "gm", "Maildir", False,
                           False)
    assert r.returncode == 0, r.stdout + r.stderr
    check_arrived(files, 4)

    # A second run finds nothing new by UIDL.
    r, files = run_getmail(server, str(tmp_path), "gm", "Maildir", False,
                           False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(files) == 4

    # New mail arrives: only it is fetched.
    m = imaplib.IMAP4("127.0.0.1", server.iport, timeout=10)
    m.login("gm", "pw-gm")
    assert m.append("INBOX", None, None, message(5))[0] == "OK"
    m.logout()
    r, files = run_getmail(server, str(tmp_path), "gm", "Maildir", False,
                           False)
    assert r.returncode == 0, r.stdout + r.stderr
    check_arrived(files, 5)

    # Fetch everything again into a new maildir and delete it all.
    r, files = run_getmail(server, str(tmp_path), "gm", "Maildir2", True,
                           True)
    assert r.returncode == 0, r.stdout + r.stderr
    check_arrived(files, 5)
    assert imap_count(server, "gm") == 0
