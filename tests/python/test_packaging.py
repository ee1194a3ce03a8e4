"""`make install` puts the binary, the policies, a sandboxed systemd unit and a sample config that parses."""
import configparser
import glob
import os
import shutil
import subprocess

import pytest

from bridgelib import REPO

# Directives the unit must keep: a dedicated user, a read-only system, and directories systemd owns.
REQUIRED = {
    "User": "octavia",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "NoNewPrivileges": "true",
    "PrivateTmp": "true",
    "RuntimeDirectory": "loxilb-octavia",
    "StateDirectory": "loxilb-octavia",
    "CacheDirectory": "loxilb-octavia",
    "KillSignal": "SIGTERM",
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    done = subprocess.run(["make", "-C", REPO, "install", f"DESTDIR={dest}", "PREFIX=/usr", "PROFILE=debug"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return dest


def test_install_puts_every_file_in_place(installed):
    binary = installed / "usr/bin/loxilb-octavia"
    assert os.access(binary, os.X_OK)
    assert (installed / "usr/lib/loxilb-octavia/policies/l4-fullnat.wasm").stat().st_size > 0
    unit = installed / "usr/lib/systemd/system/loxilb-octavia.service"
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert "ExecStart=/usr/bin/loxilb-octavia serve --config /etc/octavia/octavia.conf" in unit.read_text()


def test_unit_is_sandboxed(installed):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(installed / "usr/lib/systemd/system/loxilb-octavia.service")
    service = parser["Service"]
    for key, value in REQUIRED.items():
        assert service.get(key) == value, f"[Service] {key}"
    assert parser["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(installed):
    # verify resolves the unit's dependencies and ExecStart inside --root: give it the system's targets.
    targets = installed / "lib/systemd/system"
    targets.mkdir(parents=True, exist_ok=True)
    for target in glob.glob("/lib/systemd/system/*.target"):
        shutil.copy(target, targets)
    done = subprocess.run(["systemd-analyze", "verify", f"--root={installed}",
                           "/usr/lib/systemd/system/loxilb-octavia.service"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_installed_sample_config_parses(installed):
    sample = installed / "usr/share/loxilb-octavia/octavia-loxilb.conf.sample"
    done = subprocess.run([str(installed / "usr/bin/loxilb-octavia"), "show-config", "--config", str(sample)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"socket_path": "/run/loxilb-octavia/host.sock"' in done.stdout
