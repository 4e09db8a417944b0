"""Drive Debian's real Cyrus admin shell `cyradm` (package cyrus-admin)
and the `imtest` client (package cyrus-clients) against a running
Columba imapd: the commands an administrator types every day must
work unchanged."""

import os
import re
import shutil
import subprocess

import pytest

from columba import Instance, free_port, program

CYRADM = shutil.which("cyradm")
IMTEST = shutil.which("imtest") or (
    "/usr/lib/cyrus/bin/imtest"
    if os.access("/usr/lib/cyrus/bin/imtest", os.X_OK) else None)

pytestmark = pytest.mark.skipif(
    not shutil.which("saslpasswd2"), reason="needs saslpasswd2 (sasl2-bin)")

SERVERNAME = "columba.test"
USERS = {"admin": "s3cret", "carol": "singer"}


@pytest.fixture(scope="module")
def server():
    port = free_port()
    inst = Instance(services=[("imap", {"cmd": program("imap/imapd"),
                                        "listen": f"127.0.0.1:{port}"})],
                    name="cyradm")
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
        # cyradm users type Cyrus's classic "user.carol" names
        "unixhierarchysep": "no",
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port = port
    yield inst
    inst.stop()
    inst.cleanup()


def cyradm(server, commands, user="admin"):
    """Run cyradm with `commands` (one per line) on stdin; returns
    (stdout, stderr).  HOME points at an empty directory so no rc file
    of the person running the tests is read."""
    if not CYRADM:
        pytest.skip("cyradm (Debian package cyrus-admin) is not installed")
    env = dict(os.environ, HOME=server.basedir, TERM="dumb")
    proc = subprocess.run(
        [CYRADM, "--norc", "--notls", "--user", user, "--auth", "PLAIN",
         "--password", USERS[user], "--port", str(server.port),
         "127.0.0.1"],
        input="\n".join(commands) + "\n", capture_output=True, text=True,
        timeout=60, env=env)
    return proc.stdout, proc.stderr


def test_cyradm_session(server):
    out, err = cyradm(server, [
        "cm user.carol",
        "cm user.carol.Work",
        "sam user.carol anyone lrs",
        "lam user.carol",
        "sq user.carol 20000",
        "lq user.carol",
        "lqr user.carol.Work",
        "lm user.carol*",
        "mboxcfg user.carol comment Hello_from_cyradm",
        "mboxcfg user.carol expire 30",
        "info user.carol",
        "setinfo motd Welcome",
        "info",
        "dam user.carol anyone",
        "lam user.carol",
    ])
    assert "cannot" not in err.lower(), err
    # lam: one "identifier rights" line per entry
    assert re.search(r"^anyone lrs$", out, re.M), out
    assert re.search(r"^carol lrswipkxtecdan?", out, re.M) or \
        re.search(r"^carol \S+", out, re.M), out
    # lq/lqr: "STORAGE used/limit (percent%)"
    assert re.search(r"STORAGE 0/20000 \(0%\)", out), out
    assert re.search(r"^user\.carol STORAGE 0/20000", out, re.M), out
    # lm lists both mailboxes with their attributes
    assert "user.carol (\\HasChildren)" in out, out
    assert "user.carol.Work (\\HasNoChildren)" in out, out
    # info shows the comment and Cyrus's vendor entries
    assert "comment: Hello_from_cyradm" in out, out
    assert "expire: 30" in out, out
    assert "partition: default" in out, out
    assert "{Server Wide}" in out and "motd: Welcome" in out, out
    # after dam, anyone is gone
    tail = out.rsplit("partition: default", 1)[-1]
    assert not re.search(r"^anyone ", tail, re.M), out
    assert "error" not in err.lower(), err


def test_cyradm_quota_removal_and_delete(server):
    out, err = cyradm(server, [
        "cm user.dora",
        "sq user.dora STORAGE 100 MESSAGE 10",
        "sq user.dora MESSAGE 10",
        "lq user.dora",
        "sq user.dora none",
        "lq user.dora",
        "rename user.dora user.dora2",
        "lm user.dora*",
        "reconstruct user.dora2",
        "sam user.dora2 carol lr",
        "cm user.ed",
        "sam user.ed admin x",
        "dm user.ed",
        "sam user.dora2 admin all",
        "dm user.dora2",
        "lm user.d*",
    ])
    assert re.search(r"MESSAGE 0/10 \(0%\)", out), out
    assert "user.dora2 (\\HasNoChildren)" in out, out
    assert "deletemailbox" not in err, err
    # the last lm found nothing left
    assert out.rsplit("lm user.d*", 1)[1].strip() == "127.0.0.1>", out


def test_cyradm_special_use_and_reconstruct(server):
    out, err = cyradm(server, [
        "cm user.hal",
        "cm --specialuse Drafts user.hal.Drafts",
        "lm -specialuse user.hal*",
        "reconstruct user.hal",
        "reconstruct -r user.hal",
    ])
    assert "user.hal.Drafts (\\HasNoChildren \\Drafts)" in out, (out, err)
    assert "user.hal (" not in out.split("lm -specialuse", 1)[1], out
    assert err == "", err


def test_cyradm_errors_are_reported(server):
    out, err = cyradm(server, [
        "cm user.carol.Work",
        "xfer user.carol otherserver",
        "lam user.nosuchuser",
    ])
    assert "createmailbox" in err or "exists" in err.lower(), err
    assert "xfer" in err.lower() or "murder" in err.lower(), err


def test_cyradm_as_user_is_refused_admin_commands(server):
    out, err = cyradm(server, ["sq user.carol 5", "reconstruct INBOX"],
                      user="carol")
    assert "setquota" in err and "NOPERM" in err, err
    assert "reconstruct" in err, err


def test_imtest_login(server):
    if not IMTEST:
        pytest.skip("imtest (Debian package cyrus-clients) is not installed")
    proc = subprocess.run(
        [IMTEST, "-m", "login", "-a", "admin", "-w",
         USERS["admin"], "-p", str(server.port), "127.0.0.1"],
        input="a1 CAPABILITY\r\na2 GETQUOTAROOT user.carol\r\n"
              "a3 LOGOUT\r\n",
        capture_output=True, text=True, timeout=30)
    out = proc.stdout
    assert "Authenticated." in out or "a1 OK" in out, (out, proc.stderr)
    assert "METADATA" in out and "LIST-EXTENDED" in out, out
    assert "a3 OK" in out, out
