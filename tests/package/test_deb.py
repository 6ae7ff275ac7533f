"""The .deb as hospital IT meets it, in a throwaway Debian root (mmdebstrap, the machine's own
apt sources): install, run the unit's own ExecStart as its user, upgrade from the previous
version's package, a refused downgrade, remove, purge. Also lintian and systemd-analyze.

Needs root (chroot, mounts). Run by `make package` (its package-test step), with the packages
in PACKAGE_DIR in two versions, PREV_VERSION and VERSION.
"""

import os
import shlex
import signal
import sqlite3
import subprocess
import tarfile
from pathlib import Path

from support import connectable, free_port, run, stored_values, wait_until

PKG = Path(os.environ.get("PACKAGE_DIR", "target/package"))
VERSION = os.environ["VERSION"]
PREV = os.environ["PREV_VERSION"]
ROOTFS_CACHE = Path(os.environ.get("ROOTFS_CACHE", "target/package-test/bookworm.tar"))


class Root:
    """A Debian bookworm root with /proc, /dev and /sys mounted; apt reaches the mirror."""

    def __init__(self, path: Path):
        self.path = path
        self.mounts = []

    def __enter__(self):
        if not ROOTFS_CACHE.exists():
            ROOTFS_CACHE.parent.mkdir(parents=True, exist_ok=True)
            tmp = ROOTFS_CACHE.with_suffix(".partial")
            run(["mmdebstrap", "--variant=apt", "--include=systemd,sqlite3,adduser",
                 "--format=tar", "bookworm", str(tmp)])
            tmp.rename(ROOTFS_CACHE)
        self.path.mkdir(parents=True)
        with tarfile.open(ROOTFS_CACHE) as t:
            t.extractall(self.path, numeric_owner=True)
        (self.path / "etc/resolv.conf").write_text(Path("/etc/resolv.conf").read_text())
        for fs, args in (("proc", ["-t", "proc", "proc"]), ("sys", ["-t", "sysfs", "sys"]),
                         ("dev", ["--bind", "/dev"]), ("dev/pts", ["--bind", "/dev/pts"])):
            run(["mount", *args, str(self.path / fs)])
            self.mounts.append(self.path / fs)
        # mmdebstrap leaves no package lists behind.
        self.sh("apt-get update -q")
        return self

    def __exit__(self, *exc):
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(m)])
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.path)])

    def sh(self, script, check=True, user=None, input=None):
        cmd = ["/usr/sbin/chroot"]
        if user:
            cmd.append(f"--userspec={user}:{user}")
        cmd += [str(self.path), "/bin/sh", "-c", script]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "HOME": "/root", "LANG": "C.UTF-8"}
        return run(cmd, check=check, env=env, input=input)

    def install(self, deb: Path, check=True):
        (self.path / "tmp" / deb.name).write_bytes(deb.read_bytes())
        return self.sh(f"apt-get install -y -q /tmp/{deb.name}", check=check)

    def file(self, p):
        return self.path / p.lstrip("/")


def exec_start(root: Root):
    unit = root.file("/lib/systemd/system/wardwatch.service").read_text()
    line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def start_station(root: Root):
    """The unit's ExecStart, as the unit's user, with the unit's config and data paths."""
    argv = exec_start(root)
    p = subprocess.Popen(["/usr/sbin/chroot", "--userspec=wardwatch:wardwatch", str(root.path), *argv],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={"PATH": "/usr/bin:/bin", "RUST_LOG": "info"})
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    return p.returncode, out


def publish(port, device, password, value):
    payload = '{"obs":[{"code":147842,"value":%s,"unit":264864}]}' % value
    run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-V", "mqttv5",
         "-u", device, "-P", password, "-i", device,
         "-t", f"ward/v1/dev/{device}/vitals", "-m", payload])


def test_lintian_finds_no_errors():
    deb = PKG / f"wardwatch_{VERSION}_amd64.deb"
    p = run(["lintian", "--no-tag-display-limit", str(deb)], check=False)
    errors = [l for l in p.stdout.splitlines() if l.startswith("E:")]
    assert not errors, p.stdout
    print(p.stdout)


def test_install_run_upgrade_downgrade_remove_purge(tmp_path):
    prev = PKG / f"wardwatch_{PREV}_amd64.deb"
    new = PKG / f"wardwatch_{VERSION}_amd64.deb"
    with Root(tmp_path / "root") as root:
        # Install the previous version.
        root.install(prev)
        assert root.sh("getent passwd wardwatch").stdout.startswith("wardwatch:")
        st = root.file("/var/lib/wardwatch").stat()
        assert (st.st_mode & 0o777) == 0o750
        assert root.sh("stat -c %U:%G /var/lib/wardwatch").stdout.strip() == "wardwatch:wardwatch"
        assert root.sh("stat -c %a:%U:%G /etc/wardwatch/devices.passwd").stdout.strip() \
            == "640:root:wardwatch"
        # The unit is well formed and its paths exist.
        v = root.sh("systemd-analyze verify /lib/systemd/system/wardwatch.service "
                    "/lib/systemd/system/wardwatch-sentinel.service", check=False)
        assert v.returncode == 0, v.stdout + v.stderr
        root.sh("wardwatch-station check-config --config /etc/wardwatch/station.toml")

        # IT's edits: the device port, a device password, a user.
        port = free_port()
        conf = root.file("/etc/wardwatch/station.toml")
        text = conf.read_text().replace('listen = "127.0.0.1:1883"', f'listen = "127.0.0.1:{port}"')
        text = text.replace('id = "station-1"', 'id = "ward-4w"')
        conf.write_text(text)
        root.sh("wardwatch-station broker passwd /etc/wardwatch/devices.passwd mon-07",
                input="device-secret-07\ndevice-secret-07\n")
        # As README says: console commands that write the database run as the service user.
        root.sh("wardwatch-station users add --config /etc/wardwatch/station.toml "
                "--username nurse1 --role nurse", user="wardwatch",
                input="nurse-password-1\nnurse-password-1\n")

        station = start_station(root)
        try:
            db = root.file("/var/lib/wardwatch/wardwatch.sqlite")
            wait_until("the station's broker", 30, lambda: connectable(port))
            publish(port, "mon-07", "device-secret-07", 71)
            wait_until("the vital stored", 20, lambda: stored_values(db, "mon-07") == [71.0])
        finally:
            code, out = stop(station)
        assert code == 0, out

        # Upgrade: config edits, the password file, users, the database and its audit chain
        # all stay.
        root.install(new)
        assert f"listen = \"127.0.0.1:{port}\"" in conf.read_text()
        assert "mon-07:" in root.file("/etc/wardwatch/devices.passwd").read_text()
        assert stored_values(db, "mon-07") == [71.0]
        users = root.sh("wardwatch-station users list --config /etc/wardwatch/station.toml").stdout
        assert "nurse1" in users, users
        root.sh("wardwatch-station audit verify --db /var/lib/wardwatch/wardwatch.sqlite")
        station = start_station(root)
        try:
            wait_until("the station's broker", 30, lambda: connectable(port))
            publish(port, "mon-07", "device-secret-07", 72)
            wait_until("the second vital", 20, lambda: stored_values(db, "mon-07") == [71.0, 72.0])
        finally:
            code, out = stop(station)
        assert code == 0, out

        # A downgrade onto a database a newer program wrote is refused, naming why.
        schema = int(root.sh("wardwatch-station store schema-version").stdout)
        c = sqlite3.connect(db)
        c.execute(f"PRAGMA user_version = {schema + 1}")
        c.close()
        r = root.sh(f"dpkg -i /tmp/{prev.name}", check=False)
        assert r.returncode != 0
        assert f"schema version {schema + 1}" in r.stderr, r.stderr
        assert root.sh("dpkg-query -W -f '${Version}' wardwatch").stdout == VERSION
        c = sqlite3.connect(db)
        c.execute(f"PRAGMA user_version = {schema}")
        c.close()

        # Remove: the program goes; data and configuration stay.
        root.sh("apt-get remove -y -q wardwatch")
        assert not root.file("/usr/bin/wardwatch-station").exists()
        assert stored_values(db, "mon-07") == [71.0, 72.0]
        assert conf.exists() and root.file("/etc/wardwatch/devices.passwd").exists()

        # Purge: says what it deletes, and deletes it.
        r = root.sh("dpkg --purge wardwatch")
        assert "purge deletes /var/lib/wardwatch" in r.stderr, r.stderr
        assert not root.file("/var/lib/wardwatch").exists()
        assert not root.file("/etc/wardwatch").exists()
