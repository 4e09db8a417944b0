"""Drive our own Perl admin shells, perl/cyradm.pl and perl/sieveshell.pl,
against a running Columba imapd and timsieved: every cyradm command with
its aliases, checked on the shell's output and on the server's state
through imaplib; sieveshell's script commands against timsieved; and the
ManageSieve client's framing against a small fake server."""

import base64
import imaplib
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import threading
import time

import pytest

from columba import Instance, build_dir, free_port, program, src_dir

PERL = shutil.which("perl", path="/usr/bin:/bin") or shutil.which("perl")
CYRADM = os.path.join(src_dir(), "perl", "cyradm.pl")
SIEVESHELL = os.path.join(src_dir(), "perl", "sieveshell.pl")

SERVERNAME = "columba.test"
USERS = {"admin": "s3cret", "carol": "singer", "dan": "dancer"}


def _perl_has(module):
    return PERL and subprocess.run(
        [PERL, f"-M{module}", "-e", "1"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.skipif(not shutil.which("saslpasswd2")
                       or not shutil.which("openssl"),
                       reason="needs saslpasswd2 (sasl2-bin) and openssl"),
    pytest.mark.skipif(not _perl_has("Mail::IMAPClient")
                       or not _perl_has("IO::Socket::SSL"),
                       reason="needs Debian's libmail-imapclient-perl and "
                              "libio-socket-ssl-perl (tools/deps.sh)"),
]


def _timsieved():
    try:
        return program("sieve/timsieved")
    except FileNotFoundError:
        return None


def _make_cert(base, name, cn):
    """A self-signed certificate for `cn` that is also valid for the
    address 127.0.0.1; returns (cert, key)."""
    cert = os.path.join(base, name + ".pem")
    key = os.path.join(base, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:" + cn,
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


@pytest.fixture(scope="module")
def server():
    port = free_port()
    ssl_port = free_port()
    services = [("imap", {"cmd": program("imap/imapd"),
                          "listen": f"127.0.0.1:{port}"}),
                ("imaps", {"cmd": program("imap/imapd") + " -s",
                           "listen": f"127.0.0.1:{ssl_port}"})]
    sieve_port = None
    if _timsieved():
        sieve_port = free_port()
        services.append(("sieve", {"cmd": _timsieved(),
                                   "listen": f"127.0.0.1:{sieve_port}"}))
    inst = Instance(services=services, name="perladmin")
    sasldb = inst.path("sasldb2")
    for user, password in USERS.items():
        subprocess.run(["saslpasswd2", "-c", "-p", "-f", sasldb,
                        "-u", SERVERNAME, user],
                       input=password.encode(), check=True)
    os.chmod(sasldb, 0o644)
    cert, key = _make_cert(inst.basedir, "server", SERVERNAME)
    inst.other_cert, _ = _make_cert(inst.basedir, "other", "other.test")
    os.makedirs(inst.path("other"))
    os.makedirs(inst.path("sieve"))
    inst.options.update({
        "servername": SERVERNAME,
        "admins": "admin",
        "allowplaintext": "yes",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
        "failedloginpause": "0",
        "unixhierarchysep": "no",
        "partition-other": inst.path("other"),
        "tls_server_cert": cert,
        "tls_server_key": key,
        "sievedir": inst.path("sieve"),
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port
    inst.ssl_port = ssl_port
    inst.sieve_port = sieve_port
    inst.cert = cert
    yield inst
    inst.stop()
    inst.cleanup()


def cyradm(server, commands, user="admin", password=None, extra=(),
           stdin_prefix=""):
    """Run perl/cyradm.pl with `commands` (one per line) on stdin;
    returns (exit status, stdout, stderr)."""
    args = [PERL, CYRADM, "--norc", "--user", user, "--port",
            str(server.port)]
    if password is not False:
        args += ["--password", password or USERS[user]]
    args += list(extra) + ["127.0.0.1"]
    env = dict(os.environ, HOME=server.basedir, TERM="dumb")
    proc = subprocess.run(args, input=stdin_prefix + "\n".join(commands)
                          + "\n", capture_output=True, text=True,
                          timeout=60, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def section(out, command):
    """What cyradm printed for `command` (up to the next prompt)."""
    part = out.split("127.0.0.1> " + command + "\n", 1)[1]
    return part.split("127.0.0.1> ", 1)[0]


@pytest.fixture
def imap(server):
    conn = imaplib.IMAP4("127.0.0.1", server.port)
    conn.login("admin", USERS["admin"])
    yield conn
    conn.logout()


def listed(conn, pattern):
    typ, data = conn.list('""', pattern)
    assert typ == "OK", data
    names = []
    for d in data:
        if d:
            names.append(d.decode().rsplit(" ", 1)[1].strip('"'))
    return names


imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))


def metadata(conn, mailbox, entry):
    """The value of one entry (None when it has none)."""
    typ, data = conn._simple_command("GETMETADATA", mailbox or '""', entry)
    assert typ == "OK", data
    typ, data = conn._untagged_response(typ, data, "METADATA")
    text = b" ".join(d if isinstance(d, bytes) else b"".join(d)
                     for d in data if d)
    m = re.search(re.escape(entry.encode()) + rb'" (NIL|"([^"]*)")', text)
    return None if not m or m.group(1) == b"NIL" else m.group(2).decode()


# -- the scripts themselves ---------------------------------------------

def test_scripts_compile_cleanly():
    for script in (CYRADM, SIEVESHELL):
        p = subprocess.run([PERL, "-wc", script], capture_output=True,
                           text=True)
        assert p.returncode == 0 and "syntax OK" in p.stderr, p.stderr
        assert p.stderr.strip().endswith("syntax OK"), p.stderr


def test_usage_and_version():
    p = subprocess.run([PERL, CYRADM, "--help"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "usage: cyradm" in p.stderr
    p = subprocess.run([PERL, SIEVESHELL], capture_output=True, text=True)
    assert p.returncode == 2 and "usage: sieveshell" in p.stderr
    p = subprocess.run([PERL, CYRADM, "--version"], capture_output=True,
                       text=True)
    assert p.returncode == 0 and "cyradm (Columba)" in p.stdout


def test_built_scripts_name_the_interpreter():
    """make writes perl/cyradm and perl/sieveshell with PERL's path."""
    for name in ("cyradm", "sieveshell"):
        built = os.path.join(build_dir(), "perl", name)
        if not os.path.exists(built):
            pytest.skip(f"{built} is not built")
        with open(built) as f:
            assert re.fullmatch(r"#!/\S*perl\n", f.readline())
        assert os.access(built, os.X_OK)
    p = subprocess.run([os.path.join(build_dir(), "perl", "cyradm"),
                        "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and "cyradm (Columba)" in p.stdout


# -- cyradm ---------------------------------------------------------------

def test_mailboxes_create_list_rename_delete(server, imap):
    rc, out, err = cyradm(server, [
        "cm user.ann",
        "create user.ann.Work",
        "createmailbox user.ann.Far other",
        "cm --partition other user.ann.Far2",
        "cm --specialuse Drafts user.ann.Drafts",
        "cm --specialuse \\\\Junk --partition other user.ann.Spam",
        "lm user.ann*",
        "list user.ann.%",
        "listmailbox -specialuse user.ann*",
        "lm % user.ann.",
        "renm user.ann.Work user.ann.Job",
        "rename user.ann.Far user.ann.Near default",
        "renamemailbox --partition other user.ann.Job user.ann.Task",
        "delete user.ann.Near",
        "dm user.ann.Far2",
        "deletemailbox user.ann.Spam",
        "lm user.ann*",
    ])
    assert err == "", err
    assert rc == 0
    first = section(out, "lm user.ann*")
    assert "user.ann (\\HasChildren)\n" in first, out
    assert "user.ann.Work (\\HasNoChildren)\n" in first, out
    assert "user.ann.Drafts (\\HasNoChildren \\Drafts)\n" in first, out
    assert "user.ann.Spam (\\HasNoChildren \\Junk)\n" in first, out
    assert "user.ann (" not in section(out, "list user.ann.%")
    su = section(out, "listmailbox -specialuse user.ann*")
    assert su.splitlines() == ["user.ann.Drafts (\\HasNoChildren \\Drafts)",
                               "user.ann.Spam (\\HasNoChildren \\Junk)"], out
    assert "user.ann.Far2 (\\HasNoChildren)" in section(out, "lm % user.ann.")
    last = out.rsplit("127.0.0.1> lm user.ann*\n", 1)[1]
    assert sorted(last.splitlines()[:-1]) == [
        "user.ann (\\HasChildren)",
        "user.ann.Drafts (\\HasNoChildren \\Drafts)",
        "user.ann.Task (\\HasNoChildren)"], out

    assert sorted(listed(imap, "user.ann*")) == [
        "user.ann", "user.ann.Drafts", "user.ann.Task"]
    part = "/shared/vendor/cmu/cyrus-imapd/partition"
    assert metadata(imap, "user.ann.Task", part) == "other"
    assert metadata(imap, "user.ann", part) == "default"


def test_create_option_and_argument_conflict(server):
    rc, out, err = cyradm(server, [
        "cm --partition other user.bo default",
        "renm --partition other user.bo user.bo2 default",
        "cm",
    ])
    assert "createmailbox: partition given both" in err, err
    assert "renamemailbox: partition given both" in err, err
    assert "createmailbox: usage: createmailbox" in err, err
    assert rc == 1


def test_acl_commands(server, imap):
    rc, out, err = cyradm(server, [
        "cm user.cat",
        "sam user.cat anyone read carol lrswi",
        "setacl user.cat dan all",
        "setaclmailbox user.cat group:staff post",
        "lam user.cat",
        "dam user.cat carol dan",
        "deleteacl user.cat group:staff",
        "listacl user.cat",
        "sam user.cat anyone none",
        "listaclmailbox user.cat",
    ])
    assert err == "", err
    first = section(out, "lam user.cat").splitlines()
    assert "anyone lrs" in first, out
    assert "carol lrswi" in first, out
    assert any(re.fullmatch(r"dan lrswipkxte\S*a\S*", l) for l in first), out
    assert "group:staff lrsp" in first, out
    assert all(re.fullmatch(r"\S+ \S*", l) for l in first), out
    second = section(out, "listacl user.cat").splitlines()
    assert [l.split()[0] for l in second] == ["cat", "anyone"], out
    third = out.rsplit("listaclmailbox user.cat\n", 1)[1].splitlines()
    assert [l.split()[0] for l in third[:-1]] == ["cat"], out

    typ, data = imap.getacl("user.cat")
    assert typ == "OK"
    assert b"anyone" not in data[0] and b"carol" not in data[0], data


def test_quota_commands(server, imap):
    rc, out, err = cyradm(server, [
        "cm user.dee",
        "cm user.dee.Sub",
        "sq user.dee 20000",
        "lq user.dee",
        "setquota user.dee STORAGE 100 MESSAGE 10 ANNOTATION-STORAGE 50 "
        "MAILBOX 5",
        "listquota user.dee",
        "lqr user.dee.Sub",
        "sq user.dee storage 300 message 30",
        "lqm user.dee.Sub",
        "listquotaroot user.dee",
        "sq user.dee none",
        "lq user.dee",
        "sq user.dee bogus 3",
        "sq user.dee STORAGE lots",
    ])
    assert section(out, "lq user.dee") == " STORAGE 0/20000 (0%)\n", out
    assert section(out, "listquota user.dee") == (
        " STORAGE 0/100 (0%) MESSAGE 0/10 (0%) ANNOTATION-STORAGE 0/50 (0%)"
        " MAILBOX 2/5 (40%)\n"), out
    assert section(out, "lqr user.dee.Sub").startswith(
        "user.dee STORAGE 0/100 (0%) MESSAGE 0/10 (0%)"), out
    assert section(out, "lqm user.dee.Sub") == \
        "user.dee STORAGE 0/300 (0%) MESSAGE 0/30 (0%)\n", out
    assert section(out, "listquotaroot user.dee") == \
        "user.dee STORAGE 0/300 (0%) MESSAGE 0/30 (0%)\n", out
    assert "listquota: Quota root does not exist" in err, err
    assert "setquota: unknown quota resource bogus" in err, err
    assert "setquota: invalid quota value lots" in err, err

    typ, data = imap.getquota("user.dee")
    assert typ == "NO", data
    cyradm(server, ["sq user.dee MESSAGE 7"])
    typ, data = imap.getquota("user.dee")
    assert typ == "OK" and b"MESSAGE 0 7" in data[0], data


def test_metadata_commands(server, imap):
    rc, out, err = cyradm(server, [
        "cm user.eve",
        "mboxcfg user.eve comment 'Hello from perl'",
        "mboxconfig user.eve expire 30",
        "setmetadata user.eve squat true",
        "setmd --private user.eve comment mine",
        "setmd user.eve /shared/vendor/cmu/cyrus-imapd/news2mail a@b.c",
        "setmd user.eve plain-comment",
        "info user.eve",
        "getmetadata user.eve",
        "getmd user.eve /shared/comment",
        "setinfo motd 'Welcome aboard'",
        "setinfo admin postmaster@columba.test",
        "info",
        "getmd",
        "mboxcfg user.eve expire none",
        "setinfo motd none",
    ])
    assert err == "", err
    info = section(out, "info user.eve")
    lines = info.splitlines()
    assert lines[0] == "{user.eve}:", out
    assert lines[1] == "  private:" and "    comment: mine" in lines, out
    assert "  shared:" in lines, out
    shared = lines[lines.index("  shared:"):]
    assert "    comment: plain-comment" in shared, out
    assert "    expire: 30" in shared, out
    assert "    squat: true" in shared, out
    assert "    news2mail: a@b.c" in shared, out
    assert "    partition: default" in shared, out
    assert section(out, "getmetadata user.eve") == info
    assert section(out, "getmd user.eve /shared/comment") == \
        "{user.eve}:\n  shared:\n    comment: plain-comment\n", out
    server_info = section(out, "info")
    assert server_info.startswith("{Server Wide}\n  shared:\n"), out
    assert "    motd: Welcome aboard\n" in server_info, out
    assert "    admin: postmaster@columba.test\n" in server_info, out
    assert section(out, "getmd") == server_info

    assert metadata(imap, "user.eve", "/shared/comment") == "plain-comment"
    assert metadata(imap, "user.eve",
                    "/shared/vendor/cmu/cyrus-imapd/expire") is None
    assert metadata(imap, "", "/shared/motd") is None
    assert metadata(imap, "", "/shared/admin") == "postmaster@columba.test"


def test_subscribe_reconstruct_version_help(server, imap):
    rc, out, err = cyradm(server, [
        "cm user.fay",
        "cm user.fay.A",
        "sub user.fay.A",
        "subscribe user.fay",
        "lm -subscribed user.fay*",
        "unsub user.fay",
        "lm --subscribed user.fay*",
        "reconstruct user.fay",
        "reconstruct -r user.fay",
        "version",
        "ver",
        "help",
        "? cm",
        "server",
        "servername",
    ])
    assert err == "", err
    assert section(out, "lm -subscribed user.fay*").splitlines() == [
        "user.fay (\\HasChildren)", "user.fay.A (\\HasNoChildren)"], out
    assert section(out, "lm --subscribed user.fay*").splitlines() == [
        "user.fay.A (\\HasNoChildren)"], out
    typ, data = imap.lsub('""', "user.fay*")
    assert typ == "OK" and len([d for d in data if d]) == 1, data
    version = section(out, "version")
    assert re.search(r"^name\s+: Columba$", version, re.M), out
    assert re.search(r"^version\s+: \S+$", version, re.M), out
    assert section(out, "ver") == version
    helptext = section(out, "help")
    for words in ("authenticate, login, auth", "createmailbox, create, cm",
                  "listquotaroot, lqr, lqm", "setquota, sq",
                  "subscribe, sub", "reconstruct", "exit, quit",
                  "server, servername, connect", "mboxconfig, mboxcfg",
                  "listaclmailbox, listacl, lam", "help, ?"):
        assert words in helptext, helptext
    assert "usage: createmailbox [--partition" in section(out, "? cm")
    assert section(out, "server") == "127.0.0.1\n"
    assert section(out, "servername") == "127.0.0.1\n"


def test_connect_disconnect_authenticate(server):
    rc, out, err = cyradm(server, [
        "disconnect",
        "lm user.*",
        "server --noauthenticate 127.0.0.1:%d" % server.port,
        "lm user.*",
        "authenticate admin",
        "cm user.gil",
        "disc",
        "connect 127.0.0.1:%d" % server.port,
        "lm user.gil",
        "servername --noauthenticate 127.0.0.1:%d" % server.port,
        "login --mechanisms PLAIN admin",
        "lm user.gil.*",
        "connect --noauthenticate 127.0.0.1:%d" % server.port,
        "auth admin",
        "lm user.gil",
    ])
    assert "cyradm> lm user.*\n" in out, out
    assert "listmailbox: not connected to a server" in err, err
    # connected but not yet logged in: the server refuses LIST
    assert err.count("listmailbox:") == 2, err
    assert "user.gil (\\HasNoChildren)" in out.split("lm user.gil\n")[1]
    assert "user.gil (\\HasNoChildren)" in out.rsplit("lm user.gil\n")[1]
    assert err.count("\n") == 2, err


def test_errors_and_exit_status(server):
    rc, out, err = cyradm(server, [
        "cm user.hal",
        "cm user.hal",
        "xfer user.hal otherserver",
        "lam user.nosuchuser",
        "frobnicate",
        "cd /",
        "chdir /nonexistent-dir",
        "sam user.hal carol",
    ])
    assert "createmailbox: [ALREADYEXISTS]" in err, err
    assert re.search(r"xfermailbox: .*murder", err), err
    assert "listaclmailbox: [NONEXISTENT]" in err, err
    assert "unknown command: frobnicate" in err, err
    assert "chdir: /nonexistent-dir: No such file" in err, err
    assert err.count("chdir") == 1, err
    assert "setaclmailbox: usage:" in err, err
    assert rc == 1
    rc, out, err = cyradm(server, ["lm user.hal", "exit 7", "cm user.x"])
    assert rc == 7 and "cm user.x" not in out
    rc, out, err = cyradm(server, ["dm user.nosuch", "quit"])
    assert rc == 1, (out, err)
    rc, out, err = cyradm(server, ["dm user.nosuch", "lm user.hal"])
    assert rc == 0, (out, err)


def test_non_admin_is_refused_admin_commands(server):
    cyradm(server, ["cm user.carol"])
    rc, out, err = cyradm(server, ["sq user.carol 5", "reconstruct INBOX",
                                   "lm"], user="carol")
    assert "setquota:" in err and "NOPERM" in err, err
    assert "reconstruct:" in err, err
    assert "INBOX" in section(out, "lm"), out


def test_password_from_stdin_and_bad_password(server):
    rc, out, err = cyradm(server, ["cm user.ida", "lm user.ida"],
                          password=False, stdin_prefix="s3cret\n")
    assert err == "", err
    assert "user.ida (\\HasNoChildren)" in out, out
    assert "s3cret" not in out
    rc, out, err = cyradm(server, ["lm"], password="wrong")
    assert rc == 1 and "authenticate:" in err, err


def test_proxy_authorization(server):
    cyradm(server, ["cm user.dan"])
    # altnamespace (the default): dan's folders sit beside his INBOX
    rc, out, err = cyradm(server, ["lm", "cm Mine"],
                          extra=["--authz", "dan", "--auth", "PLAIN"])
    assert err == "", err
    assert "INBOX" in section(out, "lm"), out
    rc, out, err = cyradm(server, ["lm user.dan*"])
    assert "user.dan.Mine (\\HasNoChildren)" in out, out


def test_starttls(server):
    cyradm(server, ["cm user.dan"])
    rc, out, err = cyradm(server, ["lm user.dan"],
                          extra=["--tls", "--cafile", server.cert])
    assert err == "" and "user.dan (" in out, err
    rc, out, err = cyradm(server, ["lm user.dan"],
                          extra=["--tls", "--cafile", server.other_cert])
    assert "STARTTLS failed" in err, err
    assert "user.dan (" not in out
    rc, out, err = cyradm(server, ["lm user.dan"], extra=["--notls"])
    assert err == "" and "user.dan (" in out, err
    # implicit TLS (imaps): --ssl, with the port from the server name
    args = [PERL, CYRADM, "--norc", "--user", "admin", "--password",
            USERS["admin"], "--ssl", "--cafile", server.cert,
            f"127.0.0.1:{server.ssl_port}"]
    p = subprocess.run(args, input="lm user.dan\n", capture_output=True,
                       text=True, timeout=60)
    assert p.stderr == "" and "user.dan (" in p.stdout, p.stderr


def test_interactive_terminal(server):
    """With a terminal: Term::ReadLine prompts, the password is asked
    for without echo, and EOF (^D) leaves the shell."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(HOME=server.basedir, TERM="dumb")
        os.execv(PERL, [PERL, CYRADM, "--norc", "--user", "admin",
                        "--port", str(server.port), "127.0.0.1"])
    out = b""

    def expect(what, count=1, timeout=20):
        nonlocal out
        deadline = time.monotonic() + timeout
        while out.count(what) < count:
            left = deadline - time.monotonic()
            assert left > 0, out
            r, _, _ = select.select([fd], [], [], left)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                assert chunk, out
                out += chunk
    try:
        expect(b"Password: ")
        os.write(fd, b"s3cret\n")
        expect(b"127.0.0.1> ")
        os.write(fd, b"cm user.jo\n")
        expect(b"127.0.0.1> ", count=2)
        os.write(fd, b"lm user.jo\n")
        expect(b"user.jo (\\HasNoChildren)")
        expect(b"127.0.0.1> ", count=3)
        os.write(fd, b"\x04")
        _, status = os.waitpid(pid, 0)
        pid = None
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    assert b"s3cret" not in out, out
    assert os.WEXITSTATUS(status) == 0


# -- sieveshell against timsieved -------------------------------------------

GOOD = b'require "fileinto";\r\nif header :contains "subject" "x" {\r\n' \
       b'  fileinto "INBOX.x";\r\n}\r\nkeep;\r\n'
BAD = b"keep;\r\nfrobnicate error;\r\n"


def sieveshell(server, script, authname="carol", user=None, extra=()):
    if not server.sieve_port:
        pytest.skip("sieve/timsieved is not built yet")
    args = [PERL, SIEVESHELL, "-a", authname, "-p", USERS[authname],
            "--port", str(server.sieve_port)]
    if user:
        args += ["-u", user]
    args += list(extra) + ["--exec", script, "127.0.0.1"]
    p = subprocess.run(args, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), \
        p.stderr.decode(errors="replace")


def sieve_dir(server, user):
    return server.path("sieve", user[0], user)


def test_sieveshell_script_lifecycle(server, tmp_path):
    good = tmp_path / "vacation.sieve"
    good.write_bytes(GOOD)
    bad = tmp_path / "broken.sieve"
    bad.write_bytes(BAD)
    back = tmp_path / "back"
    rc, out, err = sieveshell(server, "\n".join([
        f"put {good}",
        f"put {good} spare",
        "list",
        "activate vacation",
        "ls",
        f"get vacation {back}",
    ]))
    assert err == "" and rc == 0, err
    assert out.splitlines() == ["spare", "vacation",
                                "spare", "vacation  <- active script"], out
    assert back.read_bytes() == GOOD
    d = sieve_dir(server, "carol")
    assert os.readlink(os.path.join(d, "defaultbc")) == "vacation.bc"

    rc, out, err = sieveshell(server, "\n".join([
        "get spare",
        f"put {bad}",
        "delete vacation",
        "deactivate",
        "rm spare",
        "delete vacation",
        "list",
    ]))
    assert out.replace("\r\n", "\n") == GOOD.decode().replace("\r\n", "\n"), \
        out
    assert re.search(r"^put: .*frobnicate", err, re.M), err
    assert re.search(r"^delete: ", err, re.M), err
    assert rc == 1
    assert not os.path.lexists(os.path.join(d, "defaultbc"))
    assert not os.path.exists(os.path.join(d, "spare.script"))
    assert os.path.exists(os.path.join(d, "vacation.script")) is False
    assert not os.path.exists(os.path.join(d, "broken.script"))


def test_sieveshell_admin_for_user_tls_and_errors(server, tmp_path):
    good = tmp_path / "f.siv"
    good.write_bytes(GOOD)
    rc, out, err = sieveshell(server, f"put {good}; activate f; list",
                              authname="admin", user="dan",
                              extra=["--tls", "--cafile", server.cert])
    assert err == "" and out == "f  <- active script\n", (out, err)
    assert os.path.isfile(os.path.join(sieve_dir(server, "dan"),
                                       "f.script"))
    rc, out, err = sieveshell(server, "list", authname="dan",
                              extra=["--tls", "--cafile", server.other_cert])
    assert rc == 1 and "STARTTLS" in err, err
    rc, out, err = sieveshell(server, "bogus; get nosuch; put /nonexistent")
    assert "unknown command: bogus" in err, err
    assert re.search(r"^get: ", err, re.M), err
    assert "put: /nonexistent:" in err, err
    assert rc == 1


def test_sieveshell_commands_on_stdin(server, tmp_path):
    if not server.sieve_port:
        pytest.skip("sieve/timsieved is not built yet")
    good = tmp_path / "std.sieve"
    good.write_bytes(GOOD)
    p = subprocess.run(
        [PERL, SIEVESHELL, "--authname=carol", "--port",
         str(server.sieve_port), "127.0.0.1"],
        input=f"singer\nput {good}\nlist\n\n# a comment\n"
              "delete std\nquit\nlist\n".encode(),
        capture_output=True, timeout=60)
    assert p.stderr == b"" and p.returncode == 0, p.stderr
    # the password came from the first line; quit ended the session
    assert p.stdout.decode().splitlines() == ["std"], p.stdout


# -- the ManageSieve client against a fake server ---------------------------

class FakeSieve(threading.Thread):
    """Accept one connection, send canned replies, record what came."""

    def __init__(self, replies):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.replies = replies
        self.received = b""

    def _read_command(self, conn):
        """One command, literals ({n+}) included."""
        data, pos = b"", 0
        while True:
            while data.find(b"\r\n", pos) < 0:
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                data += chunk
            end = data.find(b"\r\n", pos) + 2
            m = re.search(rb"\{(\d+)\+?\}\r\n$", data[:end])
            if not m:
                return data[:end]
            pos = end + int(m.group(1))
            while len(data) < pos:
                chunk = conn.recv(pos - len(data))
                if not chunk:
                    return None
                data += chunk

    def run(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.sendall(self.replies[0])
            for reply in self.replies[1:]:
                cmd = self._read_command(conn)
                if cmd is None:
                    return
                self.received += cmd
                conn.sendall(reply)
            cmd = self._read_command(conn)
            if cmd:
                self.received += cmd
        self.listener.close()


def test_managesieve_framing(tmp_path):
    script = b"keep;\r\n# \xc3\xa9t\xc3\xa9 \"quoted\" {3}\r\n"
    local = tmp_path / "s1.script"
    local.write_bytes(script)
    got = tmp_path / "got"
    fake = FakeSieve([
        # greeting: quoted strings, a literal, an unknown capability
        b'"IMPLEMENTATION" "Fake \\"sieve\\""\r\n"SASL" {11}\r\nPLAIN LOGIN'
        b'\r\n"SIEVE" "fileinto"\r\n"X-ODD"\r\nOK\r\n',
        # AUTHENTICATE: OK with a response code
        b'OK (SASL "abc=") "Logged in"\r\n',
        # PUTSCRIPT
        b"OK\r\n",
        # LISTSCRIPTS: a literal name, an active one
        b'"s1" ACTIVE\r\n{8}\r\nweird\r\nx\r\n"plain"\r\nOK\r\n',
        # GETSCRIPT: the script as a literal
        b"{%d}\r\n" % len(script) + script + b"\r\nOK\r\n",
        # PUTSCRIPT refused with a code and a literal reason
        b"NO (QUOTA/MAXSIZE) {15}\r\nline 1\r\ntoo big\r\n",
        # SETACTIVE ""
        b'NO "nothing"\r\n',
        # LOGOUT
        b'BYE "bye"\r\n',
    ])
    fake.start()
    p = subprocess.run(
        [PERL, SIEVESHELL, "--notls", "-a", "ann", "-u", "bob", "-p",
         "pw", "--port", str(fake.port), "-e",
         f"put {local}\nlist\nget s1 {got}\nput {local} big\ndeactivate",
         "127.0.0.1"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    fake.join(10)
    out, err = p.stdout.decode(), p.stderr.decode()
    sent = fake.received
    ir = base64.b64encode(b"bob\0ann\0pw")
    assert sent.startswith(b'AUTHENTICATE "PLAIN" "' + ir + b'"\r\n'), sent
    assert b'PUTSCRIPT "s1" {%d+}\r\n' % len(script) + script + b"\r\n" \
        in sent, sent
    assert b'LISTSCRIPTS\r\nGETSCRIPT "s1"\r\n' in sent, sent
    assert b'PUTSCRIPT "big" {' in sent and b'SETACTIVE ""\r\n' in sent
    assert sent.endswith(b"LOGOUT\r\n"), sent
    assert out.splitlines() == ["s1  <- active script", "weird", "x",
                                "plain"], out
    assert got.read_bytes() == script
    assert "put: (QUOTA/MAXSIZE) line 1\r\ntoo big" in err, err
    assert "deactivate: nothing" in err, err
    assert p.returncode == 1


def test_managesieve_bye_and_garbage():
    fake = FakeSieve([b'"SASL" "PLAIN"\r\nOK\r\n',
                      b'BYE "shutting down"\r\n'])
    fake.start()
    p = subprocess.run(
        [PERL, SIEVESHELL, "-a", "ann", "-p", "pw", "--port",
         str(fake.port), "-e", "list", "127.0.0.1"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    fake.join(10)
    assert p.returncode == 1
    assert "authentication failed: shutting down" in p.stderr.decode()

    fake = FakeSieve([b'"SASL" "PLAIN"\r\n{99999999999}\r\n'])
    fake.start()
    p = subprocess.run(
        [PERL, SIEVESHELL, "-a", "ann", "-p", "pw", "--port",
         str(fake.port), "-e", "list", "127.0.0.1"],
        capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    fake.join(10)
    assert p.returncode == 1
    assert "greeting:" in p.stderr.decode(), p.stderr
