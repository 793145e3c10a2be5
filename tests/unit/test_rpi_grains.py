"""
Unit tests for the Raspberry Pi hardware grains (``_grains/rpi.py``).

The module is imported by path (``_grains`` is not a package) and its path
constants are pointed at fixture files captured on real boards
(``fixtures/rpi/README.md`` says where each one comes from).
"""

import importlib.util
import logging
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
MODULE_PATH = REPO_ROOT / "_grains" / "rpi.py"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "rpi"


@pytest.fixture
def rpi():
    """
    A fresh copy of the grains module, so patched constants never leak.
    """
    spec = importlib.util.spec_from_file_location("rpi_grains_under_test", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_board(module, monkeypatch, board):
    """
    Point the module at one fixture machine and return its grains.
    """
    base = FIXTURES / board
    monkeypatch.setattr(module, "CPUINFO_PATH", str(base / "cpuinfo"))
    monkeypatch.setattr(module, "DEVICE_TREE_DIRS", (str(base / "device-tree"),))
    return module.raspberry_pi()


# One row per real board: fixture, then the exact grains expected.
BOARDS = [
    (
        "b-plus-0010",
        {
            "model": "Raspberry Pi Model B Plus Rev 1.2",
            "revision": "0010",
            "serial": "000000005f9ba615",
            "revision_style": "old",
            "type": "B+",
            "memory_mb": 512,
            "manufacturer": "Sony UK",
            "processor": "BCM2835",
            "board_revision": "1.2",
            "warranty_void": False,
        },
    ),
    (
        "2b-a21041",
        {
            "model": "Raspberry Pi 2 Model B Rev 1.1",
            "revision": "a21041",
            "serial": "000000007d5c9e71",
            "revision_style": "new",
            "type": "2B",
            "memory_mb": 1024,
            "manufacturer": "Embest",
            "processor": "BCM2836",
            "board_revision": "1.1",
            "warranty_void": False,
        },
    ),
    (
        "3b-a02082",
        {
            "model": "Raspberry Pi 3 Model B Rev 1.2",
            "revision": "a02082",
            "serial": "000000007615217c",
            "revision_style": "new",
            "type": "3B",
            "memory_mb": 1024,
            "manufacturer": "Sony UK",
            "processor": "BCM2837",
            "board_revision": "1.2",
            "warranty_void": False,
        },
    ),
    (
        "3b-plus-a020d3",
        {
            "model": "Raspberry Pi 3 Model B Plus Rev 1.3",
            "revision": "a020d3",
            "serial": "00000000e2cb201f",
            "revision_style": "new",
            "type": "3B+",
            "memory_mb": 1024,
            "manufacturer": "Sony UK",
            "processor": "BCM2837",
            "board_revision": "1.3",
            "warranty_void": False,
        },
    ),
    (
        "4b-d03114",
        {
            "model": "Raspberry Pi 4 Model B Rev 1.4",
            "revision": "d03114",
            "serial": "10000000a744c93f",
            "revision_style": "new",
            "type": "4B",
            "memory_mb": 8192,
            "manufacturer": "Sony UK",
            "processor": "BCM2711",
            "board_revision": "1.4",
            "warranty_void": False,
        },
    ),
    (
        "5-d04170",
        {
            "model": "Raspberry Pi 5 Model B Rev 1.0",
            "revision": "d04170",
            "serial": "9d00ce41d137e638",
            "revision_style": "new",
            "type": "5",
            "memory_mb": 8192,
            "manufacturer": "Sony UK",
            "processor": "BCM2712",
            "board_revision": "1.0",
            "warranty_void": False,
        },
    ),
    (
        "b-000e",
        {
            "model": "Raspberry Pi Model B Rev 2",
            "revision": "000e",
            "serial": "00000000fd6a36fb",
            "revision_style": "old",
            "type": "B",
            "memory_mb": 512,
            "manufacturer": "Sony UK",
            "processor": "BCM2835",
            "board_revision": "2.0",
            "warranty_void": False,
        },
    ),
    (
        "b-1000002-warranty",
        {
            "model": "Raspberry Pi Model B Rev 1",
            "revision": "1000002",
            "serial": "00000000cdea9a84",
            "revision_style": "old",
            "type": "B",
            "memory_mb": 256,
            "manufacturer": "Egoman",
            "processor": "BCM2835",
            "board_revision": "1.0",
            "warranty_void": True,
        },
    ),
    (
        # No device tree, no Model line: recognised by "Hardware: BCM2708".
        "b-000e-legacy-kernel",
        {
            "revision": "000e",
            "serial": "00000000902b9619",
            "revision_style": "old",
            "type": "B",
            "memory_mb": 512,
            "manufacturer": "Sony UK",
            "processor": "BCM2835",
            "board_revision": "2.0",
            "warranty_void": False,
        },
    ),
    (
        # cpuinfo without board lines: revision and serial from the device tree.
        "4b-c03111-device-tree-only",
        {
            "model": "Raspberry Pi 4 Model B Rev 1.1",
            "revision": "c03111",
            "serial": "100000002eb65c54",
            "revision_style": "new",
            "type": "4B",
            "memory_mb": 4096,
            "manufacturer": "Sony UK",
            "processor": "BCM2711",
            "board_revision": "1.1",
            "warranty_void": False,
        },
    ),
]


@pytest.mark.parametrize("board,expected", BOARDS, ids=[row[0] for row in BOARDS])
def test_real_board(rpi, monkeypatch, board, expected):
    grains = on_board(rpi, monkeypatch, board)
    flat = {
        f"rpi_{key}": expected[key]
        for key in ("model", "revision", "serial")
        if key in expected
    }
    assert grains == {**flat, "rpi": expected}


def test_model_nul_is_stripped_and_device_tree_wins_over_cpuinfo(
    rpi, monkeypatch, tmp_path
):
    (tmp_path / "cpuinfo").write_text(
        "Hardware\t: BCM2835\nRevision\t: a020d3\nSerial\t\t: 00000000e2cb201f\n"
        "Model\t\t: from cpuinfo\n"
    )
    (tmp_path / "device-tree").mkdir()
    (tmp_path / "device-tree" / "model").write_bytes(
        b"Raspberry Pi 3 Model B Plus Rev 1.3\x00"
    )
    monkeypatch.setattr(rpi, "CPUINFO_PATH", str(tmp_path / "cpuinfo"))
    monkeypatch.setattr(rpi, "DEVICE_TREE_DIRS", (str(tmp_path / "device-tree"),))
    assert rpi.raspberry_pi()["rpi_model"] == "Raspberry Pi 3 Model B Plus Rev 1.3"


def test_second_device_tree_dir_is_used(rpi, monkeypatch, tmp_path):
    """
    /proc/device-tree missing, /sys/firmware/devicetree/base present.
    """
    board = FIXTURES / "4b-d03114"
    monkeypatch.setattr(rpi, "CPUINFO_PATH", str(board / "cpuinfo"))
    monkeypatch.setattr(
        rpi, "DEVICE_TREE_DIRS", (str(tmp_path / "absent"), str(board / "device-tree"))
    )
    assert rpi.raspberry_pi()["rpi_model"] == "Raspberry Pi 4 Model B Rev 1.4"


def test_model_from_cpuinfo_when_no_device_tree(rpi, monkeypatch, tmp_path):
    board = FIXTURES / "5-d04170"
    monkeypatch.setattr(rpi, "CPUINFO_PATH", str(board / "cpuinfo"))
    monkeypatch.setattr(rpi, "DEVICE_TREE_DIRS", (str(tmp_path / "absent"),))
    grains = rpi.raspberry_pi()
    assert grains["rpi_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert grains["rpi"]["type"] == "5"


@pytest.mark.parametrize("board", ["x86-xeon", "orange-pi-zero-sun8i"])
def test_not_a_pi_gives_no_grains(rpi, monkeypatch, board):
    assert on_board(rpi, monkeypatch, board) == {}


def test_missing_files_give_no_grains_and_no_error(rpi, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(rpi, "CPUINFO_PATH", str(tmp_path / "no-cpuinfo"))
    monkeypatch.setattr(
        rpi, "DEVICE_TREE_DIRS", (str(tmp_path / "no-dt"), str(tmp_path / "no-dt2"))
    )
    with caplog.at_level(logging.DEBUG):
        assert rpi.raspberry_pi() == {}
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


def test_unreadable_files_give_no_grains(rpi, monkeypatch, tmp_path):
    """
    A path that cannot be read (here a directory, which fails even for root)
    is treated like a missing file.
    """
    (tmp_path / "cpuinfo").mkdir()
    (tmp_path / "device-tree" / "model").mkdir(parents=True)
    monkeypatch.setattr(rpi, "CPUINFO_PATH", str(tmp_path / "cpuinfo"))
    monkeypatch.setattr(rpi, "DEVICE_TREE_DIRS", (str(tmp_path / "device-tree"),))
    assert rpi.raspberry_pi() == {}


def test_model_only_gives_model_grains(rpi, monkeypatch, tmp_path):
    """
    cpuinfo missing on a Pi: the model is still reported, nothing is invented.
    """
    board = FIXTURES / "3b-a02082"
    monkeypatch.setattr(rpi, "CPUINFO_PATH", str(tmp_path / "absent"))
    monkeypatch.setattr(rpi, "DEVICE_TREE_DIRS", (str(board / "device-tree"),))
    assert rpi.raspberry_pi() == {
        "rpi_model": "Raspberry Pi 3 Model B Rev 1.2",
        "rpi": {"model": "Raspberry Pi 3 Model B Rev 1.2"},
    }


def test_garbage_revision_and_zero_serial_are_left_out(rpi, monkeypatch, tmp_path):
    (tmp_path / "cpuinfo").write_bytes(
        b"Hardware\t: BCM2835\nRevision\t: zz\xff\nSerial\t\t: 0000000000000000\n"
    )
    monkeypatch.setattr(rpi, "CPUINFO_PATH", str(tmp_path / "cpuinfo"))
    monkeypatch.setattr(rpi, "DEVICE_TREE_DIRS", (str(tmp_path / "absent"),))
    grains = rpi.raspberry_pi()
    assert "rpi_serial" not in grains
    assert grains["rpi"] == {"revision": grains["rpi_revision"]}


# The decoder against the documented tables (revision-codes.adoc, Raspberry Pi Ltd).
# code: (type, memory_mb, manufacturer, processor, board_revision)
NEW_STYLE_CODES = {
    "900021": ("A+", 512, "Sony UK", "BCM2835", "1.1"),
    "900032": ("B+", 512, "Sony UK", "BCM2835", "1.2"),
    "a01040": ("2B", 1024, "Sony UK", "BCM2836", "1.0"),
    "a22042": ("2B", 1024, "Embest", "BCM2837", "1.2"),
    "900061": ("CM1", 512, "Sony UK", "BCM2835", "1.1"),
    "a32082": ("3B", 1024, "Sony Japan", "BCM2837", "1.2"),
    "a52082": ("3B", 1024, "Stadium", "BCM2837", "1.2"),
    "920093": ("Zero", 512, "Embest", "BCM2835", "1.3"),
    "a220a0": ("CM3", 1024, "Embest", "BCM2837", "1.0"),
    "9000c1": ("Zero W", 512, "Sony UK", "BCM2835", "1.1"),
    "a020d4": ("3B+", 1024, "Sony UK", "BCM2837", "1.4"),
    "9020e1": ("3A+", 512, "Sony UK", "BCM2837", "1.1"),
    "a02100": ("CM3+", 1024, "Sony UK", "BCM2837", "1.0"),
    "b03115": ("4B", 2048, "Sony UK", "BCM2711", "1.5"),
    "902120": ("Zero 2 W", 512, "Sony UK", "BCM2837", "1.0"),
    "c03130": ("400", 4096, "Sony UK", "BCM2711", "1.0"),
    "a03140": ("CM4", 1024, "Sony UK", "BCM2711", "1.0"),
    "e04171": ("5", 16384, "Sony UK", "BCM2712", "1.1"),
    "e04180": ("CM5", 16384, "Sony UK", "BCM2712", "1.0"),
    "d04190": ("500/500+", 8192, "Sony UK", "BCM2712", "1.0"),
    "c041a0": ("CM5 Lite", 4096, "Sony UK", "BCM2712", "1.0"),
}


@pytest.mark.parametrize("code", sorted(NEW_STYLE_CODES))
def test_decode_new_style(rpi, code):
    board_type, memory_mb, manufacturer, processor, board_revision = NEW_STYLE_CODES[
        code
    ]
    assert rpi._decode_revision(code) == {
        "revision_style": "new",
        "type": board_type,
        "memory_mb": memory_mb,
        "manufacturer": manufacturer,
        "processor": processor,
        "board_revision": board_revision,
        "warranty_void": False,
    }


def test_decode_new_style_warranty_bit(rpi):
    decoded = rpi._decode_revision("2a02082")
    assert decoded["warranty_void"] is True
    assert decoded["type"] == "3B"
    assert decoded["memory_mb"] == 1024


def test_decode_new_style_unknown_fields_left_out(rpi):
    # type 0x7f is not allocated, memory 7 is "other", manufacturer 0xf unknown
    assert rpi._decode_revision("ff37f0") == {
        "revision_style": "new",
        "processor": "BCM2711",
        "board_revision": "1.0",
        "warranty_void": False,
    }


OLD_STYLE_TABLE = {
    "0002": ("B", "1.0", 256, "Egoman"),
    "0003": ("B", "1.0", 256, "Egoman"),
    "0004": ("B", "2.0", 256, "Sony UK"),
    "0005": ("B", "2.0", 256, "Qisda"),
    "0006": ("B", "2.0", 256, "Egoman"),
    "0007": ("A", "2.0", 256, "Egoman"),
    "0008": ("A", "2.0", 256, "Sony UK"),
    "0009": ("A", "2.0", 256, "Qisda"),
    "000d": ("B", "2.0", 512, "Egoman"),
    "000e": ("B", "2.0", 512, "Sony UK"),
    "000f": ("B", "2.0", 512, "Egoman"),
    "0010": ("B+", "1.2", 512, "Sony UK"),
    "0011": ("CM1", "1.0", 512, "Sony UK"),
    "0012": ("A+", "1.1", 256, "Sony UK"),
    "0013": ("B+", "1.2", 512, "Embest"),
    "0014": ("CM1", "1.0", 512, "Embest"),
}


@pytest.mark.parametrize("code", sorted(OLD_STYLE_TABLE))
@pytest.mark.parametrize("prefix", ["", "100"], ids=["plain", "warranty"])
def test_decode_old_style(rpi, code, prefix):
    board_type, board_revision, memory_mb, manufacturer = OLD_STYLE_TABLE[code]
    assert rpi._decode_revision(prefix + code) == {
        "revision_style": "old",
        "type": board_type,
        "memory_mb": memory_mb,
        "manufacturer": manufacturer,
        "processor": "BCM2835",
        "board_revision": board_revision,
        "warranty_void": prefix == "100",
    }


def test_decode_old_style_0015_has_no_memory(rpi):
    """
    0015 shipped with 256 MB or 512 MB: the code alone cannot tell.
    """
    decoded = rpi._decode_revision("0015")
    assert "memory_mb" not in decoded
    assert decoded["type"] == "A+"
    assert decoded["manufacturer"] == "Embest"


def test_decode_unknown_old_style_and_garbage(rpi):
    assert rpi._decode_revision("0001") == {
        "revision_style": "old",
        "warranty_void": False,
    }
    assert rpi._decode_revision("not-hex") == {}
    assert rpi._decode_revision("") == {}


def test_virtual(rpi, monkeypatch):
    monkeypatch.setattr(rpi.sys, "platform", "linux")
    assert rpi.__virtual__() == "rpi"
    monkeypatch.setattr(rpi.sys, "platform", "darwin")
    result = rpi.__virtual__()
    assert result[0] is False
    assert "Linux" in result[1]


def test_salt_loader_loads_the_grain(tmp_path):
    """
    The real Salt loader finds the module in _grains, passes __virtual__ and
    can call it (on this machine it must not raise, whatever it returns).
    """
    salt_config = pytest.importorskip("salt.config", reason="salt is not installed")
    import salt.loader

    opts = salt_config.minion_config(None)
    opts["grains_dirs"] = [str(REPO_ROOT / "_grains")]
    opts["extension_modules"] = str(tmp_path / "extmods")
    opts["cachedir"] = str(tmp_path / "cache")
    funcs = salt.loader.grain_funcs(opts)
    assert "rpi.raspberry_pi" in funcs
    assert isinstance(funcs["rpi.raspberry_pi"](), dict)
