"""Pure parts of lab-httpd (routes, static paths) and of labctl (mirror, digest, hosts, inventory)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab" / "host" / "lib"))

import labsys.httpd as lab_httpd  # noqa: E402

LOOPBACK = "127.0.1.254"  # lab addresses only


def load_labctl() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("labctl", str(REPO / "lab" / "labctl"))
    spec = importlib.util.spec_from_loader("labctl", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["labctl"] = module
    loader.exec_module(module)
    return module


labctl = load_labctl()


# --------------------------------------------------------------------------- lab-httpd


def test_parse_routes() -> None:
    assert lab_httpd.parse_route("app.m1.lab.test=static:/srv") == lab_httpd.Route(
        "app.m1.lab.test", "/", "static", "/srv"
    )
    r = lab_httpd.parse_route("Forum.M3.lab.test/api/=proxy:127.0.1.3:3000")
    assert (r.host, r.prefix, r.kind, r.target) == ("forum.m3.lab.test", "/api/", "proxy", "127.0.1.3:3000")
    assert lab_httpd.parse_route("_=respond:hello").target == "hello"


@pytest.mark.parametrize("spec", ["nohost", "=static:/x", "a=ftp:x", "a=proxy:nohostport", "a=static:"])
def test_bad_routes(spec: str) -> None:
    with pytest.raises(lab_httpd.ConfigError):
        lab_httpd.parse_route(spec)


def test_longest_prefix_and_default_server() -> None:
    routes = [lab_httpd.parse_route(s) for s in ("f.t/=respond:web", "f.t/api/=respond:api", "_=respond:default")]
    chosen = [lab_httpd.select_route(routes, h, p) for h, p in (("f.t", "/api/x"), ("F.T:80", "/x"), ("other", "/"))]
    assert [r.target if r else None for r in chosen] == ["api", "web", "default"]
    assert lab_httpd.select_route(routes[:2], "other", "/") is None


def test_static_paths_stay_inside_root(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text("i")
    (tmp_path / "sub" / "a.js").write_text("a")
    assert lab_httpd.static_file(str(tmp_path), "/", "/") == tmp_path / "index.html"
    assert lab_httpd.static_file(str(tmp_path), "/", "/sub/a.js?v=1") == tmp_path / "sub" / "a.js"
    assert lab_httpd.static_file(str(tmp_path), "/", "/../../etc/passwd") is None
    assert lab_httpd.static_file(str(tmp_path), "/", "/%2e%2e/%2e%2e/etc/passwd") is None
    assert lab_httpd.static_file(str(tmp_path), "/", "/sub/") is None  # no index.html there


def test_config_file_shape() -> None:
    routes = lab_httpd.routes_from_config(
        {"vhosts": {"img.m2.lab.test": [{"proxy": "127.0.1.2:8080"}, {"prefix": "/health", "respond": "ok"}]}}
    )
    assert [(r.prefix, r.kind) for r in routes] == [("/", "proxy"), ("/health", "respond")]
    with pytest.raises(lab_httpd.ConfigError):
        lab_httpd.routes_from_config({"vhosts": {"x": [{"static": "/a", "respond": "b"}]}})


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[int]:
    """A fixed-response upstream and a front server proxying to it, on a lab loopback address."""
    (tmp_path / "index.html").write_text("<h1>app</h1>")
    upstream = lab_httpd.LabHTTPServer((LOOPBACK, 0), [lab_httpd.Route("_", "/", "respond", "lnbits")])
    up_port = upstream.server_address[1]
    routes = [
        lab_httpd.parse_route(f"app.t=static:{tmp_path}"),
        lab_httpd.parse_route(f"ln.t=proxy:{LOOPBACK}:{up_port}"),
        lab_httpd.parse_route("down.t=proxy:127.0.1.254:1"),
    ]
    front = lab_httpd.LabHTTPServer((LOOPBACK, 0), routes)
    for s in (upstream, front):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield int(front.server_address[1])
    for s in (upstream, front):
        s.shutdown()
        s.server_close()


def fetch(port: int, host: str, path: str = "/") -> tuple[int, str]:
    req = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - lab loopback address
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_server_static_proxy_and_errors(servers: int) -> None:
    assert fetch(servers, "app.t") == (200, "<h1>app</h1>")
    assert fetch(servers, "ln.t", "/api/v1/wallet") == (200, "lnbits\n")
    assert fetch(servers, "down.t")[0] == 502
    assert fetch(servers, "nope.t")[0] == 404


# --------------------------------------------------------------------------- labctl


def test_hosts_and_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_NET", raising=False)
    h = labctl.host_by_name("machine12")
    assert (h.name, h.address) == ("machine12", "127.0.1.12")
    for bad in ("machine0", "machine255", "web1", "machine"):
        with pytest.raises(labctl.LabError):
            labctl.host_by_name(bad)
    monkeypatch.setenv("LAB_HOSTS", "5")
    assert [x.name for x in labctl.wanted_hosts()] == [f"machine{i}" for i in range(1, 6)]
    monkeypatch.setenv("LAB_HOSTS", "x")
    with pytest.raises(labctl.LabError, match="LAB_HOSTS must be a number"):
        labctl.wanted_hosts()


def test_base_digest_names_the_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIOLABS_CACHE", str(tmp_path))
    path = labctl.base_path()
    assert path.parent == tmp_path and path.name == f"lab-base-{labctl.base_digest()}"
    monkeypatch.setattr(labctl, "PACKAGES", (*labctl.PACKAGES, "extra"))
    assert labctl.base_path() != path


def test_customise_base(tmp_path: Path) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/nix").mkdir(parents=True)
    (tmp_path / "etc/nix/nix.conf").write_text("build-users-group = nixbld\n")
    usr_bin, usr_sbin = tmp_path / "usr/bin", tmp_path / "usr/sbin"
    usr_bin.mkdir(parents=True)
    usr_sbin.mkdir(parents=True)
    (usr_bin / "python3.11").write_text("ELF")
    for name in ("python3", "python3-config", "pydoc3.11", "rrsync"):
        (usr_bin / name).symlink_to("python3.11")
    (usr_bin / "rsync").write_text("ELF rsync")
    (usr_bin / "systemctl").write_text("ELF")
    (usr_bin / "ls").write_text("ELF ls")
    for name in ("shutdown", "reboot", "poweroff", "halt"):
        (usr_sbin / name).symlink_to("/bin/systemctl")
    labctl.customise_base(tmp_path)
    assert not (tmp_path / "etc/ssh/ssh_host_ed25519_key").exists()
    assert (tmp_path / "etc/systemd/system").readlink() == Path("/etc/static/systemd/system")
    for d in ("opt/lab", "var/lib/lab/faults", "var/lib/lab/tls", "etc/nixos", "var/src", "nix/var/nix/profiles"):
        assert (tmp_path / d).is_dir()
    # the strict base: Python and rsync only in /usr/lib/lab/bin, no systemd entry points, no nix.conf
    assert sorted(p.name for p in usr_bin.iterdir()) == ["ls"]
    assert list(usr_sbin.iterdir()) == []
    libexec = tmp_path / "usr/lib/lab/bin"
    assert (libexec / "python3.11").read_text() == "ELF"
    assert (libexec / "python3").readlink() == Path("python3.11")
    assert (libexec / "rsync").read_text() == "ELF rsync"
    assert not (tmp_path / "etc/nix/nix.conf").exists()
    assert "PATH" not in (tmp_path / "etc/profile").read_text().replace("keeps the PATH", "")


def test_write_inventory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LAB_NET", raising=False)
    out = tmp_path / "inventory.yml"
    monkeypatch.setattr(labctl, "INVENTORY_OUT", out)
    labctl.write_inventory([labctl.Host(1), labctl.Host(4)])
    text = out.read_text()
    assert "            machine4:\n              ansible_host: 127.0.1.4\n" in text
    assert "ansible_python_interpreter: /run/current-system/sw/bin/python3" in text


def test_apt_mirror_deb822_and_one_line(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "google.list").write_text("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n")
    (d / "debian.sources").write_text(
        "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert labctl.apt_mirror(tmp_path) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert labctl.apt_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").unlink()
    assert labctl.apt_mirror(tmp_path) == labctl.DEFAULT_MIRROR


def test_leftover_processes_of_one_host_are_that_hosts_only() -> None:
    """Stopping one host waits for its own stage0, not for every other host's (which run on)."""
    import subprocess

    argv = [sys.executable, "-c", "import time; time.sleep(60)", str(labctl.LAB_DIR / "labctl"), "_stage0"]
    procs = {name: subprocess.Popen([*argv, name, "/base"]) for name in ("machine1", "machine12")}
    try:
        # Until a child has exec'd, its cmdline is still pytest's: wait for both, bounded.
        deadline = time.monotonic() + 10
        for name, proc in procs.items():
            while f"_stage0\0{name}\0".encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                assert time.monotonic() < deadline, f"{name}'s stand-in stage0 did not start"
                time.sleep(0.01)
        mine = labctl.leftover_processes(labctl.HOSTS_DIR / "machine1")
        assert procs["machine1"].pid in mine and procs["machine12"].pid not in mine
        every = labctl.leftover_processes()
        assert {p.pid for p in procs.values()} <= set(every)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
