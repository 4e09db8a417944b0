#!/usr/bin/python3
"""popbench: how fast pop3d serves a download.

Starts a throw-away instance (tests/columba.py) with imapd and pop3d,
fills one INBOX with --count messages (imap/mkmbox), then downloads
them with Python's poplib the way a mail client does (UIDL, LIST, then
RETR one by one) and prints messages per second.  A reply that waited
on a delayed ACK would show up as ~25 or ~40 messages/s; thousands per
second means every reply left at once.

    COLUMBA_BUILD=/work/build/x tools/bench/popbench.py --count 2000
"""

import argparse
import imaplib
import os
import poplib
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))

from columba import Instance, free_port, program  # noqa: E402

SERVERNAME = "popbench.test"
USER, PASSWORD = "bench", "bench-pw"


def message(n, size):
    body_line = ("x" * 70 + "\r\n").encode()
    body = body_line * max(1, size // len(body_line))
    return (f"From: bench@example.com\r\nTo: {USER}@example.com\r\n"
            f"Subject: message {n}\r\nMessage-ID: <b{n}@example.com>\r\n"
            f"\r\n").encode() + body


def fill(inst, iport, count, size):
    """Log in once over IMAP (autocreating the INBOX), then append the
    messages with mkmbox, which skips the network and the IMAP parser."""
    m = imaplib.IMAP4("127.0.0.1", iport, timeout=30)
    m.login(USER, PASSWORD)
    m.logout()
    msgdir = inst.path("messages")
    os.makedirs(msgdir)
    files = []
    for i in range(count):
        path = os.path.join(msgdir, f"{i}.eml")
        with open(path, "wb") as f:
            f.write(message(i, size))
        files.append(path)
    inst.hand_over()
    subprocess.run([program("imap/mkmbox"), "-C", inst.imapd_conf,
                    "user." + USER] + files, check=True,
                   stdout=subprocess.DEVNULL)


def download(port, rounds):
    """Best of `rounds` full downloads; returns (seconds, messages)."""
    best = None
    n = 0
    for _ in range(rounds):
        p = poplib.POP3("127.0.0.1", port, timeout=30)
        p.user(USER)
        p.pass_(PASSWORD)
        start = time.perf_counter()
        p.uidl()
        n = len(p.list()[1])
        for i in range(1, n + 1):
            p.retr(i)
        elapsed = time.perf_counter() - start
        p.quit()
        best = elapsed if best is None else min(best, elapsed)
    return best, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=2000,
                    help="approximate message size in bytes")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("saslpasswd2"):
        sys.exit("popbench: needs saslpasswd2 (sasl2-bin)")

    iport, port = free_port(), free_port()
    inst = Instance(services=[
        ("imap", {"cmd": program("imap/imapd"),
                  "listen": f"127.0.0.1:{iport}"}),
        ("pop3", {"cmd": program("imap/pop3d"),
                  "listen": f"127.0.0.1:{port}"})], name="popbench")
    sasldb = inst.path("sasldb2")
    subprocess.run(["saslpasswd2", "-c", "-p", "-f", sasldb, "-u",
                    SERVERNAME, USER], input=PASSWORD.encode(), check=True)
    os.chmod(sasldb, 0o644)
    inst.options.update({
        "servername": SERVERNAME, "allowplaintext": "yes",
        "autocreate_quota": "0", "sasl_pwcheck_method": "auxprop",
        "sasl_auxprop_plugin": "sasldb", "sasl_sasldb_path": sasldb,
        "sasl_mech_list": "PLAIN",
    })
    inst.write_imapd_conf()
    with inst:
        start = time.perf_counter()
        fill(inst, iport, args.count, args.size)
        print(f"filled {args.count} messages of ~{args.size} bytes in "
              f"{time.perf_counter() - start:.1f}s")
        elapsed, n = download(port, args.rounds)
    print(f"downloaded {n} messages in {elapsed:.3f}s: "
          f"{n / elapsed:.0f} messages/s")


if __name__ == "__main__":
    main()
