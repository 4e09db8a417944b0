"""mailgen: a seeded, deterministic generator of realistic test mail.

message(seed, n) builds message number n of the series `seed`: plain
text, multipart/alternative (text + HTML), multipart/mixed with one or
two base64 attachments (random bytes, as a PDF or image would be),
quoted-printable bodies, RFC 2047 subjects and names, long reference
chains, and now and then a message from the odd-message corpus that
ships with Python's test suite (broken MIME, odd boundaries, 8-bit
headers).  The same (seed, n) always gives the same bytes, so every
server under test is fed the same mail and any n can be built alone,
in any process.

    import mailgen
    data = mailgen.message(1, 42)                 # varied size
    data = mailgen.message(1, 42, size=100_000)   # about 100 KB
    python3 tools/bench/mailgen.py -n 5 -s 7      # print five messages
"""

import base64
import glob
import os
import random
import re

__all__ = ["message", "corpus", "WORDS", "RARE_WORD"]

CORPUS_DIR = "/usr/lib/python3.11/test/test_email/data"

WORDS = ("the of and to in is that for it as was with be by on not he this "
         "are or his from at which but have an they you were her she there "
         "been one all we their has would when if so no will more can said "
         "meeting budget quarterly report invoice release server mailbox "
         "deadline project review schedule contract shipment holiday team "
         "customer proposal draft agenda minutes travel expenses payroll "
         "migration backup outage upgrade kernel network firewall printer "
         "conference lunch birthday newsletter discount order "
         "delivery").split()

# A word that appears in the body of about one message in 100, so a body
# SEARCH has a few hits to return and must still read every message.
RARE_WORD = "zebrafish"

FIRST = ("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory "
         "Niaj Olivia Peggy Rupert Sybil Trent Victor Walter Zoe").split()
LAST = ("Smith Jones Müller García Rossi Dubois Kowalski Nguyen Tanaka "
        "Johansson O'Brien Novak Silva Ivanova Cohen").split()
DOMAINS = ("example.com example.org example.net mail.example.de "
           "lists.example.io corp.example.co.uk").split()
ATTACH = (("application/pdf", "pdf"), ("image/png", "png"),
          ("image/jpeg", "jpg"), ("application/zip", "zip"),
          ("application/vnd.openxmlformats-officedocument."
           "spreadsheetml.sheet", "xlsx"))

_corpus = None


def corpus():
    """The odd messages of Python's email test data, CRLF line ends, as a
    list of bytes (empty when the directory is missing)."""
    global _corpus
    if _corpus is None:
        _corpus = []
        for path in sorted(glob.glob(os.path.join(CORPUS_DIR, "msg_*.txt"))):
            with open(path, "rb") as f:
                data = f.read().replace(b"\r\n", b"\n")
            if b"\n\n" not in data:
                continue
            # Some files start with an mbox "From " line; a delivered
            # message does not.
            if data.startswith(b"From "):
                data = data.split(b"\n", 1)[1]
            _corpus.append(data.replace(b"\n", b"\r\n"))
    return _corpus


def _encode_word(text):
    """RFC 2047 B-encoding when the text is not ASCII."""
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def _person(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    addr = f"{first.lower()}.{rng.randrange(100)}@{rng.choice(DOMAINS)}"
    return f"{_encode_word(first + ' ' + last)} <{addr}>"


def _sentence(rng, words):
    s = " ".join(rng.choice(WORDS) for _ in range(words))
    return s[0].upper() + s[1:] + "."


def _paragraphs(rng, size, rare):
    """Plain text wrapped at 72 columns, about `size` bytes."""
    out, total, line = [], 0, ""
    while total < size:
        s = _sentence(rng, rng.randrange(5, 16))
        if rare and not out:
            s = f"About the {RARE_WORD} order: " + s
        for word in s.split():
            if len(line) + len(word) + 1 > 72:
                out.append(line)
                total += len(line) + 2
                line = word
            else:
                line = (line + " " + word) if line else word
        if rng.random() < 0.2:
            out.extend([line, ""])
            total += len(line) + 4
            line = ""
    out.append(line)
    return "\r\n".join(out) + "\r\n"


def _b64(data):
    text = base64.b64encode(data).decode()
    lines = [text[i:i + 76] for i in range(0, len(text), 76)]
    return "\r\n".join(lines) + "\r\n"


def _headers(rng, n, seed, subject, msgid):
    day = 1 + n % 28
    hdr = [
        f"Return-Path: <bounce-{n}@{rng.choice(DOMAINS)}>",
        f"Received: from mx{rng.randrange(9)}.example.net "
        f"(mx.example.net [192.0.2.{rng.randrange(1, 255)}])\r\n"
        f"\tby mail.bench.test with ESMTPS id {seed:x}{n:08x};\r\n"
        f"\tMon, {day:02d} Jun 2025 {n % 24:02d}:{n % 60:02d}:07 +0000",
        f"From: {_person(rng)}",
        "To: " + ", ".join(_person(rng) for _ in range(rng.randrange(1, 4))),
    ]
    if rng.random() < 0.3:
        hdr.append(f"Cc: {_person(rng)}")
    hdr.append(f"Subject: {_encode_word(subject)}")
    hdr.append(f"Date: Mon, {day:02d} Jun 2025 {n % 24:02d}:{n % 60:02d}:00 "
               f"{rng.choice(['+0000', '+0200', '-0500', '+0900'])}")
    if msgid:
        hdr.append(f"Message-ID: <{seed}.{n}.{rng.randrange(1 << 30)}"
                   f"@bench.example>")
    if rng.random() < 0.4:
        refs = " ".join(f"<{seed}.{rng.randrange(n + 1)}@bench.example>"
                        for _ in range(rng.randrange(1, 8)))
        hdr.append("References: " + refs)
        hdr.append("In-Reply-To: " + refs.split()[-1])
    if rng.random() < 0.2:
        hdr.append(f"List-Id: <team{rng.randrange(5)}.lists.example.io>")
    hdr.append("MIME-Version: 1.0")
    return hdr


def message(seed, n, size=None, msgid=True):
    """Message n of series `seed` as bytes with CRLF line ends.  With
    `size`, the message is about that many bytes (a text part, plus an
    attachment when size is over 8 KB); without, sizes vary from 1 KB to
    a few hundred KB, median about 4 KB.  msgid=False leaves out the
    Message-ID header so the caller can add a unique one."""
    rng = random.Random(seed * 1_000_003 + n)
    odd = corpus()
    if size is None and odd and rng.random() < 0.02:
        # A corpus message comes up many times in a long series; its own
        # Message-ID would make servers drop the repeats as duplicate
        # deliveries, so each copy gets one of its own.
        data = odd[rng.randrange(len(odd))]
        data = re.sub(rb"(?im)^message-id:[^\r]*\r\n", b"", data, count=1)
        mid = b"Message-ID: <%d.%d.odd@bench.example>\r\n" % (seed, n)
        return (mid if msgid else b"") + data
    subject = _sentence(rng, rng.randrange(3, 9))[:-1]
    if rng.random() < 0.1:
        subject = "Re: Grüße zum " + subject
    rare = rng.random() < 0.01
    hdr = _headers(rng, n, seed, subject, msgid)

    if size is not None:
        text_size = min(size, 6000)
        attach_size = max(0, size - text_size - 800) * 3 // 4
        kind = "mixed" if attach_size else "plain"
    else:
        text_size = int(rng.lognormvariate(7.6, 0.8))
        r = rng.random()
        kind = "plain" if r < 0.5 else "alternative" if r < 0.75 else "mixed"
        attach_size = int(rng.lognormvariate(10.0, 1.0)) if kind == "mixed" \
            else 0
        attach_size = min(attach_size, 400_000)

    text = _paragraphs(rng, text_size, rare)
    boundary = f"=_bench_{seed}_{n}_{rng.randrange(1 << 24):06x}"
    if kind == "plain":
        hdr.append("Content-Type: text/plain; charset=utf-8")
        hdr.append("Content-Transfer-Encoding: 8bit")
        body = text
    elif kind == "alternative":
        hdr.append(f'Content-Type: multipart/alternative; '
                   f'boundary="{boundary}"')
        html = "<html><body><p>" + text.replace("\r\n\r\n", "</p><p>") + \
            "</p></body></html>\r\n"
        body = (f"This is a multi-part message in MIME format.\r\n\r\n"
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: 7bit\r\n\r\n{text}\r\n"
                f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                f"{html.replace('=', '=3D')}\r\n--{boundary}--\r\n")
    else:
        hdr.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        parts = [f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8"
                 f"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}"]
        count = 1 if size is not None or rng.random() < 0.7 else 2
        for i in range(count):
            ctype, ext = rng.choice(ATTACH)
            data = rng.randbytes(max(1, attach_size // count))
            name = f"{rng.choice(WORDS)}-{n}-{i}.{ext}"
            parts.append(f"--{boundary}\r\nContent-Type: {ctype}; "
                         f'name="{name}"\r\nContent-Disposition: attachment; '
                         f'filename="{name}"\r\n'
                         f"Content-Transfer-Encoding: base64\r\n\r\n"
                         + _b64(data))
        body = "".join(parts) + f"--{boundary}--\r\n"
    return ("\r\n".join(hdr) + "\r\n\r\n" + body).encode()


def main():
    import argparse
    import sys
    ap = argparse.ArgumentParser(description="print generated messages")
    ap.add_argument("-n", type=int, default=1, help="how many")
    ap.add_argument("-s", "--seed", type=int, default=1)
    ap.add_argument("--size", type=int, default=None)
    args = ap.parse_args()
    for i in range(args.n):
        sys.stdout.buffer.write(message(args.seed, i, args.size) + b"\r\n")


if __name__ == "__main__":
    main()
