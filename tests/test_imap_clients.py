"""Real IMAP clients from Debian against imapd: mutt (batch, under a
pseudo-terminal), mbsync (isync), offlineimap3 and fetchmail each work a
running instance, and must do their job "without a single complaint":
their output carries no error or warning about the server's protocol,
and the server state afterwards, read back with imaplib, is what the
client was asked to make it."""

import email
import glob
import imaplib
import mailbox
import os
import re
import shutil
import signal
import subprocess

import pytest

from columba import Instance, free_port, program

SERVERNAME = "columba.test"

# Words that a client prints when it is unhappy with the server.  The
# clients' normal chatter contains none of them.
COMPLAINT = re.compile(r"error|warning|unexpected|unknown|invalid|"
                       r"protocol (error|violation)|malformed|refused|"
                       r"bogus|fail|\bBAD\b|\bBYE\b|abort|can't|cannot|"
                       r"couldn't|not supported|unsupported|garbage",
                       re.I)


def message(folder, n):
    """A small RFC 5322 message, number `n` of `folder`."""
    body = f"Body of message {n} in {folder}\r\n"
    return (f"From: Sender {n} <sender{n}@example.com>\r\n"
            f"To: rcpt@example.com\r\n"
            f"Subject: {folder} message {n}\r\n"
            f"Date: Fri, 04 Dec 2026 08:{n % 60:02d}:00 +0000\r\n"
            f"Message-ID: <{folder.replace('/', '.')}.{n}@example.com>\r\n"
            f"\r\n" + body).encode()


@pytest.fixture(scope="module")
def server():
    if not shutil.which("saslpasswd2") or not shutil.which("openssl"):
        pytest.skip("needs saslpasswd2 (sasl2-bin) and openssl")
    port, sport = free_port(), free_port()
    inst = Instance(services=[
        ("imap", {"cmd": program("imap/imapd"),
                  "listen": f"127.0.0.1:{port}"}),
        ("imaps", {"cmd": program("imap/imapd") + " -s",
                   "listen": f"127.0.0.1:{sport}"})], name="imap-clients")
    cert = inst.path("server.pem")
    key = inst.path("server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=" + SERVERNAME,
                    "-addext", "subjectAltName=DNS:" + SERVERNAME
                    + ",DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    sasldb = inst.path("sasldb2")
    inst.options.update({
        "servername": SERVERNAME,
        "allowplaintext": "yes",
        "autocreate_quota": "0",
        "failedloginpause": "0",
        "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb",
        "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN LOGIN",
        "tls_server_cert": cert,
        "tls_server_key": key,
    })
    inst.write_imapd_conf()
    inst.start()
    inst.port, inst.sport, inst.cert, inst.sasldb = port, sport, cert, sasldb
    yield inst
    inst.stop()
    inst.cleanup()


def add_user(server, user):
    """A sasldb user whose password is "pw-<user>"."""
    subprocess.run(["saslpasswd2", "-c", "-p", "-f", server.sasldb,
                    "-u", SERVERNAME, user],
                   input=("pw-" + user).encode(), check=True)
    os.chmod(server.sasldb, 0o644)


def imap(server, user):
    """An imaplib connection logged in as `user`."""
    m = imaplib.IMAP4("127.0.0.1", server.port, timeout=30)
    m.login(user, "pw-" + user)
    return m


def fill(server, user, folders, count):
    """Create `folders` (INBOX exists) and append `count` messages to
    each, numbered 1..count."""
    m = imap(server, user)
    for folder in folders:
        if folder != "INBOX":
            typ, data = m.create(folder)
            assert typ == "OK", data
        for n in range(1, count + 1):
            typ, data = m.append(folder, None, None,
                                 message(folder, n))
            assert typ == "OK", data
    m.logout()


def server_state(server, user, folder):
    """{Message-ID: set of flags} of `folder`, read with imaplib."""
    m = imap(server, user)
    typ, data = m.select(imap_quote(folder), readonly=True)
    assert typ == "OK", data
    state = {}
    if int(data[0]) > 0:
        typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS "
                                   "(MESSAGE-ID)])")
        assert typ == "OK", data
        for item in data:
            if not isinstance(item, tuple):
                continue
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1)
            msgid = email.message_from_bytes(item[1])["Message-ID"]
            state[msgid] = set(flags.decode().split())
    m.logout()
    return state


def imap_quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def msgid(folder, n):
    return f"<{folder.replace('/', '.')}.{n}@example.com>"


def run_client(argv, timeout, env):
    """Run a client in its own process group; on timeout kill the whole
    group and fail, so a hung client fails the test instead of hanging
    the suite.  Returns (returncode, combined output)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{argv[0]} hung for {timeout}s; output:\n"
                    + out.decode(errors="replace")[-4000:])
    return proc.returncode, out.decode(errors="replace")


def complaints(output, allow=()):
    """Lines of client output that look like a complaint, minus those
    matching one of the `allow` regexes."""
    bad = []
    for line in output.splitlines():
        if COMPLAINT.search(line) and not any(re.search(a, line)
                                              for a in allow):
            bad.append(line)
    return bad


def client_env(home):
    """The environment of a client whose home is `home`."""
    env = dict(os.environ, HOME=str(home), LC_ALL="C.UTF-8", TERM="dumb")
    env.pop("MAIL", None)
    return env


# -- maildir helpers ---------------------------------------------------------

def maildir_messages(path):
    """{Message-ID: (file path, maildir flag letters)} of a maildir."""
    found = {}
    for sub in ("new", "cur"):
        for f in glob.glob(os.path.join(path, sub, "*")):
            with open(f, "rb") as fh:
                mid = email.message_from_binary_file(fh)["Message-ID"]
            info = os.path.basename(f).split(":2,", 1)
            # offlineimap writes an info part in new/ as well.
            found[mid] = (f, info[1] if len(info) == 2 else "")
    return found


def maildir_deliver(path, data, name):
    """Put a new message into a maildir's new/."""
    tmp = os.path.join(path, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data.replace(b"\r\n", b"\n"))
    os.rename(tmp, os.path.join(path, "new", name))


def maildir_set_flags(file, letters):
    """Rename a maildir message into cur/ with these flag letters."""
    base = os.path.basename(file).split(":2,", 1)[0]
    cur = os.path.join(os.path.dirname(os.path.dirname(file)), "cur")
    new = os.path.join(cur, base + ":2," + "".join(sorted(letters)))
    os.rename(file, new)
    return new


# -- mbsync (isync) ----------------------------------------------------------

MBSYNC_FOLDERS = ["INBOX", "Work", "Lists/Debian", "Lists/Columba",
                  "Archive"]
MBSYNC_COUNT = 60


def mbsync_config(server, home, user, ssl_type="STARTTLS", mech="PLAIN",
                  sync="All"):
    """An mbsyncrc for `user` syncing every folder into ~/Mail."""
    port = server.sport if ssl_type == "IMAPS" else server.port
    maildir = os.path.join(home, "Mail")
    os.makedirs(maildir, exist_ok=True)
    rc = os.path.join(home, "mbsyncrc")
    with open(rc, "w") as f:
        # mbsync matches the certificate against DNS names only.
        f.write(f"IMAPAccount columba\n"
                f"Host localhost\n"
                f"Port {port}\n"
                f"User {user}\n"
                f"Pass pw-{user}\n"
                f"SSLType {ssl_type}\n"
                f"CertificateFile {server.cert}\n"
                f"AuthMechs {mech}\n"
                f"Timeout 60\n"
                f"\n"
                f"IMAPStore remote\n"
                f"Account columba\n"
                f"\n"
                f"MaildirStore local\n"
                f"Path {maildir}/\n"
                f"Inbox {maildir}/INBOX\n"
                f"SubFolders Verbatim\n"
                f"\n"
                f"Channel columba\n"
                f"Far :remote:\n"
                f"Near :local:\n"
                f"Patterns *\n"
                f"Create Both\n"
                f"Expunge Both\n"
                f"SyncState *\n"
                f"Sync {sync}\n"
                f"CopyArrivalDate yes\n")
    return rc, maildir


# A line of mbsync's -Dn protocol trace: a command it sent, or a reply.
MBSYNC_TRACE = re.compile(r"^(\(\d+ in progress\) )?(>>> |\* |\+ |\d+ )")


def run_mbsync(rc, home, *args):
    """One mbsync run with its protocol trace (-Dn): it must succeed,
    say nothing alarming, and get no NO or BAD from the server."""
    code, out = run_client(["mbsync", "-c", rc, "-V", "-Dn", *args,
                            "columba"], timeout=300, env=client_env(home))
    assert code == 0, out[-6000:]
    trace = [l for l in out.splitlines() if MBSYNC_TRACE.match(l)]
    chatter = [l for l in out.splitlines() if not MBSYNC_TRACE.match(l)]
    assert complaints("\n".join(chatter)) == [], out[-6000:]
    refused = [l for l in trace
               if re.match(r"^(\(\d+ in progress\) )?(\d+|\*) (NO|BAD)\b",
                           l)]
    assert refused == [], out[-6000:]
    return out


@pytest.mark.skipif(not shutil.which("mbsync"), reason="needs isync")
def test_mbsync(server, tmp_path):
    """300 messages in 5 folders (2 nested) to a maildir over STARTTLS
    and SASL PLAIN, local changes back with --push, server changes back
    with a full sync, and a final sync with nothing to do."""
    user = "mbsync"
    add_user(server, user)
    fill(server, user, MBSYNC_FOLDERS, MBSYNC_COUNT)
    rc, maildir = mbsync_config(server, str(tmp_path), user)

    # Server to maildir: every folder arrives whole.
    run_mbsync(rc, str(tmp_path))
    for folder in MBSYNC_FOLDERS:
        local = maildir_messages(os.path.join(maildir, folder))
        assert sorted(local) == sorted(msgid(folder, n) for n in
                                       range(1, MBSYNC_COUNT + 1)), folder
        # mbsync adds its own X-TUID header while copying.
        with open(local[msgid(folder, 7)][0], "rb") as f:
            data = re.sub(rb"(?m)^X-TUID: .*\n", b"", f.read())
        assert data == message(folder, 7).replace(b"\r\n", b"\n")

    # Local changes: new mail, flags, one deletion, a new folder.
    work = os.path.join(maildir, "Work")
    local = maildir_messages(work)
    maildir_set_flags(local[msgid("Work", 1)][0], "FS")
    maildir_set_flags(local[msgid("Work", 2)][0], "RS")
    os.unlink(local[msgid("Work", 3)][0])
    maildir_set_flags(local[msgid("Work", 4)][0], "ST")
    for n in (101, 102):
        maildir_deliver(work, message("Work", n), f"local{n}.host")
    newf = os.path.join(maildir, "Lists", "New")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(newf, sub))
    maildir_deliver(newf, message("Lists/New", 1), "localnew.host")

    # Maildir to server.
    run_mbsync(rc, str(tmp_path), "--push")
    state = server_state(server, user, "Work")
    assert state[msgid("Work", 1)] == {"\\Flagged", "\\Seen"}
    assert state[msgid("Work", 2)] == {"\\Answered", "\\Seen"}
    assert msgid("Work", 3) not in state
    # T (trashed) is \Deleted, and Expunge Both removes it.
    assert msgid("Work", 4) not in state
    assert state[msgid("Work", 101)] == set()
    assert state[msgid("Work", 5)] == set()
    assert len(state) == MBSYNC_COUNT - 2 + 2
    assert set(server_state(server, user, "Lists/New")) == \
        {msgid("Lists/New", 1)}

    # Server-side changes come back on a full sync, and a sync with
    # nothing to do is quiet.
    m = imap(server, user)
    m.select("Archive")
    m.store("1:5", "+FLAGS", "(\\Seen)")
    m.store("6", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.append("Archive", None, None, message("Archive", 200))
    m.logout()
    run_mbsync(rc, str(tmp_path))
    local = maildir_messages(os.path.join(maildir, "Archive"))
    assert msgid("Archive", 6) not in local
    assert msgid("Archive", 200) in local
    for n in range(1, 6):
        assert "S" in local[msgid("Archive", n)][1]
    assert len(local) == MBSYNC_COUNT
    local = maildir_messages(work)
    assert local[msgid("Work", 1)][1] == "FS"
    assert msgid("Work", 4) not in local
    run_mbsync(rc, str(tmp_path))


@pytest.mark.skipif(not shutil.which("mbsync"), reason="needs isync")
def test_mbsync_imaps_login(server, tmp_path):
    """Implicit TLS and the LOGIN command; a pull-only channel
    leaves the server untouched while the maildir follows it."""
    user = "mbsync2"
    add_user(server, user)
    fill(server, user, ["INBOX", "Notes"], 25)
    rc, maildir = mbsync_config(server, str(tmp_path), user,
                                ssl_type="IMAPS", mech="LOGIN", sync="Pull")
    out = run_mbsync(rc, str(tmp_path))
    # mbsync's "LOGIN" is the IMAP LOGIN command.
    assert re.search(r"(?m)^>>> \d+ LOGIN ", out)
    for folder in ("INBOX", "Notes"):
        assert len(maildir_messages(os.path.join(maildir, folder))) == 25
    local = maildir_messages(os.path.join(maildir, "Notes"))
    maildir_set_flags(local[msgid("Notes", 1)][0], "S")
    m = imap(server, user)
    m.select("Notes")
    m.store("2", "+FLAGS", "(\\Flagged)")
    m.logout()
    run_mbsync(rc, str(tmp_path))
    state = server_state(server, user, "Notes")
    assert state[msgid("Notes", 1)] == set()
    local = maildir_messages(os.path.join(maildir, "Notes"))
    assert local[msgid("Notes", 2)][1] == "F"


# -- mutt --------------------------------------------------------------------

# NO replies mutt provokes on purpose: it probes a folder with STATUS
# before saving into it, and creates it after COPY says TRYCREATE.
MUTT_EXPECTED_NO = [r"> a\d+ STATUS ", r"NO \[NONEXISTENT\]",
                    r"NO \[TRYCREATE\]"]
# mutt's notes on those probes, on the server's BYE after LOGOUT, and
# on Cyrus's "n" (annotate, RFC 5257) right, which it does not know.
MUTT_BENIGN = [r"imap_access: Can't check STATUS of",
               r"Handling BYE$", r"Unknown right: n$"]


def run_mutt(server, home, user, keys, folder="INBOX", extra=""):
    """One mutt session under a pseudo-terminal (script) that types
    `keys` (mutt's push syntax) into `folder` and quits; `extra` is more
    muttrc.  Returns mutt's debug log, after checking mutt said nothing
    alarming in it."""
    rc = os.path.join(home, "muttrc")
    with open(rc, "w") as f:
        f.write(f'set imap_user = "{user}"\n'
                f'set imap_pass = "pw-{user}"\n'
                f'set folder = "imap://localhost:{server.port}/"\n'
                f'set spoolfile = "+INBOX"\n'
                f'set ssl_starttls = yes\n'
                f'set ssl_force_tls = yes\n'
                f'set certificate_file = "{server.cert}"\n'
                f'set header_cache = ""\n'
                f'set message_cachedir = ""\n'
                # Nothing may stop to ask a question.
                f'set move = no\n'
                f'set delete = yes\n'
                f'set confirmappend = no\n'
                f'set confirmcreate = no\n'
                f'set quit = yes\n'
                f'set wait_key = no\n'
                f'set sleep_time = 0\n'
                f'set mark_old = no\n'
                f'set record = ""\n'
                f'set imap_check_subscribed = no\n'
                f'{extra}'
                f'push "{keys}<sync-mailbox><quit>"\n')
    log = os.path.join(home, ".muttdebug0")
    if os.path.exists(log):
        os.unlink(log)
    env = client_env(home)
    env["TERM"] = "vt100"
    mutt = f"mutt -n -F {rc} -d 2 -f +{folder}"
    code, screen = run_client(["script", "-qec", mutt, "/dev/null"],
                              timeout=60, env=env)
    with open(log, errors="replace") as f:
        debug = f.read()
    assert code == 0, screen[-3000:] + debug[-6000:]
    refused = [l for l in debug.splitlines()
               if re.search(r"< (a\d+|\*) (NO|BAD)\b", l)
               and not any(re.search(a, l) for a in MUTT_EXPECTED_NO)]
    assert refused == [], debug[-6000:]
    chatter = [l for l in debug.splitlines()
               if not re.search(r"\] \d+[<>] ", l)]
    assert complaints("\n".join(chatter), MUTT_BENIGN) == [], \
        debug[-6000:]
    assert "Closing connection" in debug
    return debug


@pytest.mark.skipif(not shutil.which("mutt") or not shutil.which("script"),
                    reason="needs mutt and script (bsdutils)")
def test_mutt(server, tmp_path):
    """Flag, save to a new folder, delete and read in INBOX, then
    in the new folder, through mutt's keys; the server follows."""
    user = "mutt"
    add_user(server, user)
    fill(server, user, ["INBOX"], 10)
    home = str(tmp_path)

    # Flag 1 and 2, save 3 and 4 to a new folder (mutt creates it),
    # delete 5 and 6, read 7; the sync expunges.
    debug = run_mutt(server, home, user,
                     "<tag-pattern>~i INBOX.[12]@<enter>"
                     "<tag-prefix><flag-message>"
                     "<untag-pattern>~T<enter>"
                     "<tag-pattern>~i INBOX.[34]@<enter>"
                     "<tag-prefix><save-message><kill-line>=Archive<enter>"
                     "<untag-pattern>~T<enter>"
                     "<delete-pattern>~i INBOX.[56]@<enter>"
                     "<search>~i INBOX.7@<enter>"
                     "<display-message><exit>")
    assert "10 messages total" in debug or "msgcount is 10" in debug
    inbox = server_state(server, user, "INBOX")
    assert sorted(inbox) == sorted(msgid("INBOX", n)
                                   for n in (1, 2, 7, 8, 9, 10))
    assert inbox[msgid("INBOX", 1)] == {"\\Flagged"}
    assert inbox[msgid("INBOX", 2)] == {"\\Flagged"}
    assert inbox[msgid("INBOX", 7)] == {"\\Seen"}
    assert inbox[msgid("INBOX", 8)] == set()
    archive = server_state(server, user, "Archive")
    assert sorted(archive) == sorted(msgid("INBOX", n) for n in (3, 4))

    # New mail arrives; mutt opens the other folder, reads one message
    # there and deletes the other, and unflags one in INBOX.
    m = imap(server, user)
    m.append("INBOX", None, None, message("INBOX", 11))
    m.logout()
    run_mutt(server, home, user,
             "<search>~i INBOX.3@<enter><display-message><exit>"
             "<delete-pattern>~i INBOX.4@<enter>", folder="Archive")
    archive = server_state(server, user, "Archive")
    assert archive == {msgid("INBOX", 3): {"\\Seen"}}
    run_mutt(server, home, user,
             "<search>~i INBOX.1@<enter><flag-message>"
             "<search>~i INBOX.11@<enter><display-message><exit>")
    inbox = server_state(server, user, "INBOX")
    assert inbox[msgid("INBOX", 1)] == set()
    assert inbox[msgid("INBOX", 2)] == {"\\Flagged"}
    assert inbox[msgid("INBOX", 11)] == {"\\Seen"}
    assert len(inbox) == 7


@pytest.mark.skipif(not shutil.which("mutt") or not shutil.which("script"),
                    reason="needs mutt and script (bsdutils)")
def test_mutt_qresync(server, tmp_path):
    """mutt with a header cache resynchronises through CONDSTORE and
    QRESYNC, idles between commands, and browses the folder list."""
    user = "mutt2"
    add_user(server, user)
    fill(server, user, ["INBOX", "Lists/Debian"], 10)
    home = str(tmp_path)
    os.makedirs(os.path.join(home, "hcache"))
    extra = (f'set header_cache = "{home}/hcache"\n'
             f'set imap_condstore = yes\n'
             f'set imap_qresync = yes\n'
             f'set imap_idle = yes\n')

    debug = run_mutt(server, home, user,
                     "<change-folder>?<exit>"
                     "<search>~i INBOX.5@<enter><flag-message>",
                     extra=extra)
    assert re.search(r"> a\d+ ENABLE .*QRESYNC|ENABLED QRESYNC", debug)
    assert re.search(r'LIST \(.*\) "/" "Lists"', debug)
    assert server_state(server, user, "INBOX")[msgid("INBOX", 5)] == \
        {"\\Flagged"}

    # Another client reads 3 and expunges 4; mutt learns both from its
    # cached state (CHANGEDSINCE, VANISHED) and deletes what is read.
    m = imap(server, user)
    m.select("INBOX")
    m.store("3", "+FLAGS", "(\\Seen)")
    m.store("4", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.logout()
    debug = run_mutt(server, home, user, "<delete-pattern>~R<enter>",
                     extra=extra)
    assert re.search(r"a\d+ UID FETCH \S+ \(FLAGS\) \(CHANGEDSINCE \d+ "
                     r"VANISHED\)", debug)
    assert "< * VANISHED (EARLIER) 4" in debug
    inbox = server_state(server, user, "INBOX")
    assert sorted(inbox) == sorted(msgid("INBOX", n)
                                   for n in (1, 2, 5, 6, 7, 8, 9, 10))
    assert inbox[msgid("INBOX", 5)] == {"\\Flagged"}


# -- fetchmail ---------------------------------------------------------------

# fetchmail's MDA: append the message on stdin to an mbox, From_-quoted.
FETCHMAIL_MDA = """#!/bin/sh
{ echo "From fetchmail@localhost Fri Dec  4 08:00:00 2026"
  sed -e 's/\\r$//' -e 's/^\\(>*From \\)/>\\1/'
  echo
} >> "$1"
"""


# fetchmail's remarks about its own setup and the test certificate.
FETCHMAIL_BENIGN = [r"Running as root is discouraged",
                    r"Unknown Organization",
                    r"Loaded OpenSSL library .* trying to continue"]


def run_fetchmail(server, home, user, folders, keep, mbox, fetchall=False):
    """One verbose fetchmail run over IMAP with STARTTLS and a checked
    certificate, delivering to `mbox`.  Returns (exit code, output)."""
    mda = os.path.join(home, "mda")
    with open(mda, "w") as f:
        f.write(FETCHMAIL_MDA)
    os.chmod(mda, 0o755)
    rc = os.path.join(home, "fetchmailrc")
    with open(rc, "w") as f:
        f.write("set no syslog\n"
                f"poll localhost service {server.port} protocol imap"
                " auth password\n"
                f'  user "{user}" there with password "pw-{user}"\n'
                f"  folder {','.join(folders)}\n"
                f"  {'keep' if keep else 'nokeep'}"
                f"{' fetchall' if fetchall else ''}\n"
                f"  sslproto 'TLS1.2+' sslcertck sslcertfile {server.cert}"
                f" sslcommonname {SERVERNAME}\n"
                f'  mda "{mda} {mbox}"\n')
    os.chmod(rc, 0o600)
    return run_client(["fetchmail", "-f", rc, "-N", "--nosyslog", "-v",
                       "-v", "-i", os.path.join(home, "fetchids")],
                      timeout=120, env=client_env(home))


def check_fetchmail_output(out):
    """No NO/BAD from the server and no complaint from fetchmail; its
    trace lines are "fetchmail: IMAP> ..." and "fetchmail: IMAP< ..."."""
    refused = [l for l in out.splitlines()
               if re.search(r"IMAP< (A\d+|\*) (NO|BAD)\b", l)]
    assert refused == [], out[-6000:]
    chatter = [l for l in out.splitlines() if not re.search(r"IMAP[<>] ", l)]
    assert complaints("\n".join(chatter), FETCHMAIL_BENIGN) == [], \
        out[-6000:]


def mbox_ids(path):
    if not os.path.exists(path):
        return []
    return [msg["Message-ID"] for msg in mailbox.mbox(path)]


@pytest.mark.skipif(not shutil.which("fetchmail"), reason="needs fetchmail")
def test_fetchmail(server, tmp_path):
    """fetchmail over IMAP (STARTTLS, LOGIN, checked certificate) from
    two folders into an mbox: keep marks \\Seen, nokeep deletes."""
    user = "fetchmail"
    add_user(server, user)
    fill(server, user, ["INBOX", "Lists"], 8)
    home = str(tmp_path)
    mbox = os.path.join(home, "mbox")

    # keep: everything arrives, stays on the server and becomes \Seen.
    code, out = run_fetchmail(server, home, user, ["INBOX", "Lists"], True,
                              mbox)
    assert code == 0, out[-6000:]
    check_fetchmail_output(out)
    expected = [msgid(f, n) for f in ("INBOX", "Lists") for n in range(1, 9)]
    assert sorted(mbox_ids(mbox)) == sorted(expected)
    for msg in mailbox.mbox(mbox):
        if msg["Message-ID"] == msgid("Lists", 5):
            assert msg.get_payload() == "Body of message 5 in Lists\n"
    for folder in ("INBOX", "Lists"):
        state = server_state(server, user, folder)
        assert len(state) == 8
        assert all(flags == {"\\Seen"} for flags in state.values())

    # Nothing unseen: a second run finds no mail (exit code 1).
    code, out = run_fetchmail(server, home, user, ["INBOX", "Lists"], True,
                              mbox)
    assert code == 1, out[-6000:]
    check_fetchmail_output(out)
    assert len(mbox_ids(mbox)) == 16

    # New mail, then nokeep: only the new message is fetched, and with
    # fetchall a run empties the server.
    m = imap(server, user)
    m.append("INBOX", None, None, message("INBOX", 9))
    m.logout()
    code, out = run_fetchmail(server, home, user, ["INBOX"], False, mbox)
    assert code == 0, out[-6000:]
    check_fetchmail_output(out)
    assert mbox_ids(mbox)[-1] == msgid("INBOX", 9)
    assert len(server_state(server, user, "INBOX")) == 8
    os.unlink(mbox)
    code, out = run_fetchmail(server, home, user, ["INBOX", "Lists"], False,
                              mbox, fetchall=True)
    assert code == 0, out[-6000:]
    check_fetchmail_output(out)
    assert sorted(mbox_ids(mbox)) == sorted(expected)
    assert server_state(server, user, "INBOX") == {}
    assert server_state(server, user, "Lists") == {}


# -- offlineimap3 ------------------------------------------------------------

OFFLINEIMAP_FOLDERS = ["INBOX", "Work", "Lists/Debian"]
OFFLINEIMAP_COUNT = 20


def run_offlineimap(server, home, user):
    """One offlineimap run (-o) with its IMAP trace (-d imap) over
    implicit TLS checked against the test certificate, "/" as the
    maildir folder separator.  It must succeed, get no NO or BAD from the
    server and say nothing alarming outside imaplib2's trace.

    TLS 1.2, because imaplib2 reads and writes one SSL object from two
    threads at once: a TLS 1.3 NewSessionTicket that arrives while its
    first command goes out now and then hangs it or fails with "[SSL]
    internal error" (about 1 run in 40 here).  Its STARTTLS path can
    neither check the certificate nor pick the version."""
    maildir = os.path.join(home, "Mail")
    rc = os.path.join(home, "offlineimaprc")
    with open(rc, "w") as f:
        f.write(f"[general]\n"
                f"accounts = columba\n"
                f"metadata = {home}/meta\n"
                f"ui = basic\n"
                f"\n[Account columba]\n"
                f"localrepository = local\n"
                f"remoterepository = remote\n"
                f"\n[Repository local]\n"
                f"type = Maildir\n"
                f"localfolders = {maildir}\n"
                f"sep = /\n"
                f"\n[Repository remote]\n"
                f"type = IMAP\n"
                f"remotehost = localhost\n"
                f"remoteport = {server.sport}\n"
                f"remoteuser = {user}\n"
                f"remotepass = pw-{user}\n"
                f"ssl = yes\n"
                f"ssl_version = tls1_2\n"
                f"sslcacertfile = {server.cert}\n")
    code, out = run_client(["offlineimap", "-c", rc, "-o", "-d", "imap"],
                           timeout=300, env=client_env(home))
    assert code == 0, out[-6000:]
    refused = [l for l in out.splitlines()
               if re.search(r"reader < b'(\w+|\*) (NO|BAD)\b", l)]
    assert refused == [], "\n".join(refused) + out[-6000:]
    chatter = [l for l in out.splitlines()
               if not re.match(r"\[imap\]:\s+\d\d:\d\d\.\d\d ", l)]
    assert complaints("\n".join(chatter)) == [], out[-6000:]
    return maildir, out


@pytest.mark.skipif(not shutil.which("offlineimap"),
                    reason="needs offlineimap3")
def test_offlineimap(server, tmp_path):
    """offlineimap server to maildir, maildir changes (flags, new
    mail, a deletion, a new folder) back, server changes forth."""
    user = "offlineimap"
    add_user(server, user)
    fill(server, user, OFFLINEIMAP_FOLDERS, OFFLINEIMAP_COUNT)
    home = str(tmp_path)

    # Server to maildir.
    maildir, _ = run_offlineimap(server, home, user)
    for folder in OFFLINEIMAP_FOLDERS:
        local = maildir_messages(os.path.join(maildir, folder))
        assert sorted(local) == sorted(
            msgid(folder, n) for n in range(1, OFFLINEIMAP_COUNT + 1))
        with open(local[msgid(folder, 3)][0], "rb") as f:
            assert f.read().replace(b"\r\n", b"\n") == \
                message(folder, 3).replace(b"\r\n", b"\n")

    # Local changes go back: new mail, flags, a deletion, a new folder.
    work = os.path.join(maildir, "Work")
    local = maildir_messages(work)
    maildir_set_flags(local[msgid("Work", 1)][0], "FS")
    maildir_set_flags(local[msgid("Work", 2)][0], "RS")
    os.unlink(local[msgid("Work", 3)][0])
    maildir_deliver(work, message("Work", 101), "local101.host")
    archive = os.path.join(maildir, "Archive")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(archive, sub))
    maildir_deliver(archive, message("Archive", 1), "localarch.host")
    run_offlineimap(server, home, user)
    state = server_state(server, user, "Work")
    assert state[msgid("Work", 1)] == {"\\Flagged", "\\Seen"}
    assert state[msgid("Work", 2)] == {"\\Answered", "\\Seen"}
    assert msgid("Work", 3) not in state
    assert state[msgid("Work", 101)] == set()
    assert len(state) == OFFLINEIMAP_COUNT
    assert set(server_state(server, user, "Archive")) == \
        {msgid("Archive", 1)}

    # Server changes come back.
    m = imap(server, user)
    m.select("INBOX")
    m.store("3", "+FLAGS", "(\\Flagged)")
    m.store("4", "+FLAGS", "(\\Deleted)")
    m.expunge()
    m.append("INBOX", None, None, message("INBOX", 21))
    m.logout()
    run_offlineimap(server, home, user)
    local = maildir_messages(os.path.join(maildir, "INBOX"))
    assert "F" in local[msgid("INBOX", 3)][1]
    assert msgid("INBOX", 4) not in local
    assert msgid("INBOX", 21) in local
    assert len(local) == OFFLINEIMAP_COUNT

    # A run with nothing to do changes nothing.
    run_offlineimap(server, home, user)
    assert len(server_state(server, user, "INBOX")) == OFFLINEIMAP_COUNT
    assert len(maildir_messages(work)) == OFFLINEIMAP_COUNT


def test_server_log_quiet(server):
    """After all the clients above, the server logged no failure."""
    bad = [l for l in server.log().splitlines()
           if re.search(r"error|fail|crash|signal|abort|assert|panic|"
                        r"corrupt|unknown command|bad command", l, re.I)]
    assert bad == []
