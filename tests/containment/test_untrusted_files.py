"""Files in the suite's reach are read without following links, without blocking, and
bounded; anything but a regular file reads as None, and nothing raises."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.containment.untrusted_files import UntrustedDir

SECRET = "BROKER_PASSWORD=hunter2\n"


@pytest.fixture
def reach(tmp_path: Path) -> Path:
    """The directory the suite can write into."""
    path = tmp_path / "reach"
    path.mkdir()
    (path / "ok.txt").write_text("honest output\n")
    return path


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file of the worker's that the suite must never get the worker to read."""
    path = tmp_path / "worker-secret.env"
    path.write_text(SECRET)
    return path


def finishes_quickly(read: Callable[[], object], seconds: float = 5.0) -> object:
    """Run `read` in a thread; fail (instead of hanging the suite) if it blocks."""
    box: list[object] = []
    worker = threading.Thread(target=lambda: box.append(read()), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the read blocked"
    assert time.monotonic() - started < seconds
    return box[0]


def test_a_regular_file_is_read_up_to_its_limit(reach: Path) -> None:
    with UntrustedDir(reach) as files:
        assert files.read_text("ok.txt", 1_000) == "honest output\n"
        assert files.read_bytes("ok.txt", 6) == b"honest"
        assert files.read_bytes("ok.txt", 0) == b""
        assert files.tail("ok.txt", 7) == "output\n"


def test_an_empty_file_reads_as_empty_not_none(reach: Path) -> None:
    (reach / "empty").touch()
    with UntrustedDir(reach) as files:
        assert files.read_bytes("empty", 10) == b""
        assert files.read_text("empty", 10) == ""


def test_a_huge_file_is_read_only_up_to_the_limit(reach: Path) -> None:
    huge = reach / "huge.log"
    with huge.open("wb") as handle:
        handle.write(b"head")
        handle.truncate(64 * 1024**3)  # sparse: 64 GiB without the disk
        handle.seek(-4, os.SEEK_END)
        handle.write(b"tail")
    with UntrustedDir(reach) as files:
        head = finishes_quickly(lambda: files.read_bytes("huge.log", 1024 * 1024))
        end = finishes_quickly(lambda: files.tail("huge.log", 10))
    assert isinstance(head, bytes) and len(head) == 1024 * 1024 and head.startswith(b"head")
    assert end == "\0" * 6 + "tail"


def test_a_fifo_without_a_writer_reads_as_none_at_once(reach: Path) -> None:
    os.mkfifo(reach / "junit.xml")
    with UntrustedDir(reach) as files:
        assert finishes_quickly(lambda: files.read_text("junit.xml", 100)) is None
        assert finishes_quickly(lambda: files.tail("junit.xml", 100)) is None


def test_a_fifo_with_a_writer_reads_as_none_at_once(reach: Path) -> None:
    fifo = reach / "progress"
    os.mkfifo(fifo)
    reader_side = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b"forged bytes")
        with UntrustedDir(reach) as files:
            assert finishes_quickly(lambda: files.read_bytes("progress", 100)) is None
    finally:
        os.close(writer)
        os.close(reader_side)


def test_a_symlink_to_a_secret_is_not_followed(reach: Path, secret: Path) -> None:
    (reach / "junit.xml").symlink_to(secret)
    (reach / "relative").symlink_to("../worker-secret.env")
    with UntrustedDir(reach) as files:
        assert files.read_text("junit.xml", 1_000) is None
        assert files.tail("relative", 1_000) is None


def test_a_symlinked_parent_directory_is_not_followed(
    reach: Path, secret: Path, tmp_path: Path
) -> None:
    (reach / "probe").symlink_to(tmp_path)
    (reach / "real").mkdir()
    (reach / "real" / "record.json").write_text("{}")
    with UntrustedDir(reach) as files:
        assert files.read_text("probe/worker-secret.env", 1_000) is None
        assert files.read_text("real/record.json", 1_000) == "{}"


def test_a_symlink_to_a_device_is_not_followed(reach: Path) -> None:
    (reach / "zero").symlink_to("/dev/zero")
    (reach / "tty").symlink_to("/dev/tty")
    with UntrustedDir(reach) as files:
        assert finishes_quickly(lambda: files.read_bytes("zero", 1_000)) is None
        assert finishes_quickly(lambda: files.read_bytes("tty", 1_000)) is None


def test_a_device_node_in_place_of_the_file_is_not_read(reach: Path) -> None:
    try:
        os.mknod(reach / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))  # like /dev/zero
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    with UntrustedDir(reach) as files:
        assert finishes_quickly(lambda: files.read_bytes("zero", 1_000)) is None
        assert finishes_quickly(lambda: files.tail("zero", 1_000)) is None


def test_a_directory_in_place_of_the_file_reads_as_none(reach: Path) -> None:
    (reach / "junit.xml").mkdir()
    with UntrustedDir(reach) as files:
        assert files.read_text("junit.xml", 100) is None


def test_a_hard_link_to_a_worker_file_reads_as_none(reach: Path, secret: Path) -> None:
    os.link(secret, reach / "junit.xml")
    with UntrustedDir(reach) as files:
        assert files.read_text("junit.xml", 1_000) is None


def test_a_missing_file_and_names_that_are_not_plain_read_as_none(reach: Path) -> None:
    with UntrustedDir(reach) as files:
        for name in ("missing", "", ".", "..", "../reach/ok.txt", "/etc/passwd", "a//b", "x\0y"):
            assert files.read_text(name, 100) is None, name
        assert files.read_text("ok.txt", -1) is None


def test_replacing_the_directory_after_it_was_opened_does_not_redirect_reads(
    reach: Path, tmp_path: Path
) -> None:
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "ok.txt").write_text("forged\n")
    with UntrustedDir(reach) as files:
        reach.rename(tmp_path / "moved-away")
        reach.symlink_to(forged)
        assert files.read_text("ok.txt", 100) == "honest output\n"


def test_the_tail_drops_a_character_cut_at_its_start(reach: Path) -> None:
    (reach / "out").write_text("ab✓cd", encoding="utf-8")  # ✓ is 3 bytes
    with UntrustedDir(reach) as files:
        assert files.tail("out", 4) == "cd"  # the last two bytes of ✓, then "cd"
        assert files.tail("out", 5) == "✓cd"


def test_the_directory_itself_must_not_be_a_symlink(reach: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(reach)
    with pytest.raises(OSError):
        UntrustedDir(tmp_path / "link")


def test_after_close_reads_give_none_and_the_fd_is_released(reach: Path) -> None:
    files = UntrustedDir(reach)
    fd = files._fd
    assert fd is not None
    files.close()
    files.close()  # twice is fine
    assert files.read_text("ok.txt", 100) is None
    with pytest.raises(OSError):
        os.fstat(fd)


def test_reads_leave_no_fd_open(reach: Path, secret: Path) -> None:
    (reach / "sub").mkdir()
    (reach / "sub" / "f").write_text("x")
    (reach / "link").symlink_to(secret)
    before = len(os.listdir("/proc/self/fd"))
    with UntrustedDir(reach) as files:
        for _ in range(50):
            files.read_text("sub/f", 10)
            files.read_text("link", 10)
            files.read_text("sub/missing", 10)
    assert len(os.listdir("/proc/self/fd")) == before
