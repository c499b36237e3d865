"""Issue 17: the real-host guide's artefacts are checked here: the systemd unit
(`systemd-analyze verify`) and the Vagrantfile (`vagrant validate`, Debian's vagrant 2.3.4, which
.ci/setup installs), and the Vagrantfile's provisioning runs the guide's commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "packaging" / "ovsflow-controller.service"
GUIDE = ROOT / "docs" / "real-hosts.md"
VAGRANTFILE = ROOT / "Vagrantfile"


def verify_unit(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (package systemd)"
    text = UNIT.read_text()
    assert "ExecStart=/opt/ovsflow/.venv/bin/ryu-manager ovsflow.app " in text
    # The guide installs to /opt/ovsflow; here the same unit points at this checkout, whose venv exists
    # (verify checks that ExecStart's program is there).
    unit = tmp_path / "ovsflow-controller.service"
    unit.write_text(text.replace("/opt/ovsflow", str(ROOT)))
    ok = verify_unit(unit)
    assert ok.returncode == 0 and not ok.stderr.strip(), ok.stderr
    # and verify does catch a broken unit: a missing program, a misspelt directive
    bad = tmp_path / "bad.service"
    bad.write_text(text.replace("/opt/ovsflow/.venv/bin/ryu-manager", "/nonexistent/ryu-manager"))
    assert verify_unit(bad).returncode != 0
    bad.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "restart specifier" in verify_unit(bad).stderr  # a warning (exit 0): hence "no stderr" above


def vagrant_validate(directory: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    return subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=directory, env=env, capture_output=True,
                          text=True, timeout=120)


def test_vagrant_validate_passes(tmp_path: Path) -> None:
    assert shutil.which("vagrant"), "vagrant missing: `bash .ci/setup` installs Debian's package"
    version = subprocess.run(["vagrant", "--version"], capture_output=True, text=True, timeout=60).stdout
    assert version.startswith("Vagrant 2."), version
    proc = vagrant_validate(ROOT, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Vagrantfile validated successfully" in proc.stdout
    for host in ("hv1", "hv2", "hv3"):
        assert f"==> {host}:" in proc.stdout
    assert not (ROOT / ".vagrant").exists()  # its state went to the temp dir
    # the check can fail: a Vagrantfile with an unknown setting does not validate
    broken = tmp_path / "broken"
    shutil.copytree(ROOT / "labs", broken / "labs")
    (broken / "Vagrantfile").write_text(VAGRANTFILE.read_text().replace('node.vm.hostname = host',
                                                                        'node.vm.hostname = host\n      node.vm.no_such_setting = 1'))
    assert vagrant_validate(broken, tmp_path).returncode != 0


def test_the_vagrantfile_provisions_with_the_guides_commands() -> None:
    guide, vagrant = GUIDE.read_text(), VAGRANTFILE.read_text()
    # the commands of the guide's steps 1-3, as the Vagrantfile runs them (host and target interpolated)
    for line in ['OVSFLOW_SETUP_SKIP="vagrant graphviz" bash /opt/ovsflow/.ci/setup',
                 "install -m 0644 /opt/ovsflow/packaging/ovsflow-controller.service /etc/systemd/system/",
                 "systemctl enable --now ovsflow-controller",
                 "systemctl enable --now openvswitch-switch",
                 '/opt/ovsflow/.venv/bin/ovsflow ovsdb-ensure /etc/ovsflow/topology.yaml --host']:
        assert line in guide and line in vagrant, line
    assert "--datapath-type system" in guide and "--datapath-type system" in vagrant
    assert re.search(r'echo "OVSFLOW_ARGS=--ofp-listen-host [^"]+" > /etc/default/ovsflow-controller', guide)
    assert 'echo "OVSFLOW_ARGS=--ofp-listen-host #{CONTROLLER_IP}" > /etc/default/ovsflow-controller' in vagrant
    assert "ovsflow render" not in vagrant.split("Vagrant.configure")[1]  # the controller programs the flows


def test_the_guide_covers_ports_mtu_monitoring_and_the_differences() -> None:
    guide = GUIDE.read_text()
    for needle in ("6653/tcp", "6640/tcp", "4789/udp", "6081/udp", "IP protocol 47", "MTU", "ovsflow_switch_up",
                   "ovsflow_reloads_total", "What differs from the lab", "kernel", "ovsflow render", "ssh"):
        assert needle in guide, needle
