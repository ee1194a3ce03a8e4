"""The entry-point check finds the earlier driver's `loxilb` registration beside ours."""
import os
import subprocess
import sys


def run_check(extra_path=None):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "octavia_loxilb_provider.check"],
                          capture_output=True, text=True, timeout=60, env=env)


def test_only_this_package_registers_loxilb():
    done = run_check()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "octavia_loxilb_provider.driver:LoxiLBProviderDriver" in done.stdout


def test_the_earlier_driver_installed_beside_it_is_named(tmp_path):
    # What `pip install octavia-loxilb-driver==1.1.0` leaves in site-packages, as far as entry points go.
    dist = tmp_path / "octavia_loxilb_driver-1.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: octavia-loxilb-driver\nVersion: 1.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[octavia.api.drivers]\nloxilb = octavia_loxilb_driver.driver.provider_driver:LoxiLBProviderDriver\n")
    done = run_check(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "conflict: octavia-loxilb-driver also registers the 'loxilb' provider" in done.stdout
    assert "pip uninstall octavia-loxilb-driver" in done.stdout
