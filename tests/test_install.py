"""`make install` end to end: the build tree is installed into a
temporary DESTDIR, the installed files are checked against the build's
program list, the sample imapd.conf/cyrus.conf against the quick start,
the systemd unit is verified, and (as root) the installed master is
started with configuration made from the installed samples: a message
delivered with the installed deliver is read back over IMAPS, IMAP
with STARTTLS and POP3S, the services run as cyrus_user, installed
admin tools work, and SIGTERM stops everything.  `make uninstall`
must leave no file behind.

A DESTDIR copy keeps the paths compiled in for the final prefix
(relative cmd= words resolve in $libexecdir, tools are named with
$sbindir in cyrus.conf), so the configuration made here names the staged
programs by absolute path; everything else runs as it would installed.
"""

import imaplib
import os
import poplib
import pwd
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import tempfile

import pytest

from columba import (build_dir, free_port, proc_children, pid_alive,
                     src_dir, wait_until, LineClient)

SERVERNAME = "columba.test"
USERS = {"alice": "looking-glass", "cyrusadmin": "adm1n-pw"}
TCP_SERVICES = ("imap", "imaps", "pop3", "pop3s", "sieve")


def make(*args, destdir):
    """Run make in the build tree; returns the CompletedProcess."""
    return subprocess.run(["make", "-s", "-C", build_dir(),
                           f"DESTDIR={destdir}"] + list(args),
                          capture_output=True, text=True, timeout=900)


def make_value_lines(target):
    """The lines `make target` prints.  Lines of make itself (it may
    regenerate the Makefile first) are left out."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C",
                          build_dir(), target],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines()
            if line and " " not in line and not line.startswith("make")]


def files_under(root):
    found = []
    for base, _, names in os.walk(root):
        found += [os.path.join(base, n) for n in names]
    return sorted(found)


class Install:
    """One DESTDIR installation and the directories it was made for."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="columba-install-")
        os.chmod(self.tmp, 0o755)
        self.destdir = os.path.join(self.tmp, "root")
        try:
            self.dirs = dict(line.split("=", 1)
                             for line in make_value_lines("install-dirs"))
            res = make("install", destdir=self.destdir)
            assert res.returncode == 0, res.stdout + res.stderr
        except BaseException:
            self.cleanup()
            raise

    def staged(self, path):
        """Where an installed path is inside DESTDIR."""
        return self.destdir + path

    def staged_dir(self, name):
        return self.staged(self.dirs[name])

    def program(self, name):
        for d in ("libexecdir", "sbindir", "bindir"):
            path = os.path.join(self.staged_dir(d), name)
            if os.access(path, os.X_OK):
                return path
        raise FileNotFoundError(name)

    def cleanup(self):
        if not os.environ.get("COLUMBA_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def installed():
    inst = Install()
    yield inst
    inst.cleanup()


# -- parsing the sample files and the quick start -----------------------------

def parse_imapd_conf(text):
    """{option: value} of an imapd.conf text."""
    opts = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = line.split(":", 1)
        opts[key.strip()] = value.strip()
    return opts


def parse_cyrus_conf(text):
    """[(section, name, {key: value})] of a cyrus.conf text."""
    entries = []
    section = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z]+)\s*\{$", line)
        if m:
            section = m.group(1).upper()
            continue
        if line == "}":
            section = None
            continue
        assert section, f"entry outside a section: {line}"
        words = shlex.split(line)
        entries.append((section, words[0],
                        dict(w.split("=", 1) for w in words[1:])))
    return entries


def format_cyrus_conf(entries):
    out = []
    for section in ("START", "SERVICES", "EVENTS", "DAEMON"):
        out.append(section + " {")
        for sec, name, keys in entries:
            if sec == section:
                words = " ".join(f'{k}="{v}"' for k, v in keys.items())
                out.append(f"    {name} {words}")
        out.append("}")
    return "\n".join(out) + "\n"


def literal_block(text, intro):
    """The indented literal block that follows the paragraph ending in
    `intro` (which ends with '::') in a reStructuredText text."""
    at = text.index(intro) + len(intro)
    lines = text[at:].split("\n")[1:]
    block = []
    for line in lines:
        if line and not line.startswith(" "):
            break
        block.append(line[4:])
    return "\n".join(block).strip("\n")


def quickstart():
    with open(os.path.join(src_dir(), "docsrc", "quickstart.rst")) as f:
        return f.read()


def read(path):
    with open(path) as f:
        return f.read()


def subst(text, **dirs):
    for key, value in dirs.items():
        text = text.replace(f"@{key}@", value)
    return text


# -- layout, samples, unit ----------------------------------------------------

def test_every_program_is_installed(installed):
    dirs = {"libexec": "libexecdir", "sbin": "sbindir", "bin": "bindir"}
    programs = make_value_lines("doc-programs")
    assert "master/master" in programs and "perl/cyradm" in programs
    kinds = {}
    for var, dirname in dirs.items():
        out = subprocess.run(["make", "-s", "-C", build_dir(),
                              "-f", "Makefile", "-f", "-", "print-list"],
                             input=f"print-list:\n\t@echo $({var}_PROGRAMS)"
                                   f" $({var}_SCRIPTS)\n",
                             capture_output=True, text=True, check=True)
        for p in out.stdout.split():
            kinds[p] = dirname
    for p in programs:
        path = os.path.join(installed.staged_dir(kinds[p]),
                            os.path.basename(p))
        assert os.access(path, os.X_OK), f"{p} not installed as {path}"
    # Scripts get the system perl, not whatever perl is first on PATH.
    for script in ("cyradm", "sieveshell"):
        with open(installed.program(script)) as f:
            assert f.readline().startswith("#!/usr/bin/perl")


def test_man_pages_installed(installed):
    man = installed.staged_dir("mandir")
    if not os.path.isdir(man):
        pytest.skip("no man pages: configure did not find sphinx-build")
    pages = {os.path.basename(p).rsplit(".", 1)[0] for p in files_under(man)}
    for p in make_value_lines("doc-programs"):
        assert os.path.basename(p) in pages, f"no man page for {p}"
    assert {"imapd.conf", "cyrus.conf"} <= pages


def test_samples_installed(installed):
    examples = installed.staged_dir("examplesdir")
    assert sorted(os.listdir(examples)) == ["cyrus.conf", "imapd.conf"]
    cyrus_conf = read(os.path.join(examples, "cyrus.conf"))
    assert "@" not in re.sub(r"#.*", "", cyrus_conf)
    recover = [e for e in parse_cyrus_conf(cyrus_conf) if e[0] == "START"]
    assert recover[0][2]["cmd"] == \
        installed.dirs["sbindir"] + "/ctl_cyrusdb -r"


def test_binaries_resolve_services_in_installed_libexec(installed):
    """A relative cmd= resolves in the libexec directory of the install,
    and the default imapd.conf is the one in sysconfdir."""
    with open(installed.program("master"), "rb") as f:
        binary = f.read()
    assert installed.dirs["libexecdir"].encode() + b"\0" in binary
    assert (installed.dirs["sysconfdir"] + "/cyrus.conf").encode() in binary


def test_samples_agree_with_quickstart():
    """The quick start shows the sample files (maybe shorter): every
    option and every cyrus.conf entry it shows is in the sample, with
    the same value, for the prefix /usr/local it installs into."""
    text = quickstart()
    examples = os.path.join(src_dir(), "tools", "examples")

    shown = parse_imapd_conf(literal_block(
        text, "with comments and a few defaults spelt out: start from a "
              "copy)::"))
    sample = parse_imapd_conf(read(os.path.join(examples, "imapd.conf")))
    assert len(shown) >= 10
    for key, value in shown.items():
        assert sample.get(key) == value, f"{key}: quick start says {value}"

    shown = parse_cyrus_conf(literal_block(
        text, "``/usr/local/share/doc/columba/examples/cyrus.conf`` "
              "again)::"))
    sample = parse_cyrus_conf(subst(
        read(os.path.join(examples, "cyrus.conf.in")),
        sbindir="/usr/local/sbin", libexecdir="/usr/local/libexec"))
    assert shown == sample
    services = {name for sec, name, _ in sample if sec == "SERVICES"}
    assert services == set(TCP_SERVICES) | {"lmtpunix"}
    lmtp = [keys for _, name, keys in sample if name == "lmtpunix"][0]
    imapd_conf = parse_imapd_conf(read(os.path.join(examples, "imapd.conf")))
    assert lmtp["listen"] == imapd_conf["lmtpsocket"]


def parse_unit(text):
    """{section: [(key, value)]} of a systemd unit text."""
    unit = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            unit.setdefault(section, [])
            continue
        key, value = line.split("=", 1)
        unit[section].append((key.strip(), value.strip()))
    return unit


def test_unit_agrees_with_quickstart():
    template = read(os.path.join(src_dir(), "tools", "systemd",
                                 "columba.service.in"))
    unit = parse_unit(subst(template, libexecdir="/usr/local/libexec",
                            sysconfdir="/etc"))
    shown = parse_unit(literal_block(quickstart(),
                                     "in place.  Its main\nlines::"))
    assert set(shown) == {"Unit", "Service", "Install"}
    for section, pairs in shown.items():
        for pair in pairs:
            assert pair in unit[section], f"[{section}] {pair}"


def test_systemd_unit(installed):
    """The unit names the installed master with both configuration
    files, keeps it in the foreground, and systemd accepts it."""
    unitdir = installed.dirs["systemdsystemunitdir"]
    built = os.path.join(build_dir(), "tools", "systemd", "columba.service")
    if unitdir:
        path = os.path.join(installed.staged(unitdir), "columba.service")
        assert read(path) == read(built)
    else:
        assert not [p for p in files_under(installed.destdir)
                    if p.endswith(".service")]
        path = built
    text = read(path)
    unit = parse_unit(text)
    service = dict(unit["Service"])
    argv = shlex.split(service["ExecStart"])
    sysconf = installed.dirs["sysconfdir"]
    assert argv == [installed.dirs["libexecdir"] + "/master", "-D",
                    "-C", sysconf + "/imapd.conf",
                    "-M", sysconf + "/cyrus.conf"]
    assert service.get("Type", "simple") == "simple"
    assert "$MAINPID" in service["ExecReload"]
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"
    assert "@" not in re.sub(r"#.*", "", text)

    analyze = shutil.which("systemd-analyze")
    if not analyze:
        return
    # systemd-analyze checks that ExecStart is executable: point it at
    # the staged copy of master.
    staged = os.path.join(installed.tmp, "columba.service")
    with open(staged, "w") as f:
        f.write(text.replace(installed.dirs["libexecdir"] + "/master",
                             installed.program("master")))
    res = subprocess.run([analyze, "verify", staged], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    mine = [l for l in res.stderr.splitlines() if "columba.service" in l]
    assert not mine, res.stderr


def test_uninstall_removes_everything(tmp_path):
    destdir = str(tmp_path / "root")
    res = make("install", destdir=destdir)
    assert res.returncode == 0, res.stderr
    assert len(files_under(destdir)) > 20
    res = make("uninstall", destdir=destdir)
    assert res.returncode == 0, res.stderr
    assert files_under(destdir) == []


# -- the installed server, as root ------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="starting the installed master as root with cyrus_user needs "
           "root")
needs_tools = pytest.mark.skipif(
    not shutil.which("saslpasswd2") or not shutil.which("openssl"),
    reason="needs saslpasswd2 (sasl2-bin) and openssl")

MESSAGE = (b"From: Bob <bob@example.org>\r\n"
           b"To: alice@columba.test\r\n"
           b"Subject: installed and working\r\n"
           b"Message-ID: <install-1@example.org>\r\n"
           b"\r\n"
           b"Delivered by the installed deliver.\r\n")


class Server:
    """The installed master running configuration made from the
    installed samples, every path inside the test's directory.

    By default cmd= words are rewritten to the staged programs.  With
    `in_place`, the staged prefix is bind-mounted over the real one in
    a private mount namespace of the master, so the configuration files
    sit in the staged $sysconfdir and cyrus.conf keeps its cmd= words
    exactly as installed."""

    def __init__(self, installed, name="srv", in_place=False):
        self.inst = installed
        self.in_place = in_place
        self.base = os.path.join(installed.tmp, name)
        self.user = os.environ.get("COLUMBA_TEST_USER", "nobody")
        self.pw = pwd.getpwnam(self.user)
        self.proc = None
        base = self.base
        self.confdir = os.path.join(base, "lib")
        self.socket = os.path.join(base, "lib", "socket", "lmtp")
        for d in ("lib", "lib/sieve", "lib/socket", "spool", "run", "tls"):
            os.makedirs(os.path.join(base, d))
        confdir = base
        if in_place:
            confdir = installed.staged_dir("sysconfdir")
            os.makedirs(confdir, exist_ok=True)
        self.imapd_conf = os.path.join(confdir, "imapd.conf")
        self.cyrus_conf = os.path.join(confdir, "cyrus.conf")
        self.ready_file = os.path.join(base, "run", "master.ready")
        self.pid_file = os.path.join(base, "run", "master.pid")
        self.logfile = os.path.join(base, "master.log")
        self.ports = {name: free_port() for name in TCP_SERVICES}
        self.write_tls()
        self.write_sasldb()
        self.write_imapd_conf()
        self.write_cyrus_conf()
        for root, dirs, files in os.walk(base):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.lchown(n, self.pw.pw_uid, self.pw.pw_gid)

    def write_tls(self):
        self.cert = os.path.join(self.base, "tls", "server.pem")
        self.key = os.path.join(self.base, "tls", "server.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-days", "2", "-subj", "/CN=" + SERVERNAME,
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        os.chmod(self.key, 0o600)

    def write_sasldb(self):
        self.sasldb = os.path.join(self.base, "lib", "sasldb2")
        for user, password in USERS.items():
            subprocess.run(["saslpasswd2", "-c", "-p", "-f", self.sasldb,
                            "-u", SERVERNAME, user],
                           input=password.encode(), check=True)
        os.chmod(self.sasldb, 0o600)

    def write_imapd_conf(self):
        """The installed sample, its paths moved into the test
        directory; everything else as shipped."""
        examples = self.inst.staged_dir("examplesdir")
        text = read(os.path.join(examples, "imapd.conf"))
        replace = {
            "configdirectory": self.confdir,
            "partition-default": os.path.join(self.base, "spool"),
            "sievedir": os.path.join(self.base, "lib", "sieve"),
            "lmtpsocket": self.socket,
            "servername": SERVERNAME,
            "cyrus_user": self.user,
            "sasl_sasldb_path": self.sasldb,
            "tls_server_cert": self.cert,
            "tls_server_key": self.key,
        }
        out = []
        for line in text.splitlines():
            key = line.split(":", 1)[0].strip()
            if not line.startswith("#") and key in replace:
                line = f"{key}: {replace.pop(key)}"
            out.append(line)
        assert not replace, f"sample imapd.conf lacks {sorted(replace)}"
        out += [f"master_ready_file: {self.ready_file}",
                f"master_pid_file: {self.pid_file}"]
        with open(self.imapd_conf, "w") as f:
            f.write("\n".join(out) + "\n")

    def staged_cmd(self, cmd):
        """cmd= with its program moved into DESTDIR."""
        words = shlex.split(cmd)
        if words[0].startswith("/"):
            words[0] = self.inst.staged(words[0])
        else:
            words[0] = os.path.join(self.inst.staged_dir("libexecdir"),
                                    words[0])
        assert os.access(words[0], os.X_OK), words[0]
        return " ".join(words)

    def write_cyrus_conf(self):
        """The installed sample with staged programs and loopback
        listeners; the same entries and options otherwise."""
        examples = self.inst.staged_dir("examplesdir")
        entries = parse_cyrus_conf(read(os.path.join(examples,
                                                     "cyrus.conf")))
        for section, name, keys in entries:
            if not self.in_place:
                keys["cmd"] = self.staged_cmd(keys["cmd"])
            if section != "SERVICES":
                continue
            if keys["listen"].startswith("/"):
                keys["listen"] = self.socket
            else:
                keys["listen"] = f"127.0.0.1:{self.ports[name]}"
        with open(self.cyrus_conf, "w") as f:
            f.write(format_cyrus_conf(entries))

    def log(self):
        try:
            return read(self.logfile)
        except FileNotFoundError:
            return ""

    def start(self, argv=None):
        """Start the staged master, or run `argv` (in place: in its own
        mount namespace with the staged prefix over the real one)."""
        if argv is None:
            argv = [self.inst.program("master"), "-D", "-C",
                    self.imapd_conf, "-M", self.cyrus_conf]
        if self.in_place:
            prefix = self.inst.dirs["prefix"]
            argv = ["unshare", "--mount", "--propagation", "private",
                    "/bin/sh", "-c",
                    'mount --bind "$1" "$2" || exit 71; shift 2; '
                    'exec "$@"', "sh", self.inst.staged(prefix),
                    prefix] + list(argv)
        self.proc = subprocess.Popen(
            argv + ["-L", self.logfile],
            cwd=self.base, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"master exited {self.proc.returncode}: "
                                   + self.proc.stderr.read().decode()
                                   + self.log()[-4000:])
            return os.path.exists(self.ready_file)
        wait_until(ready, 20, what="master_ready_file")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def server(installed):
    """Only for tests marked needs_root and needs_tools."""
    srv = Server(installed)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def tls_context():
    ctx = ssl.create_default_context(cafile=None)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def create_inbox(port, user):
    """As the quick start does (cyradm cm user/alice): the sample does
    not create INBOXes on delivery, so the administrator makes one."""
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=tls_context(),
                          timeout=15)
    m.login("cyrusadmin", USERS["cyrusadmin"])
    typ, data = m.create(f"user/{user}")
    assert typ == "OK", data
    m.logout()


@needs_root
@needs_tools
def test_installed_server_delivers_and_serves(server):
    inst = server.inst

    # Delivery with the installed deliver, over the sample's LMTP socket,
    # refused until the administrator has created the INBOX.
    res = subprocess.run([inst.program("deliver"), "-C", server.imapd_conf,
                          "alice"], input=MESSAGE, capture_output=True,
                         timeout=30)
    assert res.returncode != 0
    create_inbox(server.ports["imaps"], "alice")
    res = subprocess.run([inst.program("deliver"), "-C", server.imapd_conf,
                          "-f", "bob@example.org", "alice"],
                         input=MESSAGE, capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr.decode() + server.log()[-3000:]

    # IMAP with TLS from the start (imaps).
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"],
                          ssl_context=tls_context(), timeout=15)
    m.login("alice", USERS["alice"])
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1].endswith(MESSAGE)
    assert data[0][1].startswith(b"Return-Path: <bob@example.org>\r\n")
    m.logout()

    # Plain IMAP: allowplaintext is off in the sample, so no password
    # before STARTTLS; after it, the same mailbox.
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=15)
    assert "LOGINDISABLED" in m.capabilities
    m.starttls(ssl_context=tls_context())
    m.login("alice", USERS["alice"])
    assert m.select("INBOX", readonly=True)[0] == "OK"
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"installed and working" in data[0][1]
    m.logout()

    # POP3 over TLS.
    p = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"],
                        context=tls_context(), timeout=15)
    p.user("alice")
    p.pass_(USERS["alice"])
    assert p.stat()[0] == 1
    _, lines, _ = p.retr(1)
    assert b"Subject: installed and working" in lines
    p.quit()

    # ManageSieve answers with its capabilities.
    with LineClient(("127.0.0.1", server.ports["sieve"]), 10) as c:
        greeting = []
        while True:
            line = c.readline()
            greeting.append(line)
            if line.startswith("OK"):
                break
        assert any(l.startswith('"IMPLEMENTATION"') for l in greeting)


def proc_ids(pid):
    """{"Uid": [...], "Gid": [...], "Groups": [...]} of a process."""
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                ids[key] = [int(x) for x in value.split()]
    return ids


@needs_root
@needs_tools
def test_installed_services_run_as_cyrus_user(server):
    assert os.stat(f"/proc/{server.proc.pid}").st_uid == 0
    libexec = server.inst.staged_dir("libexecdir")

    def preforked():
        kids = proc_children(server.proc.pid)
        names = {os.path.basename(k["argv"][0]) for k in kids}
        return kids if {"imapd", "lmtpd"} <= names else None
    kids = wait_until(preforked, 10, what="preforked imapd and lmtpd")
    names = set()
    for k in kids:
        ids = proc_ids(k["pid"])
        # real, effective, saved and file-system ids all dropped, and no
        # supplementary group of root's left
        assert set(ids["Uid"]) == {server.pw.pw_uid}, (k, ids)
        assert set(ids["Gid"]) == {server.pw.pw_gid}, (k, ids)
        assert 0 not in ids["Groups"], (k, ids)
        if k["argv"][0].startswith(libexec):
            names.add(os.path.basename(k["argv"][0]))
    assert {"imapd", "lmtpd"} <= names


@needs_root
@needs_tools
def test_installed_admin_tools(server):
    inst = server.inst
    conf = ["-C", server.imapd_conf]

    res = subprocess.run([inst.program("cyr_info")] + conf + ["conf-lint"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([inst.program("cyr_info")] + conf + ["conf"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0
    assert f"servername: {SERVERNAME}" in res.stdout
    res = subprocess.run([inst.program("quota")] + conf, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([inst.program("mbpath")] + conf + ["user/alice"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith(os.path.join(server.base, "spool"))

    # The installed cyradm, over imaps, as the administrator.
    if subprocess.run(["/usr/bin/perl", "-MMail::IMAPClient", "-e", "1"],
                      capture_output=True).returncode != 0:
        return
    res = subprocess.run(
        [inst.program("cyradm"), "--norc", "--ssl", "--port",
         str(server.ports["imaps"]), "--user", "cyrusadmin", "--password",
         USERS["cyrusadmin"], "127.0.0.1"],
        input="lm\n", capture_output=True, text=True, timeout=60,
        env=dict(os.environ, HOME=server.base, TERM="dumb"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "user/alice" in res.stdout


@needs_root
@needs_tools
def test_installed_master_stops_cleanly(server):
    """Last: SIGTERM stops the master and its children; exit status 0,
    pid and ready files removed."""
    kids = [k["pid"] for k in proc_children(server.proc.pid)]
    assert kids
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0, server.log()[-3000:]
    assert not os.path.exists(server.ready_file)
    assert not os.path.exists(server.pid_file)
    wait_until(lambda: not any(pid_alive(k) for k in kids), 10,
               what="service children to exit")
    log = server.log()
    assert "master ready" in log and "master exited" in log
    # Nothing failed along the way: START, the checkpoint event run at
    # start-up, and every service child.
    assert "process exited event=checkpoint" in log
    assert not re.search(r"exec failed|killed by signal|exited with error|"
                         r"command failed", log), log[-3000:]


def in_place_problem(installed):
    """Why the installed tree cannot be run in place here, or None."""
    dirs = installed.dirs
    prefix = dirs["prefix"]
    if prefix in ("/", "/usr") or not os.path.isdir(prefix):
        return f"prefix {prefix} is a system directory or does not exist"
    for d in ("libexecdir", "sbindir", "sysconfdir"):
        if not dirs[d].startswith(prefix + "/"):
            return f"{d} {dirs[d]} is outside the prefix {prefix}"
    if not shutil.which("unshare"):
        return "no unshare (util-linux)"
    res = subprocess.run(["unshare", "--mount", "--propagation", "private",
                          "true"], capture_output=True)
    if res.returncode != 0:
        return "no private mount namespace allowed here"
    return None


@needs_root
@needs_tools
def test_unit_command_runs_installed_tree_in_place(installed):
    """The unit's own ExecStart, the installed samples with only paths
    and ports changed, and the programs where the install put them: the
    staged prefix is mounted over the real one for the master alone, so
    relative cmd= words and the $sbindir tools resolve as installed."""
    why = in_place_problem(installed)
    if why:
        pytest.skip(why)
    unit = parse_unit(read(os.path.join(build_dir(), "tools", "systemd",
                                        "columba.service")))
    argv = shlex.split(dict(unit["Service"])["ExecStart"])
    srv = Server(installed, "inplace", in_place=True)
    try:
        srv.start(argv)
        conf = parse_cyrus_conf(read(srv.cyrus_conf))
        assert ("SERVICES", "imap", {"cmd": "imapd", "listen":
                f"127.0.0.1:{srv.ports['imap']}", "prefork": "2"}) in conf
        kids = wait_until(lambda: [k for k in proc_children(srv.proc.pid)
                                   if k["argv"][0] == "imapd"],
                          10, what="imapd children")
        assert all(proc_ids(k["pid"])["Uid"][0] == srv.pw.pw_uid
                   for k in kids)

        create_inbox(srv.ports["imaps"], "alice")
        res = subprocess.run([installed.program("deliver"), "-C",
                              srv.imapd_conf, "alice"],
                             input=MESSAGE, capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr.decode() + srv.log()[-3000:]
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"],
                              ssl_context=tls_context(), timeout=15)
        m.login("alice", USERS["alice"])
        assert m.select("INBOX", readonly=True) == ("OK", [b"1"])
        typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
        assert typ == "OK" and b"installed deliver" in data[0][1]
        m.logout()

        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(30) == 0, srv.log()[-3000:]
        log = srv.log()
        assert "process exited event=checkpoint" in log
        assert not re.search(r"exec failed|killed by signal|"
                             r"exited with error|command failed", log), log
    finally:
        srv.stop()
