"""End-to-end tests of the mail store tools: reconstruct, mbpath and
mbexamine, on mailboxes made by the test helper mkmbox (no server).
Needs only the built tools ($COLUMBA_BUILD)."""
# Columba is free software; see COPYING for the licence.

import json
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

# Run as root, the tools become cyrus_user, so the tests name `nobody`
# and work in directories that user owns (as tests/test_dbtools.py).
TOOL_USER = "nobody" if os.geteuid() == 0 else None

MSG1 = (b"From: Ann <ann@example.com>\r\nTo: bob@example.org\r\n"
        b"Subject: first\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        b"Message-ID: <1@example.com>\r\n\r\nHello Bob.\r\n")
MSG2 = (b"From: carol@example.net\r\nSubject: second\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nSecond body.\r\n")
MSG3 = b"Subject: third\r\n\r\nThird.\r\n"
FLAG_SEEN = 0x10


def tool(name):
    path = os.path.join(BUILD, "imap", name)
    if not os.access(path, os.X_OK):
        pytest.skip("%s is not built (set COLUMBA_BUILD)" % path)
    return path


def give_to_tool_user(path):
    if TOOL_USER:
        nobody = pwd.getpwnam(TOOL_USER)
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


class Store:
    """A configuration, a partition and the tools bound to them."""

    def __init__(self, top, unixsep):
        self.top = top
        self.conf_dir = top / "conf"
        self.part = top / "part"
        for d in (self.conf_dir, self.part):
            d.mkdir()
            give_to_tool_user(d)
        self.conf = self.conf_dir / "imapd.conf"
        with open(self.conf, "w") as f:
            f.write("configdirectory: %s\n" % self.conf_dir)
            f.write("partition-default: %s\n" % self.part)
            f.write("defaultpartition: default\n")
            f.write("unixhierarchysep: %s\n" % ("yes" if unixsep else "no"))
            if TOOL_USER:
                f.write("cyrus_user: %s\n" % TOOL_USER)
        self.sep = "/" if unixsep else "."
        self.nmsg = 0

    def ext(self, intname):
        return intname.replace(".", self.sep)

    def run(self, name, *args, check=True):
        res = subprocess.run([tool(name), "-C", str(self.conf)]
                             + [str(a) for a in args],
                             capture_output=True, timeout=TOOL_TIMEOUT)
        if check and res.returncode != 0:
            raise AssertionError("%s %s failed (%d): %s%s" % (
                name, " ".join(map(str, args)), res.returncode,
                res.stdout.decode(errors="replace"),
                res.stderr.decode(errors="replace")))
        return res

    def msgfile(self, data):
        self.nmsg += 1
        path = self.top / ("msg%d" % self.nmsg)
        path.write_bytes(data)
        os.chmod(path, 0o644)
        return path

    def make(self, intname, *msgs, flags=0, date=None):
        args = ["-F", flags]
        if date:
            args += ["-d", date]
        files = [self.msgfile(m) for m in msgs]
        out = self.run("mkmbox", *args, intname, *files).stdout
        return [int(x) for x in out.split()]

    def reconstruct(self, *args, check=True):
        return self.run("reconstruct", *args, check=check)

    def path(self, intname):
        out = self.run("mbpath", self.ext(intname)).stdout.decode()
        return pathlib.Path(out.strip())

    def examine(self, intname, *args):
        return self.run("mbexamine", *args, self.ext(intname)).stdout.decode()

    def drop_file(self, intname, name, data):
        path = self.path(intname) / name
        path.write_bytes(data)
        give_to_tool_user(path)
        return path


def records(text):
    """Parse mbexamine output: header fields and one dict per record."""
    head, recs = {}, []
    cur = head
    for line in text.splitlines():
        if line.startswith("Record "):
            cur = {}
            recs.append(cur)
            continue
        if line.startswith("  ") and ": " in line:
            key, val = line.strip().split(": ", 1)
            cur[key] = val
    return head, recs


@pytest.fixture(params=[True, False], ids=["unixsep", "dotsep"])
def store(request):
    top = tempfile.mkdtemp(prefix="colstore", dir="/tmp")
    os.chmod(top, 0o755)
    give_to_tool_user(top)
    yield Store(pathlib.Path(top), request.param)
    shutil.rmtree(top, ignore_errors=True)


def test_quiet_on_healthy_mailbox_prints_nothing(store):
    store.make("user.alice", MSG1, MSG2, flags=FLAG_SEEN)
    res = store.reconstruct("-q", store.ext("user.alice"))
    assert res.stdout == b"" and res.stderr == b""
    res = store.reconstruct(store.ext("user.alice"))
    assert res.stdout.decode().strip() == store.ext("user.alice") + ": ok"
    res = store.reconstruct("-q")           # every mailbox
    assert res.stdout == b""


def test_missing_index_rebuilt_keeping_ids(store):
    store.make("user.alice", MSG1, MSG2, MSG3, date=1700000000)
    before, brecs = records(store.examine("user.alice"))
    d = store.path("user.alice")
    (d / "cyrus.index").unlink()
    out = store.reconstruct("-q", store.ext("user.alice")).stdout.decode()
    assert "cyrus.index missing: rebuilt" in out
    after, arecs = records(store.examine("user.alice"))
    assert after["Unique id"] == before["Unique id"]
    assert after["UIDVALIDITY"] == before["UIDVALIDITY"]
    assert after["Exists"] == "3" and after["UIDNEXT"] == "4"
    assert [r["UID"] for r in arecs] == ["1", "2", "3"]
    assert [r["GUID"] for r in arecs] == [r["GUID"] for r in brecs]
    assert after["Quota used"] == str(len(MSG1) + len(MSG2) + len(MSG3))
    assert '"first"' in arecs[0]["Envelope"]
    assert store.reconstruct("-q", store.ext("user.alice")).stdout == b""


def test_corrupt_cache_rebuilt_flags_kept(store):
    store.make("user.alice", MSG1, MSG2, flags=FLAG_SEEN)
    _, brecs = records(store.examine("user.alice"))
    cache = store.path("user.alice") / "cyrus.cache"
    data = bytearray(cache.read_bytes())
    for i in range(40, 80):
        data[i] ^= 0x5A
    cache.write_bytes(bytes(data))
    out = store.reconstruct("-q", store.ext("user.alice")).stdout.decode()
    assert "uid 1: cache record damaged" in out
    _, arecs = records(store.examine("user.alice"))
    assert arecs[0]["Flags"] == "\\Seen"
    assert arecs[0]["Modseq"] == brecs[0]["Modseq"]
    assert '"first"' in arecs[0]["Envelope"]
    assert "[" not in arecs[0]["Envelope"][:1]
    assert store.reconstruct("-q", store.ext("user.alice")).stdout == b""


def test_garbage_cache_and_header_recreated(store):
    store.make("user.alice", MSG1)
    before, _ = records(store.examine("user.alice"))
    d = store.path("user.alice")
    (d / "cyrus.cache").write_bytes(b"nonsense" * 10)
    (d / "cyrus.header").write_bytes(b"not a header\n")
    out = store.reconstruct("-q", store.ext("user.alice")).stdout.decode()
    assert "cyrus.header damaged: recreated" in out
    assert "cyrus.cache damaged: rebuilt" in out
    after, recs = records(store.examine("user.alice"))
    assert after["Unique id"] == before["Unique id"]
    assert '"first"' in recs[0]["Envelope"]
    assert store.reconstruct("-q", store.ext("user.alice")).stdout == b""


def test_new_message_file_added(store):
    store.make("user.alice", MSG1, MSG2)
    store.drop_file("user.alice", "9.", MSG3)
    out = store.reconstruct("-q", store.ext("user.alice")).stdout.decode()
    assert "uid 9: message file without a record: added" in out
    head, recs = records(store.examine("user.alice"))
    assert [r["UID"] for r in recs] == ["1", "2", "9"]
    assert head["UIDNEXT"] == "10" and head["Exists"] == "3"
    # A file under an old UID is renumbered above UIDNEXT.
    store.drop_file("user.alice", "5.", MSG3)
    out = store.reconstruct("-q", store.ext("user.alice")).stdout.decode()
    assert "message file 5. without a record: added as uid 10" in out
    assert not (store.path("user.alice") / "5.").exists()
    assert store.reconstruct("-q", store.ext("user.alice")).stdout == b""


def test_missing_message_file_dropped(store):
    store.make("user.alice", MSG1, MSG2, MSG3)
    (store.path("user.alice") / "2.").unlink()
    res = store.reconstruct("-q", store.ext("user.alice"))
    assert "uid 2: message file missing: record removed" in res.stdout.decode()
    head, recs = records(store.examine("user.alice"))
    assert [r["UID"] for r in recs] == ["1", "3"]
    assert head["Exists"] == "2"
    assert head["Quota used"] == str(len(MSG1) + len(MSG3))
    assert int(head["Deleted modseq"]) > 0
    assert store.reconstruct("-q", store.ext("user.alice")).stdout == b""


def test_guid_check_detects_changed_content(store):
    store.make("user.alice", MSG1, MSG2)
    _, brecs = records(store.examine("user.alice"))
    same_size = MSG2.replace(b"Second", b"Sekond")
    store.drop_file("user.alice", "2.", same_size)
    # Same size: only -G notices.
    assert store.reconstruct("-q", store.ext("user.alice")).stdout == b""
    out = store.reconstruct("-q", "-G",
                            store.ext("user.alice")).stdout.decode()
    assert "uid 2: message file changed (GUID mismatch)" in out
    _, arecs = records(store.examine("user.alice"))
    assert arecs[1]["GUID"] != brecs[1]["GUID"]
    assert int(arecs[1]["Modseq"]) > int(brecs[1]["Modseq"])
    assert store.reconstruct("-q", "-G",
                             store.ext("user.alice")).stdout == b""


def test_recursive_covers_children(store):
    store.make("user.alice", MSG1)
    store.make("user.alice.Sent", MSG2)
    store.make("user.alice.Sent.Old", MSG3)
    store.make("user.bob", MSG3)
    for name in ("user.alice.Sent", "user.alice.Sent.Old", "user.bob"):
        (store.path(name) / "cyrus.index").unlink()
    out = store.reconstruct("-q", "-r",
                            store.ext("user.alice")).stdout.decode()
    assert store.ext("user.alice.Sent") + ": cyrus.index missing" in out
    assert store.ext("user.alice.Sent.Old") + ": cyrus.index missing" in out
    assert "bob" not in out
    res = store.reconstruct("-q", store.ext("user.bob"))
    assert "cyrus.index missing" in res.stdout.decode()
    assert store.reconstruct("-q").stdout == b""


def test_find_adopts_unknown_directory(store):
    store.make("user.alice", MSG1)
    d = store.path("user.alice") / "Lost"
    d.mkdir()
    give_to_tool_user(d)
    f = d / "1."
    f.write_bytes(MSG2)
    give_to_tool_user(f)
    out = store.reconstruct("-q", "-f",
                            store.ext("user.alice")).stdout.decode()
    assert store.ext("user.alice.Lost") + ": directory without" in out
    info = json.loads(store.run("mbpath", "-j",
                                store.ext("user.alice.Lost")).stdout)
    assert info["datapath"] == str(d)
    _, recs = records(store.examine("user.alice.Lost"))
    assert len(recs) == 1 and '"second"' in recs[0]["Envelope"]
    assert store.reconstruct("-q", "-r", "-f",
                             store.ext("user.alice")).stdout == b""


def test_find_without_names_adopts_by_header(store):
    store.make("user.alice", MSG1)
    store.make("user.alice.Work", MSG2)
    uid_before = json.loads(store.run(
        "mbpath", "-j", store.ext("user.alice.Work")).stdout)["uniqueid"]
    db = store.conf_dir / "mailboxes.db"
    store.run("cyr_dbtool", db, "twoskip", "delete", "user.alice.Work")
    res = store.run("mbpath", store.ext("user.alice.Work"), check=False)
    assert res.returncode != 0
    out = store.reconstruct("-q", "-f").stdout.decode()
    assert "adopted" in out
    info = json.loads(store.run("mbpath", "-j",
                                store.ext("user.alice.Work")).stdout)
    assert info["uniqueid"] == uid_before


def test_mbpath_paths_and_json(store):
    store.make("user.alice", MSG1)
    store.make("user.alice.Sent")
    d = store.path("user.alice")
    assert d == store.part / "user" / "alice"
    assert store.path("user.alice.Sent") == d / "Sent"
    res = store.run("mbpath", "-u", "alice")
    assert res.stdout.decode().strip() == str(d)
    res = store.run("mbpath", "-p", "user/alice/Sent")
    assert res.stdout.decode().strip() == str(d / "Sent")
    info = json.loads(store.run("mbpath", "-j",
                                store.ext("user.alice")).stdout)
    assert info["datapath"] == str(d) and info["metapath"] == str(d)
    assert info["partition"] == "default" and info["type"] == "mail"
    hdr = (d / "cyrus.header").read_text()
    assert "uniqueid\t%s\n" % info["uniqueid"] in hdr
    res = store.run("mbpath", store.ext("user.nobody"), check=False)
    assert res.returncode == 1 and res.stderr
    res = store.run("mbpath", "-q", store.ext("user.nobody"), check=False)
    assert res.returncode == 1 and res.stderr == b""


def test_mbexamine_shows_records(store):
    store.make("user.alice", MSG1, MSG2, flags=FLAG_SEEN, date=1700000000)
    text = store.examine("user.alice")
    head, recs = records(text)
    assert head["UIDNEXT"] == "3" and head["Exists"] == "2"
    assert len(recs) == 2
    assert recs[0]["Flags"] == "\\Seen"
    assert recs[0]["Size"] == str(len(MSG1))
    assert recs[0]["Internal date"].startswith("2023-11-14T22:13:20Z")
    assert len(recs[0]["GUID"]) == 40
    assert recs[0]["Envelope"].startswith('("Mon, 1 Jan 2024')
    assert recs[1]["Bodystructure"].startswith('("TEXT" "PLAIN"')
    _, one = records(store.examine("user.alice", "-u", "2"))
    assert [r["UID"] for r in one] == ["2"]
    _, one = records(store.examine("user.alice", "-s", "1"))
    assert [r["UID"] for r in one] == ["1"]
    res = store.run("mbexamine", store.ext("user.nobody"), check=False)
    assert res.returncode == 1


@pytest.fixture
def metastore():
    top = tempfile.mkdtemp(prefix="colstore", dir="/tmp")
    os.chmod(top, 0o755)
    give_to_tool_user(top)
    s = Store(pathlib.Path(top), False)
    s.meta = s.top / "meta"
    s.meta.mkdir()
    give_to_tool_user(s.meta)
    with open(s.conf, "a") as f:
        f.write("metapartition-default: %s\n" % s.meta)
        f.write("metapartition_files: header index cache\n")
    yield s
    shutil.rmtree(top, ignore_errors=True)


def test_metapartition_files_and_tools(metastore):
    s = metastore
    s.make("user.alice", MSG1, MSG2, flags=FLAG_SEEN)
    data = s.path("user.alice")
    meta = pathlib.Path(s.run("mbpath", "-m", "user.alice")
                        .stdout.decode().strip())
    assert data == s.part / "user" / "alice"
    assert meta == s.meta / "user" / "alice"
    info = json.loads(s.run("mbpath", "-j", "user.alice").stdout)
    assert info["datapath"] == str(data) and info["metapath"] == str(meta)
    for name in ("cyrus.header", "cyrus.index", "cyrus.cache"):
        assert (meta / name).exists() and not (data / name).exists()
    assert (data / "1.").exists() and not (meta / "1.").exists()

    # A healthy store: reconstruct -q -G and quota -f -q say nothing.
    res = s.reconstruct("-q", "-G")
    assert res.stdout == b"" and res.stderr == b""

    # Lost metadata is rebuilt where it belongs.
    (meta / "cyrus.index").unlink()
    (meta / "cyrus.cache").unlink()
    out = s.reconstruct("-q", "user.alice").stdout.decode()
    assert "cyrus.index missing: rebuilt" in out
    assert (meta / "cyrus.index").exists()
    assert not (data / "cyrus.index").exists()
    text = s.examine("user.alice")
    assert "  Metadata path: %s\n" % meta in text
    head, recs = records(text)
    assert head["Exists"] == "2" and [r["UID"] for r in recs] == ["1", "2"]
    assert s.reconstruct("-q", "-G").stdout == b""

    # The whole metadata directory lost: header recreated from
    # mailboxes.db, on the metapartition.
    shutil.rmtree(meta)
    out = s.reconstruct("-q", "user.alice").stdout.decode()
    assert "cyrus.header" in out
    assert (meta / "cyrus.header").exists()
    assert not (data / "cyrus.header").exists()
    head, recs = records(s.examine("user.alice"))
    assert head["Exists"] == "2"
