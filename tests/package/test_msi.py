"""The MSI as hospital IT meets it, on Linux: its tables read back with msiinfo, then a silent
install into a throwaway Wine prefix with the config and data paths as properties, the
installed program checking its config and running headless (a mosquitto_pub from Linux
stored in the Windows data directory), an upgrade by the next version's MSI, and an
uninstall that leaves the data.

The window (WebView2) does not run under Wine; everything around it does. Wine 8 lacks
bcryptprimitives.dll (ProcessPrng), which Rust's standard library imports: the test builds a
shim (tests/package/processprng.c) and places it beside the installed program. Windows 10+
has the DLL; the shim is never in a package.

Run by `make package` (its package-test step).
"""

import os
import re
import subprocess
from pathlib import Path

from support import connectable, free_port, run, stored_values, wait_until

PKG = Path(os.environ.get("PACKAGE_DIR", "target/package"))
VERSION = os.environ["VERSION"]
PREV = os.environ["PREV_VERSION"]
WINE = os.environ.get("WINE", "/usr/lib/wine/wine64")
HERE = Path(__file__).parent
UPGRADE_CODE = "{6B1F2D7E-3C4A-4E5B-9A8D-2F1E0C7B5A93}"


def msi_table(msi: Path, table: str):
    out = run(["msiinfo", "export", str(msi), table]).stdout.splitlines()
    # Lines 1-3 are the column names, types and the table's key; rows follow, tab-separated.
    return [line.split("\t") for line in out[3:] if line]


def test_msi_tables_say_what_it_installs():
    msi = PKG / f"Wardwatch-{VERSION}-x64.msi"
    props = dict(r[:2] for r in msi_table(msi, "Property"))
    assert props["UpgradeCode"] == UPGRADE_CODE
    assert props["ProductVersion"] == VERSION
    assert props["ProductName"] == "Wardwatch"
    assert props["ALLUSERS"] == "1"  # per machine
    files = {r[2].split("|")[-1] for r in msi_table(msi, "File")}
    assert {"wardwatch-station.exe", "wardwatch.example.toml", "station.toml",
            "sbom-rust.cdx.json", "sbom-ui.cdx.json", "README.md"} <= files
    dirs = {r[0]: r for r in msi_table(msi, "Directory")}
    assert dirs["INSTALLDIR"][1] == "ProgramFiles64Folder"
    shortcut = msi_table(msi, "Shortcut")[0]
    assert "Wardwatch" in shortcut[2]
    assert '--config "[CONFIGFILE]" --data-dir "[DATADIR]"' in shortcut
    upgrade = msi_table(msi, "Upgrade")
    assert {r[0] for r in upgrade} == {UPGRADE_CODE}
    # The config and the data folder are unmanaged components: no uninstall removes them.
    comps = {r[0]: r for r in msi_table(msi, "Component")}
    assert comps["DefaultConfig"][1] == "" and comps["DataDir"][1] == ""


class Wine:
    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.env = dict(os.environ, WINEPREFIX=str(prefix), WINEDEBUG="-all",
                        WINEDLLOVERRIDES="mscoree,mshtml=", WINEARCH="win64")
        self.env.pop("DISPLAY", None)

    def __call__(self, *args, check=True, timeout=300):
        return run([WINE, *args], check=check, env=self.env, timeout=timeout)

    def popen(self, *args):
        return subprocess.Popen([WINE, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def c(self, path: str) -> Path:
        """A C:\\ path as the Linux path inside the prefix."""
        return self.prefix / "drive_c" / path.removeprefix("C:\\").replace("\\", "/")

    def reg(self, name):
        out = self("reg", "query", r"HKLM\Software\Wardwatch", "/v", name, check=False).stdout
        m = re.search(rf"{name}\s+REG_SZ\s+(.*)", out)
        return m.group(1).strip() if m else None

    def stop_wineserver(self):
        run(["wineserver", "-k"], check=False, env=self.env)


def test_silent_install_run_upgrade_uninstall(tmp_path):
    prev = PKG / f"Wardwatch-{PREV}-x64.msi"
    new = PKG / f"Wardwatch-{VERSION}-x64.msi"
    shim = tmp_path / "bcryptprimitives.dll"
    run(["x86_64-w64-mingw32-gcc", "-shared", "-O2", "-o", str(shim),
         str(HERE / "processprng.c"), str(HERE / "processprng.def"), "-ladvapi32"])
    wine = Wine(tmp_path / "prefix")
    try:
        wine("wineboot", "--init")
        port = free_port()
        # IT's config, on a path of its choosing, as a Group Policy push would give it.
        it_dir = wine.c("C:\\Hospital")
        it_dir.mkdir(parents=True)
        (it_dir / "ward4.toml").write_text(
            '[station]\nid = "ward-4w"\n\n[broker]\n'
            f'listen = "127.0.0.1:{port}"\nallow_anonymous = true\n')
        wine("msiexec", "/i", str(prev), "/qn",
             "CONFIGFILE=C:\\Hospital\\ward4.toml", "DATADIR=C:\\Hospital\\data")
        exe = wine.c("C:\\Program Files\\Wardwatch\\wardwatch-station.exe")
        assert exe.exists()
        assert wine.reg("ConfigFile") == "C:\\Hospital\\ward4.toml"
        assert wine.reg("DataDir") == "C:\\Hospital\\data"
        # Windows puts a per-machine shortcut in the common Start menu; Wine 8 resolves
        # ProgramMenuFolder to the user's even with ALLUSERS=1. Either is the menu's.
        links = list(wine.c("C:\\").glob("**/Start Menu/Programs/Wardwatch/Wardwatch.lnk"))
        assert len(links) == 1, links
        default_conf = wine.c("C:\\ProgramData\\Wardwatch\\station.toml")
        assert default_conf.exists()
        assert wine.c("C:\\ProgramData\\Wardwatch\\data").is_dir()
        (exe.parent / shim.name).write_bytes(shim.read_bytes())

        # The installed program checks the installed example and the hospital's config.
        wine(str(exe), "check-config", "--config",
             "C:\\Program Files\\Wardwatch\\wardwatch.example.toml")
        wine(str(exe), "check-config", "--config", "C:\\Hospital\\ward4.toml")

        # Headless, with the shortcut's arguments; a device on Linux publishes to it.
        st = wine.popen(str(exe), "run", "--config", "C:\\Hospital\\ward4.toml",
                        "--data-dir", "C:\\Hospital\\data", "--no-sentinel")
        db = wine.c("C:\\Hospital\\data\\wardwatch.sqlite")
        try:
            wait_until("the station under Wine", 120, lambda: connectable(port))
            run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                 "-t", "ward/v1/dev/mon-07/vitals",
                 "-m", '{"obs":[{"code":147842,"value":71,"unit":264864}]}'])
            wait_until("the vital stored on C:", 30, lambda: stored_values(db, "mon-07") == [71.0])
        finally:
            st.terminate()
            try:
                st.wait(30)
            except subprocess.TimeoutExpired:
                st.kill()
            wine.stop_wineserver()

        # The next version upgrades in place, keeping the paths it was given and the data.
        wine("msiexec", "/i", str(new), "/qn")
        assert wine.reg("ConfigFile") == "C:\\Hospital\\ward4.toml"
        assert wine.reg("DataDir") == "C:\\Hospital\\data"
        assert exe.exists()
        products = wine("reg", "query",
                        r"HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall",
                        "/s", check=False).stdout
        versions = re.findall(r"DisplayVersion\s+REG_SZ\s+(\S+)", products)
        assert VERSION in versions and PREV not in versions, products
        assert stored_values(db, "mon-07") == [71.0]

        # The older MSI over the newer one is refused (MajorUpgrade's downgrade error).
        r = wine("msiexec", "/i", str(prev), "/qn", check=False)
        assert r.returncode != 0, r.stdout + r.stderr
        products = wine("reg", "query",
                        r"HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall",
                        "/s", check=False).stdout
        assert re.findall(r"DisplayVersion\s+REG_SZ\s+(\S+)", products) == [VERSION]

        # Uninstall: the program goes, the data and both config files stay.
        wine("msiexec", "/x", str(new), "/qn")
        assert not exe.exists()
        assert not links[0].exists()
        assert stored_values(db, "mon-07") == [71.0]
        assert default_conf.exists()
        assert (it_dir / "ward4.toml").exists()
    finally:
        wine.stop_wineserver()
