"""End-to-end tests of the database tools (cyr_dbtool, cvt_cyrusdb,
ctl_cyrusdb) and of the sql backend on SQLite and on a real PostgreSQL
server started here.  Self-contained: needs only the built tools
($COLUMBA_BUILD) and, for PostgreSQL, Debian's postgresql package."""
# Columba is free software; see COPYING for the licence.

import glob
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

BUILD = os.environ.get("COLUMBA_BUILD",
                       os.path.join(os.path.dirname(__file__), ".."))
TOOL_TIMEOUT = 60


def tool(name):
    path = os.path.join(BUILD, "imap", name)
    if not os.access(path, os.X_OK):
        pytest.skip("%s is not built (set COLUMBA_BUILD)" % path)
    return path


def run(args, stdin=None, check=True):
    """Run a tool; returns CompletedProcess with text output."""
    res = subprocess.run(args, input=stdin, capture_output=True,
                         timeout=TOOL_TIMEOUT)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (
            " ".join(args), res.returncode,
            res.stderr.decode(errors="replace")))
    return res


# Run as root, the tools become cyrus_user before touching a file, as
# Cyrus's do; the tests then name `nobody` and work in directories that
# user owns.
TOOL_USER = "nobody" if os.geteuid() == 0 else None


@pytest.fixture
def tmp_path():
    """A scratch directory the tools may write to, whoever they run as."""
    top = tempfile.mkdtemp(prefix="coldbt", dir="/tmp")
    if TOOL_USER:
        os.chmod(top, 0o755)
        nobody = pwd.getpwnam(TOOL_USER)
        os.chown(top, nobody.pw_uid, nobody.pw_gid)
    yield pathlib.Path(top)
    shutil.rmtree(top, ignore_errors=True)


def make_tool_dir(path):
    os.makedirs(path, exist_ok=True)
    if TOOL_USER:
        nobody = pwd.getpwnam(TOOL_USER)
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def write_conf(confdir, extra=""):
    make_tool_dir(confdir)
    path = os.path.join(confdir, "imapd.conf")
    with open(path, "w") as f:
        f.write("configdirectory: %s\n" % confdir)
        if TOOL_USER:
            f.write("cyrus_user: %s\n" % TOOL_USER)
        f.write(extra)
    return path


@pytest.fixture
def conf(tmp_path):
    return write_conf(str(tmp_path / "conf"), "sql_engine: sqlite\n")


class DbTool:
    """cyr_dbtool bound to one configuration, file and backend."""

    def __init__(self, conf, fname, backend):
        self.conf, self.fname, self.backend = conf, fname, backend

    def __call__(self, *args, stdin=None, check=True, opts=()):
        return run([tool("cyr_dbtool"), "-C", self.conf] + list(opts)
                   + [self.fname, self.backend] + list(args),
                   stdin=stdin, check=check)

    def show(self, *prefix, opts=()):
        return self("show", *prefix, opts=opts).stdout


BACKENDS = ["twoskip", "flat", "sql"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_get_show_delete(conf, tmp_path, backend):
    db = DbTool(conf, str(tmp_path / ("t." + backend)), backend)
    db("set", "user.alice", "hello world", opts=["-n"])
    db("set", "user.bob", "b")
    db("set", "shared", "s")
    assert db("get", "user.alice").stdout == b"hello world\n"
    assert db.show() == (b"shared\ts\nuser.alice\thello world\n"
                         b"user.bob\tb\n")
    assert db.show("user.") == b"user.alice\thello world\nuser.bob\tb\n"
    db("delete", "user.bob")
    res = db("delete", "user.bob", check=False)
    assert res.returncode != 0 and b"Not found" in res.stderr
    res = db("get", "nosuchkey", check=False)
    assert res.returncode != 0
    assert db("consistent").returncode == 0
    db("repack")
    assert db.show() == b"shared\ts\nuser.alice\thello world\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_is_one_transaction(conf, tmp_path, backend):
    db = DbTool(conf, str(tmp_path / ("b." + backend)), backend)
    batch = (b"# comment\n"
             b"set user.a 1\n"
             b"set \"sp ace\" \"two words\"\n"
             b"set bin\\x01\\x00key tail of the line\n"
             b"set empty\n"
             b"\n")
    db("batch", stdin=batch, opts=["-n"])
    assert db("get", "sp ace").stdout == b"two words\n"
    out = db.show()
    assert b"bin\\x01\\x00key\ttail of the line\n" in out
    assert b"empty\t\n" in out

    # A failing line aborts everything before it too.
    res = db("batch", stdin=b"set user.b 2\ndelete missing\n", check=False)
    assert res.returncode != 0
    assert b"batch line 2" in res.stderr
    assert db("get", "user.b", check=False).returncode != 0

    res = db("batch", stdin=b"set user.c 3\nfrobnicate x\n", check=False)
    assert res.returncode != 0 and b"unknown command" in res.stderr
    res = db("batch", stdin=b"set \"unterminated 3\n", check=False)
    assert res.returncode != 0
    res = db("batch", stdin=b"set bad\\xZZ 3\n", check=False)
    assert res.returncode != 0
    assert db("get", "user.c", check=False).returncode != 0

    db("batch", stdin=b"delete user.a\nset user.d 4\n")
    assert db("get", "user.d").stdout == b"4\n"
    assert db("get", "user.a", check=False).returncode != 0


def test_batch_refuses_raw_nul(conf, tmp_path):
    db = DbTool(conf, str(tmp_path / "nul.db"), "twoskip")
    res = db("batch", stdin=b"set a\x00b v\n", check=False, opts=["-n"])
    assert res.returncode != 0
    assert b"NUL" in res.stderr


def test_mailbox_order_flag(conf, tmp_path):
    for backend in BACKENDS:
        db = DbTool(conf, str(tmp_path / ("m." + backend)), backend)
        db("batch", stdin=b"set a-b 1\nset a.b 2\nset a 3\n",
           opts=["-n", "-M"])
        # flat keeps no order in its file: -M says which to use.
        keys = [l.split(b"\t")[0]
                for l in db.show(opts=["-M"]).splitlines()]
        assert keys == [b"a", b"a.b", b"a-b"], backend


def test_bad_input_errors(conf, tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    for backend in BACKENDS:
        db = DbTool(conf, str(garbage), backend)
        res = db("show", check=False)
        assert res.returncode != 0, backend
        assert res.stderr.strip(), backend

    res = DbTool(conf, str(tmp_path / "x.db"), "nosuchbackend")(
        "show", check=False, opts=["-n"])
    assert res.returncode != 0
    assert b"unknown database backend" in res.stderr

    res = DbTool(conf, str(tmp_path / "missing.db"), "twoskip")(
        "show", check=False)
    assert res.returncode != 0

    res = run([tool("cyr_dbtool"), "-C", conf], check=False)
    assert res.returncode != 0 and b"usage" in res.stderr


def test_truncated_sqlite_file(conf, tmp_path):
    path = str(tmp_path / "trunc.db")
    db = DbTool(conf, path, "sql")
    lines = b"".join(b"set key%06d %s\n" % (i, b"v" * 100)
                     for i in range(3000))
    db("batch", stdin=lines, opts=["-n"])
    db("repack")
    with open(path, "r+b") as f:
        f.truncate(8192)
    res = db("consistent", check=False)
    assert res.returncode != 0
    assert res.stderr.strip()


def test_truncated_twoskip_file(conf, tmp_path):
    path = str(tmp_path / "trunc.ts")
    db = DbTool(conf, path, "twoskip")
    lines = b"".join(b"set key%06d %s\n" % (i, b"v" * 100)
                     for i in range(500))
    db("batch", stdin=lines, opts=["-n"])
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    res = db("consistent", check=False)
    assert res.returncode != 0
    assert res.stderr.strip()


def test_cvt_round_trip(conf, tmp_path):
    src = DbTool(conf, str(tmp_path / "src.ts"), "twoskip")
    batch = b"".join(b"set user.u%03d.sub \"value \\x00\\t%d\"\n" % (i, i)
                     for i in range(200))
    batch += b"set user.u001 top\nset user.u001-x dash\n"
    src("batch", stdin=batch, opts=["-n", "-M"])
    want = src.show(opts=["-M"])

    chain = [("src.ts", "twoskip"), ("mid.flat", "flat"),
             ("dst.sqlite", "sql"), ("back.ts", "twoskip")]
    for (a, abe), (b, bbe) in zip(chain, chain[1:]):
        res = run([tool("cvt_cyrusdb"), "-C", conf, "-M",
                   str(tmp_path / a), abe, str(tmp_path / b), bbe])
        assert b"converted 202 records" in res.stdout
        assert DbTool(conf, str(tmp_path / b), bbe).show(
            opts=["-M"]) == want, b

    # Never over an existing file, never with an unknown backend.
    res = run([tool("cvt_cyrusdb"), "-C", conf, str(tmp_path / "src.ts"),
               "twoskip", str(tmp_path / "mid.flat"), "flat"], check=False)
    assert res.returncode != 0 and b"exists" in res.stderr
    res = run([tool("cvt_cyrusdb"), "-C", conf, str(tmp_path / "src.ts"),
               "nosuch", str(tmp_path / "new.db"), "flat"], check=False)
    assert res.returncode != 0
    assert not os.path.exists(str(tmp_path / "new.db"))


def test_ctl_cyrusdb(tmp_path):
    confdir = str(tmp_path / "cfg")
    conf = write_conf(confdir, "sql_engine: sqlite\nduplicate_db: sql\n"
                      "quota_db: twoskip\n")
    make_tool_dir(os.path.join(confdir, "proc"))
    stale = [os.path.join(confdir, "proc", "4242"),
             os.path.join(confdir, "mailboxes.db.NEW")]
    for p in stale:
        open(p, "w").close()

    run([tool("ctl_cyrusdb"), "-C", conf, "-r"])
    assert os.path.exists(os.path.join(confdir, "mailboxes.db"))
    for p in stale:
        assert not os.path.exists(p)

    DbTool(conf, os.path.join(confdir, "deliver.db"), "sql")(
        "set", "msgid", "1", opts=["-n"])
    DbTool(conf, os.path.join(confdir, "quotas.db"), "twoskip")(
        "set", "user.a", "1 100", opts=["-n"])
    run([tool("ctl_cyrusdb"), "-C", conf, "-c"])
    run([tool("ctl_cyrusdb"), "-C", conf, "-x"])
    assert DbTool(conf, os.path.join(confdir, "deliver.db"), "sql")(
        "get", "msgid").stdout == b"1\n"

    with open(os.path.join(confdir, "quotas.db"), "r+b") as f:
        f.seek(0)
        f.write(b"\xff" * 64)
    res = run([tool("ctl_cyrusdb"), "-C", conf, "-x"], check=False)
    assert res.returncode != 0
    assert b"quotas.db" in res.stderr

    res = run([tool("ctl_cyrusdb"), "-C", conf], check=False)
    assert res.returncode != 0 and b"usage" in res.stderr


# ----------------------------------------------------------------------
# PostgreSQL
# ----------------------------------------------------------------------

def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(dirs[-1]) if dirs else None


def ensure_postgresql():
    """The server binaries' directory; installs Debian's postgresql if it
    is missing and we may.  None when it cannot be had."""
    if pg_bindir():
        return pg_bindir()
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends",
                 "postgresql"]):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            return None
    return pg_bindir()


@pytest.fixture(scope="module")
def pgserver():
    """A PostgreSQL server on a Unix socket in a temporary directory,
    run as `nobody` when we are root; yields (socketdir, database, user)."""
    bindir = ensure_postgresql()
    if not bindir:
        pytest.skip("PostgreSQL is not installed and cannot be installed "
                    "(apt-get install postgresql)")
    top = tempfile.mkdtemp(prefix="colpg", dir="/tmp")
    os.chmod(top, 0o755)
    data = os.path.join(top, "data")
    prefix = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(top, nobody.pw_uid, nobody.pw_gid)
        prefix = ["runuser", "-u", "nobody", "--"]
    user, dbname = "columba", "columba_test"
    proc = None
    try:
        subprocess.run(prefix + [os.path.join(bindir, "initdb"), "-D", data,
                                 "-A", "trust", "-U", user, "-E", "UTF8"],
                       check=True, capture_output=True, timeout=300)
        log = open(os.path.join(top, "server.log"), "w")
        proc = subprocess.Popen(
            prefix + [os.path.join(bindir, "postgres"), "-D", data,
                      "-k", top, "-c", "listen_addresses=",
                      "-c", "fsync=off"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while True:
            ready = subprocess.run([os.path.join(bindir, "pg_isready"),
                                    "-h", top, "-U", user],
                                   capture_output=True)
            if ready.returncode == 0:
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("postgres did not start: " + open(
                    os.path.join(top, "server.log")).read())
            time.sleep(0.2)
        subprocess.run([os.path.join(bindir, "createdb"), "-h", top, "-U",
                        user, dbname], check=True, capture_output=True,
                       timeout=60)
        yield top, dbname, user
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def pgconf(tmp_path, pgserver):
    sock, dbname, user = pgserver
    return write_conf(str(tmp_path / "pgconf"),
                      "sql_engine: pgsql\nsql_hostnames: /nonexistent/dir,"
                      " %s\nsql_database: %s\nsql_user: %s\n"
                      % (sock, dbname, user))


def test_pgsql_round_trip(pgconf, tmp_path):
    path = str(tmp_path / "mailboxes.db")
    db = DbTool(pgconf, path, "sql")
    db("batch", stdin=b"set user.alice \"a\\x00b\"\nset user.alice.Sent s\n"
                      b"set user.alice-2 x\nset \"bin\\xff\\x00\" y\n",
       opts=["-n", "-M"])
    assert not os.path.exists(path)  # the records live in PostgreSQL
    out = db.show()
    assert out == (b"bin\\xff\\x00\ty\nuser.alice\ta\\x00b\n"
                   b"user.alice.Sent\ts\nuser.alice-2\tx\n")
    assert db.show("user.alice.") == b"user.alice.Sent\ts\n"
    db("delete", "user.alice-2")
    res = db("batch", stdin=b"set k v\ndelete nothere\n", check=False)
    assert res.returncode != 0
    assert db("get", "k", check=False).returncode != 0
    assert db("consistent").returncode == 0
    db("repack")

    # Through a file backend and back.
    flat = str(tmp_path / "copy.flat")
    run([tool("cvt_cyrusdb"), "-C", pgconf, path, "sql", flat, "flat"])
    back = str(tmp_path / "back.db")
    run([tool("cvt_cyrusdb"), "-C", pgconf, flat, "flat", back, "sql"])
    assert DbTool(pgconf, back, "sql").show() == db.show()

    # A database that was never created is an error, not an empty table.
    res = DbTool(pgconf, str(tmp_path / "never.db"), "sql")("show",
                                                            check=False)
    assert res.returncode != 0


def test_pgsql_unit_suite(pgserver):
    """The cunit suite of the sql backend, run against PostgreSQL."""
    unit = os.path.join(BUILD, "cunit", "unit")
    if not os.access(unit, os.X_OK):
        pytest.skip("cunit/unit is not built")
    sock, dbname, user = pgserver
    env = dict(os.environ, COLUMBA_TEST_PGHOST=sock,
               COLUMBA_TEST_PGDATABASE=dbname, COLUMBA_TEST_PGUSER=user)
    res = subprocess.run([unit, "cyrusdb_sql"], env=env, capture_output=True,
                         timeout=300)
    out = res.stdout.decode(errors="replace")
    assert res.returncode == 0, out
    assert "Failed" in out
    for line in out.splitlines():
        if line.strip().startswith("tests") or \
                line.strip().startswith("asserts"):
            assert line.split()[4] == "0", line


def test_pgsql_unreachable_server(tmp_path):
    conf = write_conf(str(tmp_path / "badpg"),
                      "sql_engine: pgsql\nsql_hostnames: /nonexistent/a\n"
                      "sql_database: x\nsql_user: x\n")
    res = DbTool(conf, str(tmp_path / "x.db"), "sql")("show", check=False,
                                                      opts=["-n"])
    assert res.returncode != 0
    assert res.stderr.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_tools_run_as_cyrus_user(conf, tmp_path):
    """Run as root, a tool creates its files as cyrus_user, so the
    daemons can open them afterwards."""
    path = str(tmp_path / "owned.db")
    DbTool(conf, path, "twoskip")("set", "k", "v", opts=["-n"])
    assert os.stat(path).st_uid == pwd.getpwnam(TOOL_USER).pw_uid

    missing = write_conf(str(tmp_path / "nouser"),
                         "cyrus_user: columba-no-such-user\n")
    res = DbTool(missing, str(tmp_path / "x.db"), "twoskip")(
        "set", "k", "v", check=False, opts=["-n"])
    assert res.returncode != 0
    assert b"columba-no-such-user" in res.stderr
    assert not os.path.exists(str(tmp_path / "x.db"))
