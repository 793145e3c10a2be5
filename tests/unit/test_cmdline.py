"""The Raspberry Pi cmdline.txt edit for k3s: only missing tokens, one line, idempotent."""

import os

import pytest

from tests.conftest import REPO, load_by_path

k3s = load_by_path("k3s_mod_cmdline", REPO / "_modules" / "k3s.py")
k3s_state = load_by_path("k3s_state_cmdline", REPO / "_states" / "k3s.py")

TOKENS = ["cgroup_memory=1", "cgroup_enable=memory"]
# Raspberry Pi OS bookworm's stock /boot/firmware/cmdline.txt (PARTUUID differs per image)
BOOKWORM = (
    "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait "
    "quiet init=/usr/lib/raspberrypi-sys-mods/firstboot"
)


@pytest.fixture
def opts():
    return {"test": False}


@pytest.fixture
def configure_loader_modules(opts):
    funcs = {f"k3s.{name}": getattr(k3s, name) for name in ("cmdline_check", "cmdline_set", "merge_cmdline")}
    funcs["k3s.join_args"] = k3s.join_args
    return {k3s: {"__salt__": {}}, k3s_state: {"__salt__": funcs, "__opts__": opts}}


@pytest.fixture
def cmdline(tmp_path):
    path = tmp_path / "cmdline.txt"
    path.write_text(BOOKWORM + "\n")
    return path


def test_missing_tokens_are_appended_everything_else_kept_in_order():
    new = k3s.merge_cmdline(BOOKWORM, TOKENS)
    assert new == BOOKWORM + " cgroup_memory=1 cgroup_enable=memory"


def test_nothing_changes_when_the_tokens_are_there_whatever_their_position():
    line = "cgroup_enable=memory console=tty1 cgroup_memory=1 root=/dev/mmcblk0p2 rootwait"
    assert k3s.merge_cmdline(line, TOKENS) is line
    once = k3s.merge_cmdline(BOOKWORM, TOKENS)
    assert k3s.merge_cmdline(once, TOKENS) is once


def test_only_the_missing_token_is_added():
    line = BOOKWORM + " cgroup_memory=1"
    assert k3s.merge_cmdline(line, TOKENS) == line + " cgroup_enable=memory"


def test_a_repeatable_parameter_for_another_controller_is_kept():
    line = "console=tty1 cgroup_enable=cpuset rootwait"
    assert k3s.merge_cmdline(line, TOKENS) == line + " cgroup_memory=1 cgroup_enable=memory"


def test_a_single_valued_parameter_with_another_value_is_replaced_in_place():
    line = "console=tty1 cgroup_memory=0 rootwait"
    assert k3s.merge_cmdline(line, TOKENS) == "console=tty1 cgroup_memory=1 rootwait cgroup_enable=memory"


def test_a_cgroup_disable_of_the_same_controller_is_dropped():
    line = "console=tty1 cgroup_disable=memory cgroup_memory=1 rootwait"
    assert k3s.merge_cmdline(line, TOKENS) == "console=tty1 cgroup_memory=1 rootwait cgroup_enable=memory"


def test_tokens_with_whitespace_are_refused():
    with pytest.raises(k3s.CommandExecutionError, match="whitespace"):
        k3s.merge_cmdline(BOOKWORM, ["cgroup_enable=memory quiet"])


def test_set_writes_one_line_only_when_needed(cmdline):
    assert k3s.cmdline_check(str(cmdline), TOKENS) == {"old": BOOKWORM, "new": BOOKWORM + " cgroup_memory=1 cgroup_enable=memory"}
    assert cmdline.read_text() == BOOKWORM + "\n"  # check never writes
    done = k3s.cmdline_set(str(cmdline), TOKENS)
    assert done["new"] != done["old"]
    assert cmdline.read_text() == done["new"] + "\n"
    assert cmdline.read_text().count("\n") == 1
    stat = cmdline.stat()
    again = k3s.cmdline_set(str(cmdline), TOKENS)
    assert again["old"] == again["new"]
    assert (cmdline.stat().st_ino, cmdline.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert not list(cmdline.parent.glob("*.salt-new"))


def test_a_file_with_several_lines_is_not_touched(tmp_path):
    path = tmp_path / "cmdline.txt"
    path.write_text("console=tty1 root=/dev/mmcblk0p2\nquiet\n")
    with pytest.raises(k3s.CommandExecutionError, match="2 non-empty lines"):
        k3s.cmdline_set(str(path), TOKENS)
    assert path.read_text() == "console=tty1 root=/dev/mmcblk0p2\nquiet\n"


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(k3s.CommandExecutionError, match="cannot read"):
        k3s.cmdline_check(str(tmp_path / "nope.txt"), TOKENS)


def test_state_in_test_mode_reports_the_change_and_writes_nothing(cmdline, opts):
    opts["test"] = True
    ret = k3s_state.cmdline(str(cmdline), TOKENS)
    assert ret["result"] is None
    assert ret["changes"]["new"].endswith("cgroup_memory=1 cgroup_enable=memory")
    assert "would add" in ret["comment"] and "cgroup_memory=1 cgroup_enable=memory" in ret["comment"]
    assert cmdline.read_text() == BOOKWORM + "\n"


def test_state_changes_once_then_reports_nothing_so_the_reboot_runs_once(cmdline):
    first = k3s_state.cmdline(str(cmdline), TOKENS)
    assert first["result"] is True and first["changes"], first
    assert "reboot" in first["comment"]
    second = k3s_state.cmdline(str(cmdline), TOKENS)
    assert second == {"name": str(cmdline), "changes": {}, "result": True,
                      "comment": f"{cmdline} already has cgroup_memory=1 cgroup_enable=memory"}


def test_state_fails_on_an_unwritable_file(cmdline):
    if os.geteuid() == 0:
        # root ignores file modes: make the directory unusable for the temporary file instead
        target = cmdline.parent / "sub" / "cmdline.txt"
        target.parent.mkdir()
        target.write_text(BOOKWORM + "\n")
        (target.parent / "cmdline.txt.salt-new").mkdir()  # the temporary name is taken by a directory
        path = target
    else:
        cmdline.chmod(0o444)
        cmdline.parent.chmod(0o555)
        path = cmdline
    ret = k3s_state.cmdline(str(path), TOKENS)
    assert ret["result"] is False
    assert "cannot write" in ret["comment"]
