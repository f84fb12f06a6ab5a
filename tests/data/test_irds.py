"""ir_datasets access shared by concurrent jobs (a multirun on a fresh machine)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.helpers import ROOT, shared

READER = """
import sys
sys.path.insert(0, {src!r})
from dear.data import irds
from dear.data.texts import DocStore
n = sum(1 for _ in irds.docs_iter("beir/scifact/test"))  # BM25 indexing's path: builds the store too
docs = DocStore("beir/scifact/test").get_many(sys.argv[1:])
print(n, repr(sorted(docs.items())))
"""


def test_concurrent_jobs_on_a_fresh_home_read_whole_documents(tmp_path):
    """Four processes iterate and open the same never-built docstore at once: one builds it under
    the lock, every one reads the same, complete documents (ir_datasets alone lets two jobs both
    build it, one appending a second copy, and others read a half-written store: 'Invalid size'
    errors in the toy sweep)."""
    mirror = shared("ir_datasets", "beir", "scifact").parents[1]
    home = tmp_path / "home"
    shutil.copytree(mirror, home)
    assert not list(home.rglob("docs.pklz4*"))  # really never built
    ids = ["4983", "5836", "7912", "18670", "19238", "198309074"]
    env = {"IR_DATASETS_HOME": str(home), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    code = READER.format(src=str(ROOT / "src"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *ids],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert len({out for out, _ in outs}) == 1 and all(i in outs[0][0] for i in ids)
    assert outs[0][0].startswith("5183 ")  # every document once: no job appended a second copy


MIRROR_READER = """
import hashlib, sys, time
sys.path.insert(0, {src!r})
from dear.data import irds
while time.time() < float(sys.argv[1]):  # start together
    time.sleep(0.01)
irds.use_home(sys.argv[2], sys.argv[3])
print(hashlib.sha256(open(sys.argv[2] + "/beir/big.bin", "rb").read()).hexdigest())
"""


def test_concurrent_jobs_filling_a_home_from_the_mirror_read_whole_files(tmp_path):
    """Four jobs fill one fresh home from the mirror at once: a job that finds a file already there
    (another job's copy) reads it whole, never a copy still being written."""
    import hashlib
    import os
    import time

    mirror = tmp_path / "mirror" / "beir"
    mirror.mkdir(parents=True)
    (mirror / "big.bin").write_bytes(os.urandom(64 << 20))
    expected = hashlib.sha256((mirror / "big.bin").read_bytes()).hexdigest()
    code, start = MIRROR_READER.format(src=str(ROOT / "src")), time.time() + 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(start), str(tmp_path / "home"), str(mirror.parent)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == [expected] * 4
    # no temp copies left
    assert sorted(p.name for p in (tmp_path / "home" / "beir").iterdir()) == ["big.bin"]
