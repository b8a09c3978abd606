"""A ``files`` target that cannot be marked fails ``apply`` with its policy file and line, whatever ``fail`` says."""

from __future__ import annotations

import pytest

from runwatch.policy.enforce import EnforcementError

pytestmark = pytest.mark.kernel

SECRET = b"token-43\n"


@pytest.mark.parametrize(("entry", "why"), [
    ("  immutable: [/tmp/keep]\n  protect:\n    - path: /nope/dir/token\n", "files.protect /nope/dir/token"),
    ("  immutable: [/tmp/keep]\n  protect:\n    - path: /run/secrets/\n", "files.protect /run/secrets/"),
    ("  immutable:\n    - /tmp/keep\n    - /dev/null\n", "files.immutable /dev/null"),
    ("  immutable:\n    - /tmp/keep\n    - /tmp\n", "files.immutable /tmp"),
], ids=["no-parent", "no-dir", "device", "directory"])
@pytest.mark.parametrize("fail", ["closed", "open"])
def test_a_target_that_cannot_be_marked_is_a_located_error(  # type: ignore[no-untyped-def]
        runc_container, enforcers, policy, entry, why, fail):
    c = runc_container(name="bad-target")
    c.start()
    assert c.exec(["/bin/busybox", "touch", "/tmp/keep"]).returncode == 0
    text = f"id: bad-t\nmode: enforce\nfail: {fail}\nfiles:\n{entry}"
    reasons = {
        "files.protect /nope/dir/token": "neither /nope/dir/token nor its directory /nope/dir exists in the container",
        "files.protect /run/secrets/": "directory /run/secrets/ does not exist in the container",
        "files.immutable /dev/null": "/dev/null is a character device, not a regular file",
        "files.immutable /tmp": "/tmp is a directory: write /tmp/ to cover what is below it",
    }
    with pytest.raises(EnforcementError) as info:
        enforcers.apply(c, policy(text))
    assert str(info.value) == (f"test-policy.yaml:8: policy 'bad-t' {why} cannot be enforced in container "
                               f"{c.id}: {reasons[why]}")
    assert enforcers.applied() == {}
    assert c.exec(["/bin/busybox", "sh", "-c", "echo x >> /tmp/keep"]).returncode == 0  # nothing left marked


def test_a_literal_file_not_there_yet_is_covered_once_created(runc_container, enforcers, decisions, policy):  # type: ignore[no-untyped-def]
    c = runc_container(name="later-file", secrets={"token": SECRET})
    c.start()
    assert enforcers.apply(c, policy("id: later\nmode: enforce\nfiles:\n  protect:\n    - path: /run/secrets/late\n"
                                     "      readers: [/usr/bin/head, /usr/bin/cp]\n")) == []
    out = c.exec(["/bin/busybox", "sh", "-c", "echo new-47 > /tmp/x; /usr/bin/cp /tmp/x /run/secrets/late; "
                  "/bin/busybox cat /run/secrets/late; /bin/busybox cat /run/secrets/token; "
                  "/usr/bin/head /run/secrets/late"])
    assert out.stdout == b"token-43\nnew-47\n" and out.stderr.count(b"Operation not permitted") == 1, out.stderr
    got = decisions.wait(lambda d: d.layer == "file", 3)
    assert [(d.verdict, d.rule, d.target, d.exe) for d in got] == [
        ("allow", "files.protect:/run/secrets/late", "/run/secrets/late", "/usr/bin/cp"),
        ("deny", "files.protect:/run/secrets/late", "/run/secrets/late", "/bin/busybox"),
        ("allow", "files.protect:/run/secrets/late", "/run/secrets/late", "/usr/bin/head")]
