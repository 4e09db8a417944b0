"""End-to-end tests of the offline admin tools: ctl_mboxlist, quota,
ipurge, cyr_expire, unexpunge and cyr_deny.  The store is built without
a server by imap/mkstore_admin (a noinst helper); needs only the built
tools ($COLUMBA_BUILD)."""
# Columba is free software; see COPYING for the licence.

import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile

import pytest

BUILD = os.environ.get("COLUMBA_BUILD",
                       os.path.join(os.path.dirname(__file__), ".."))
TOOL_TIMEOUT = 60

# Run as root, the tools become cyrus_user (as Cyrus's do); the tests
# then name `nobody` and work in directories that user owns.
TOOL_USER = "nobody" if os.geteuid() == 0 else None


def tool(name):
    path = os.path.join(BUILD, "imap", name)
    if not os.access(path, os.X_OK):
        pytest.skip("%s is not built (set COLUMBA_BUILD)" % path)
    return path


def chown_tool(path):
    if TOOL_USER:
        nobody = pwd.getpwnam(TOOL_USER)
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


class Store:
    """One configuration with its own directories, and the tools bound
    to it."""

    def __init__(self, top, extra=""):
        self.top = top
        self.confdir = os.path.join(top, "conf")
        self.spool = os.path.join(top, "spool")
        for d in (self.confdir, self.spool):
            os.makedirs(d)
            chown_tool(d)
        self.conf = os.path.join(self.confdir, "imapd.conf")
        with open(self.conf, "w") as f:
            f.write("configdirectory: %s\n" % self.confdir)
            f.write("partition-default: %s\n" % self.spool)
            if TOOL_USER:
                f.write("cyrus_user: %s\n" % TOOL_USER)
            f.write(extra)

    def run(self, name, *args, stdin=None, check=True):
        res = subprocess.run([tool(name), "-C", self.conf] + list(args),
                             input=stdin, capture_output=True,
                             timeout=TOOL_TIMEOUT)
        if check and res.returncode != 0:
            raise AssertionError("%s %s failed (%d): %s" % (
                name, " ".join(args), res.returncode,
                res.stderr.decode(errors="replace")))
        return res

    def out(self, name, *args, stdin=None):
        return self.run(name, *args, stdin=stdin).stdout.decode()

    def mk(self, *args):
        return self.out("mkstore_admin", *args).strip()

    def records(self, mailbox):
        """{uid: (size, flags)} of every index record."""
        recs = {}
        for line in self.mk("records", mailbox).splitlines():
            parts = line.split(" ")
            recs[int(parts[0])] = (int(parts[1]),
                                   parts[2] if len(parts) > 2 else "")
        return recs

    def live(self, mailbox):
        return sorted(uid for uid, (_, fl) in self.records(mailbox).items()
                      if "E" not in fl)

    def msgfile(self, mailbox, uid):
        return os.path.join(self.mk("path", mailbox), "%d." % uid)


@pytest.fixture
def store():
    top = tempfile.mkdtemp(prefix="coladm", dir="/tmp")
    os.chmod(top, 0o755)
    chown_tool(top)
    yield Store(top)
    shutil.rmtree(top, ignore_errors=True)


def populate(s):
    for name in ("user.alice", "user.alice.Sent", "user.bob",
                 "shared.news"):
        s.mk("create", name)
    s.mk("append", "user.alice", "10", "100")
    s.mk("append", "user.alice", "1", "5000", "flagged")
    s.mk("append", "user.alice.Sent", "3", "200")
    s.mk("append", "shared.news", "40", "300")
    s.mk("append", "shared.news", "20", "400", "flagged")
    s.mk("append", "shared.news", "1", "20000")
    s.mk("append", "shared.news", "50", "100", "deleted")


# ----------------------------------------------------------------------
# ctl_mboxlist
# ----------------------------------------------------------------------

def test_dump_undump_round_trip(store):
    populate(store)
    dump = store.out("ctl_mboxlist", "-d")
    lines = dump.splitlines()
    assert [l.split("\t")[0] for l in lines] == [
        "shared.news", "user.alice", "user.alice.Sent", "user.bob"]
    alice = lines[1].split("\t")
    assert alice[1:3] == ["mail", "default"]
    assert alice[10:12] == ["alice", "lrswipkxtecdan"]

    # Load the dump into a fresh store: same dump back, same lookups.
    other = Store(os.path.join(store.top, "other"))
    shutil.rmtree(other.spool)
    os.symlink(store.spool, other.spool)
    other.run("ctl_mboxlist", "-u", stdin=dump.encode())
    assert other.out("ctl_mboxlist", "-d") == dump
    assert other.mk("path", "user.alice.Sent").endswith(
        "/spool/user/alice/Sent")
    assert other.live("shared.news") == [1, 2, 3, 4]
    # The list modseq went up with the load: a new mailbox gets a higher
    # createdmodseq than every loaded one.
    other.mk("create", "user.carol")
    carol = [l.split("\t") for l in other.out("ctl_mboxlist", "-d")
             .splitlines() if l.startswith("user.carol\t")][0]
    assert int(carol[5]) > max(int(l.split("\t")[5]) for l in lines)

    # Undump replaces entries of the same name, keeps the others.
    changed = lines[3].replace("\tbob\tlrswipkxtecdan\t",
                               "\tbob\tlrs\tanyone\tp\t")
    other.run("ctl_mboxlist", "-u", stdin=(changed + "\n").encode())
    after = other.out("ctl_mboxlist", "-d")
    assert changed in after.splitlines()
    assert lines[1] in after.splitlines()

    # -p filters by partition.
    assert other.out("ctl_mboxlist", "-d", "-p", "nosuch") == ""


def test_undump_refuses_bad_input(store):
    populate(store)
    dump = store.out("ctl_mboxlist", "-d")
    good = dump.splitlines()[0].split("\t")
    before = dump

    def bad(line, why):
        text = "# comment\n\n" + "\t".join(
            ["shared.fresh", "mail", "default", "f" * 32, "1", "1", "1",
             "0", "", "", ""]) + "\n" + line + "\n"
        res = store.run("ctl_mboxlist", "-u", stdin=text.encode(),
                        check=False)
        assert res.returncode != 0, line
        assert b"line 4" in res.stderr and why in res.stderr, res.stderr
        assert store.out("ctl_mboxlist", "-d") == before

    def with_field(i, v):
        f = list(good)
        f[i] = v
        return "\t".join(f)

    bad("shared.x\tmail\tdefault", b"too few fields")
    bad(with_field(0, "shared..x"), b"bad mailbox name")
    bad(with_field(1, "frobnicator"), b"unknown mailbox type")
    bad(with_field(2, "nosuchpartition"), b"unknown partition")
    bad(with_field(3, "bad id!"), b"bad unique id")
    bad(with_field(4, "99999999999"), b"bad uidvalidity")
    bad(with_field(5, "-1"), b"bad modseq")
    # An identifier without rights (whatever defaultacl gave the entry).
    bad("\t".join(good[:10] + ["anyone"]), b"bad ACL")
    bad(with_field(0, "shared.fresh"), b"given twice")
    bad(with_field(8, "\r"), b"carriage return")
    res = store.run("ctl_mboxlist", "-u", stdin=b"shared.y\x00\tmail\n",
                    check=False)
    assert res.returncode != 0 and b"NUL" in res.stderr
    assert store.out("ctl_mboxlist", "-d") == before
    res = store.run("ctl_mboxlist", check=False)
    assert res.returncode != 0 and b"usage" in res.stderr


def test_dump_remove(store):
    populate(store)
    dump = store.out("ctl_mboxlist", "-d", "-x")
    assert len(dump.splitlines()) == 4
    assert store.out("ctl_mboxlist", "-d") == ""
    store.run("ctl_mboxlist", "-u", stdin=dump.encode())
    assert store.out("ctl_mboxlist", "-d") == dump


# ----------------------------------------------------------------------
# quota
# ----------------------------------------------------------------------

def test_quota_report_and_fix(store):
    populate(store)
    store.mk("setquota", "user.alice", "100", "999999")
    store.mk("setquota", "user.bob", "50")
    alice_bytes = sum(size for size, _ in store.records("user.alice")
                      .values()) + sum(
        size for size, _ in store.records("user.alice.Sent").values())

    out = store.out("quota").splitlines()
    assert out[0].split() == ["Quota", "%", "Used", "Used", "Resource",
                              "Root"]
    # 999999 bytes are 976 KiB: 976% of a 100 KiB limit.
    assert out[1].split() == ["100", "976", "976", "STORAGE",
                              "user.alice"]
    assert out[2].split() == ["50", "0", "0", "STORAGE", "user.bob"]

    # -f -n reports but does not write.
    res = store.out("quota", "-f", "-n", "-q")
    assert "user.alice: STORAGE usage was 999999, now %d" % alice_bytes \
        in res
    assert "user.alice: MESSAGE usage was 0, now 3" in res
    assert "user.alice: X-NUM-FOLDERS usage was 0, now 2" in res
    assert "user.bob: X-NUM-FOLDERS usage was 0, now 1" in res
    assert store.out("quota", "user.alice").splitlines()[1].split()[2] \
        == "976"

    # -f fixes and then reports the fixed numbers.
    res = store.out("quota", "-f")
    assert "STORAGE usage was 999999" in res
    assert ("%8d %8d %8d %-8s %s" % (100, alice_bytes * 100 // 102400,
                                     alice_bytes // 1024, "STORAGE",
                                     "user.alice")) in res
    assert store.out("quota", "-f", "-q") == ""

    # Prefix selection.
    lines = store.out("quota", "user.bob").splitlines()
    assert len(lines) == 2 and lines[1].endswith("user.bob")


def test_quota_fix_recounts_annotation_storage(store):
    """quota -f sums the annotation values of the mailboxes under a root
    (X-ANNOTATION-STORAGE); a healthy store then stays silent."""
    populate(store)
    store.mk("setquota", "user.alice", "100")
    store.out("quota", "-f", "-q")
    assert store.out("quota", "-f", "-q") == ""

    # Two values on user.alice and one on its child, written straight
    # into annotations.db in its documented record form.
    ids = {}
    for line in store.out("ctl_mboxlist", "-d").splitlines():
        f = line.split("\t")
        ids[f[0]] = f[3]
    batch = ("set %s\\x00/comment\\x00 \"1 5 hello\"\n"
             "set %s\\x00/comment\\x00bob \"1 6 abc\"\n"
             "set %s\\x00/vendor/x\\x00 \"1 7 0123456789\"\n" % (
                 ids["user.alice"], ids["user.alice"],
                 ids["user.alice.Sent"]))
    store.run("cyr_dbtool", "-n", os.path.join(store.confdir,
                                                "annotations.db"),
              "twoskip", "batch", stdin=batch.encode())
    res = store.out("quota", "-f", "-q")
    assert "user.alice: X-ANNOTATION-STORAGE usage was 0, now 18" in res
    assert store.out("quota", "-f", "-q") == ""

    # An expunge, an unexpunge and an ipurge each keep the usage right:
    # nothing left for quota -f to fix.
    store.mk("expunge", "user.alice", "1")
    assert store.out("quota", "-f", "-q") == ""
    store.out("unexpunge", "-a", "user.alice")
    assert store.out("quota", "-f", "-q") == ""
    store.out("ipurge", "-f", "-b", "1", "user.alice")
    assert store.out("quota", "-f", "-q") == ""


# ----------------------------------------------------------------------
# ipurge
# ----------------------------------------------------------------------

def test_ipurge_by_age(store):
    populate(store)
    res = store.out("ipurge", "-n", "-d", "30", "shared.*")
    assert "shared.news: would delete 2 of 4 messages (" in res
    assert "uid 1 size" in res and "uid 4 size" in res
    assert store.live("shared.news") == [1, 2, 3, 4]

    res = store.out("ipurge", "-d", "30", "shared.*")
    assert "shared.news: deleted 2 of 4 messages" in res
    recs = store.records("shared.news")
    assert "E" in recs[1][1] and "E" in recs[4][1]
    # Delayed expunge: the files stay for cyr_expire/unexpunge.
    assert os.path.exists(store.msgfile("shared.news", 1))

    # User mailboxes only with -f.
    res = store.out("ipurge", "-d", "5", "user.*")
    assert store.live("user.alice") == [1, 2]
    res = store.out("ipurge", "-f", "-d", "5", "user.*")
    assert "user.alice: deleted 1 of 2 messages" in res
    assert store.live("user.alice") == [2]
    assert store.live("user.alice.Sent") == [1]

    # -i: the young ones instead.
    store.out("ipurge", "-f", "-i", "-d", "2", "user.alice.Sent")
    assert store.live("user.alice.Sent") == [1]
    store.out("ipurge", "-f", "-i", "-d", "5", "user.alice.Sent")
    assert store.live("user.alice.Sent") == []


def test_ipurge_by_size_and_filters(store):
    populate(store)
    # -k 1: larger than 1 KiB (uid 3, 20000 body bytes).
    res = store.out("ipurge", "-n", "-k", "1", "shared.news")
    assert "would delete 1 of 4" in res and "uid 3 " in res
    # -s skips flagged; -b 300 alone would take uids 2 (400) and 3.
    store.out("ipurge", "-s", "-b", "600", "shared.news")
    assert store.live("shared.news") == [1, 2, 4]
    # -o: only \Deleted ones (uid 4).
    store.out("ipurge", "-o", "-b", "0", "shared.news")
    assert store.live("shared.news") == [1, 2]
    res = store.run("ipurge", "-d", "1", "-b", "5", "x", check=False)
    assert res.returncode != 0
    res = store.run("ipurge", "-d", "lots", "x", check=False)
    assert res.returncode != 0 and b"number" in res.stderr


def test_ipurge_immediate_mode():
    top = tempfile.mkdtemp(prefix="coladm", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        chown_tool(top)
        s = Store(top, "expunge_mode: immediate\n")
        populate(s)
        s.out("ipurge", "-d", "30", "shared.news")
        recs = s.records("shared.news")
        assert "U" in recs[1][1]
        assert not os.path.exists(s.msgfile("shared.news", 1))
    finally:
        shutil.rmtree(top, ignore_errors=True)


# ----------------------------------------------------------------------
# cyr_expire
# ----------------------------------------------------------------------

def test_cyr_expire_expunged(store):
    populate(store)
    store.mk("expunge", "shared.news", "1", "2")
    f1 = store.msgfile("shared.news", 1)
    assert os.path.exists(f1)

    # Expunged just now: a day's grace keeps them.
    res = store.out("cyr_expire", "-X", "1d", "-v")
    assert "removed 0 expunged messages" in res
    assert os.path.exists(f1)
    # -x skips the expunge pass altogether.
    store.out("cyr_expire", "-X", "0", "-x")
    assert os.path.exists(f1)

    res = store.out("cyr_expire", "-X", "0", "-v")
    assert "removed 2 expunged messages from 4 mailboxes" in res
    assert not os.path.exists(f1)
    assert not os.path.exists(store.msgfile("shared.news", 2))
    # Repacked: the records are gone, the others untouched.
    assert sorted(store.records("shared.news")) == [3, 4]
    assert os.path.exists(store.msgfile("shared.news", 3))


def test_cyr_expire_deleted_mailboxes(store):
    populate(store)
    # One deleted long ago (hex time 0x10000000, 1978) and one now.
    store.mk("rename", "user.alice.Sent", "DELETED.user.alice.Sent.10000000")
    store.mk("delete", "shared.news")
    names = [l.split("\t")[0] for l in
             store.out("ctl_mboxlist", "-d").splitlines()]
    assert "DELETED.user.alice.Sent.10000000" in names
    recent = [n for n in names if n.startswith("DELETED.shared.news.")]
    assert len(recent) == 1
    olddir = store.mk("path", "DELETED.user.alice.Sent.10000000")
    assert os.path.isdir(olddir)

    res = store.out("cyr_expire", "-D", "7d", "-v")
    assert "removed 1 deleted mailboxes" in res
    names = [l.split("\t")[0] for l in
             store.out("ctl_mboxlist", "-d").splitlines()]
    assert "DELETED.user.alice.Sent.10000000" not in names
    assert recent[0] in names
    assert not os.path.exists(os.path.join(olddir, "cyrus.header"))

    store.out("cyr_expire", "-D", "0")
    assert not any(l.startswith("DELETED.") for l in
                   store.out("ctl_mboxlist", "-d").splitlines())


def test_cyr_expire_duplicates(store):
    store.mk("dupmark", "<old@x>", "user.alice", "10")
    store.mk("dupmark", "<older@x>", "user.bob", "40")
    store.mk("dupmark", "<new@x>", "user.alice", "0")
    assert store.mk("dupcount") == "3"
    res = store.out("cyr_expire", "-E", "5", "-v")
    assert "expired 2 of 3 duplicate entries" in res
    assert store.mk("dupcount") == "1"
    res = store.run("cyr_expire", "-E", "soon", check=False)
    assert res.returncode != 0 and b"bad duration" in res.stderr
    res = store.run("cyr_expire", check=False)
    assert res.returncode != 0 and b"usage" in res.stderr


# ----------------------------------------------------------------------
# unexpunge
# ----------------------------------------------------------------------

def test_unexpunge_list_and_restore(store):
    populate(store)
    store.mk("expunge", "shared.news", "2", "3", "4")
    res = store.out("unexpunge", "-l", "shared.news")
    assert [l for l in res.splitlines() if l.startswith("UID:")] == [
        "UID: 2", "UID: 3", "UID: 4"]
    assert "\tFrom: tester@example.com" in res
    assert "\tSubj: test message of 400 bytes" in res

    # -u: one message back, with a new UID and its flags.
    res = store.out("unexpunge", "-u", "-v", "shared.news", "2")
    assert "restored uid 2 as uid 5" in res
    assert store.live("shared.news") == [1, 5]
    assert "F" in store.records("shared.news")[5][1]
    with open(store.msgfile("shared.news", 5), "rb") as f:
        assert b"test message of 400 bytes" in f.read()
    # The old record is retired at once: unlinked, its link gone, and
    # no longer listed.
    assert "U" in store.records("shared.news")[2][1]
    assert not os.path.exists(store.msgfile("shared.news", 2))
    res = store.out("unexpunge", "-l", "shared.news")
    assert [l for l in res.splitlines() if l.startswith("UID:")] == [
        "UID: 3", "UID: 4"]
    # Restoring the same one again is a no-op.
    res = store.out("unexpunge", "-a", "shared.news")
    assert "restored 2 messages" in res
    assert store.live("shared.news") == [1, 5, 6, 7]
    # -d clears \Deleted (uid 4 had it, restored as 7 above: not with -d).
    assert "D" in store.records("shared.news")[7][1]
    store.mk("expunge", "shared.news", "7")
    store.out("unexpunge", "-t", "1h", "-d", "shared.news")
    recs = store.records("shared.news")
    assert store.live("shared.news") == [1, 5, 6, 8]
    assert "D" not in recs[8][1]

    # After cyr_expire the files are gone: nothing left to list.
    store.out("cyr_expire", "-X", "0")
    assert "UID:" not in store.out("unexpunge", "-l", "shared.news")
    res = store.run("unexpunge", "-l", "shared.nosuch", check=False)
    assert res.returncode != 0 and res.stderr.strip()
    res = store.run("unexpunge", "-u", "shared.news", check=False)
    assert res.returncode != 0 and b"usage" in res.stderr


# ----------------------------------------------------------------------
# cyr_deny
# ----------------------------------------------------------------------

def test_cyr_deny(store):
    assert store.out("cyr_deny", "-l") == ""
    store.out("cyr_deny", "alice")
    store.out("cyr_deny", "-s", "imap,pop3", "-m", "Pay your bill", "bob")
    assert store.out("cyr_deny", "-l").splitlines() == [
        "alice\t*\tAccess to this service has been blocked",
        "bob\timap,pop3\tPay your bill"]
    store.out("cyr_deny", "-a", "alice")
    assert store.out("cyr_deny", "-l").splitlines() == [
        "bob\timap,pop3\tPay your bill"]
    res = store.run("cyr_deny", "-a", "alice", check=False)
    assert res.returncode != 0 and b"not denied" in res.stderr
    res = store.run("cyr_deny", "-m", "bad\nmessage", "carol", check=False)
    assert res.returncode != 0 and res.stderr.strip()
    res = store.run("cyr_deny", check=False)
    assert res.returncode != 0 and b"usage" in res.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_tools_run_as_cyrus_user(store):
    store.out("cyr_deny", "alice")
    db = os.path.join(store.confdir, "user_deny.db")
    assert os.stat(db).st_uid == pwd.getpwnam(TOOL_USER).pw_uid
