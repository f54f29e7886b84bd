"""Image signatures end to end on loopback: a local registry, a signing key, a pull policy that admits only its images.

This is the mechanism the pipelines' verify step relies on.

The pipelines sign keylessly with cosign (GitHub OIDC). Debian 12's skopeo is built with sigstore disabled ("Debian-
local change: sigstore disabled", for signing and verifying alike), so here the same containers/image machinery is
proven with its other signature format, GPG "simple signing": `policy.json` requirements, a `registries.d` entry
saying where signatures live, `skopeo copy --sign-by` to sign and `skopeo copy --policy` to admit or refuse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import require_tool
from tests.support.server import free_port

TOOLS = ("docker-registry", "skopeo", "buildah", "gpg", "gpgconf")
REPOSITORY = "leadscore"


def tool(name: str) -> str:
    """The tool's path (scripts/setup-signing.sh installs them); a skip outside CI when missing."""
    return require_tool(shutil.which(name), name)


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing its output."""
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **(env or {})}
    )


def checked(*command: str, env: dict[str, str] | None = None) -> str:
    """Run a command that must succeed; its stdout."""
    result = run(*command, env=env)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Keyring:
    """A throw-away GnuPG home with one signing key."""

    home: Path
    fingerprint: str
    public_key: Path

    @property
    def env(self) -> dict[str, str]:
        """Environment that points gpg (and skopeo's gpgme) at this keyring."""
        return {"GNUPGHOME": str(self.home)}


def make_keyring(directory: Path, name: str) -> Keyring:
    """A new ed25519 signing key (no passphrase) in its own GnuPG home, and its exported public key."""
    home = directory / f"gnupg-{name}"
    home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(home)}
    uid = f"{name} <{name}@example.invalid>"
    checked(tool("gpg"), "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never", env=env)
    listing = checked(tool("gpg"), "--batch", "--with-colons", "--list-secret-keys", env=env)
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public_key = directory / f"{name}.pub.asc"
    public_key.write_text(checked(tool("gpg"), "--batch", "--armor", "--export", fingerprint, env=env))
    return Keyring(home, fingerprint, public_key)


@dataclass(frozen=True)
class Setup:
    """The registry, the signatures' store and configuration, and the images pushed for the tests."""

    registry: str  # host:port
    registries_d: Path
    policy: Path
    work: Path

    def pull(self, name: str) -> subprocess.CompletedProcess[str]:
        """`skopeo copy` of `name` from the registry under the policy (the check a deploy host makes)."""
        destination = self.work / f"pulled-{name.replace('/', '-').replace(':', '-')}"
        return run(
            tool("skopeo"), "copy", "--quiet", "--policy", str(self.policy),
            "--registries.d", str(self.registries_d), "--src-tls-verify=false",
            f"docker://{self.registry}/{name}", f"dir:{destination}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory for the module; the tools are checked first."""
    for name in TOOLS:
        tool(name)
    return tmp_path_factory.mktemp("signing")


@pytest.fixture(scope="module")
def registry(work: Path) -> Iterator[str]:
    """A Docker registry (apt docker-registry) on a free 127.0.0.1 port, stopped by its PID afterwards."""
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(work / "registry")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "signing-test"},
    }
    config_path = work / "registry.yml"
    config_path.write_text(json.dumps(config))  # YAML is a superset of JSON
    log = (work / "registry.log").open("wb")
    process = subprocess.Popen([tool("docker-registry"), "serve", str(config_path)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (work / "registry.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "registry not answering within 20 s"
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def keyrings(work: Path) -> Iterator[tuple[Keyring, Keyring]]:
    """Our signing key and a stranger's; the gpg-agents that gpg started for them are stopped afterwards."""
    ours, stranger = make_keyring(work, "release"), make_keyring(work, "stranger")
    yield ours, stranger
    for keyring in (ours, stranger):
        run(tool("gpgconf"), "--kill", "gpg-agent", env=keyring.env)


@pytest.fixture(scope="module")
def image(work: Path) -> Path:
    """A tiny image built with buildah from scratch (one file, a label), as an OCI layout directory."""
    storage = ["--root", str(work / "storage"), "--runroot", str(work / "run"), "--storage-driver", "vfs"]
    buildah = [tool("buildah"), *storage]
    (work / "hello.txt").write_text("signed by the release pipeline\n")
    container = checked(*buildah, "from", "scratch").strip()
    checked(*buildah, "copy", container, str(work / "hello.txt"), "/hello.txt")
    checked(*buildah, "config", "--label", "org.opencontainers.image.title=signing-test", container)
    layout = work / "image"
    checked(*buildah, "commit", "--quiet", "--rm", container, f"oci:{layout}:latest")
    return layout


@pytest.fixture(scope="module")
def setup(work: Path, registry: str, keyrings: tuple[Keyring, Keyring], image: Path) -> Setup:
    """Push the image three times: signed by our key, unsigned, and signed by the stranger's key."""
    ours, stranger = keyrings
    signatures = work / "signatures"
    registries_d = work / "registries.d"
    registries_d.mkdir()
    # Where signatures of this registry's images are written (staging) and read: a "lookaside" store beside it.
    (registries_d / "local.yaml").write_text(
        json.dumps({"docker": {registry: {"lookaside": signatures.as_uri(), "lookaside-staging": signatures.as_uri()}}})
    )
    push_policy = work / "push-policy.json"
    push_policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    policy = work / "policy.json"
    # Everything is refused unless a rule admits it; our repository admits only images signed by our key whose
    # signature names this same repository (a signature cannot be replayed onto another image name).
    policy.write_text(
        json.dumps(
            {
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {
                        f"{registry}/{REPOSITORY}": [
                            {
                                "type": "signedBy",
                                "keyType": "GPGKeys",
                                "keyPath": str(ours.public_key),
                                "signedIdentity": {"type": "matchRepository"},
                            }
                        ]
                    },
                    "dir": {"": [{"type": "insecureAcceptAnything"}]},
                },
            }
        )
    )

    def push(name: str, keyring: Keyring | None) -> None:
        sign = ["--sign-by", keyring.fingerprint] if keyring else []
        checked(
            tool("skopeo"), "copy", "--quiet", "--policy", str(push_policy), "--registries.d", str(registries_d),
            "--dest-tls-verify=false", *sign, f"oci:{image}:latest", f"docker://{registry}/{name}",
            env=keyring.env if keyring else None,
        )  # fmt: skip

    push(f"{REPOSITORY}/api:signed", ours)
    push(f"{REPOSITORY}/api-unsigned:1", None)
    push(f"{REPOSITORY}/api-stranger:1", stranger)
    # The signed image copied, signature and all, under another name.
    checked(
        tool("skopeo"), "copy", "--quiet", "--policy", str(push_policy), "--registries.d", str(registries_d),
        "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{registry}/{REPOSITORY}/api:signed", f"docker://{registry}/{REPOSITORY}/api-renamed:1",
    )  # fmt: skip
    return Setup(registry, registries_d, policy, work)


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp and tcp6 write them) of the TCP sockets listening on `port`."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_registry_listens_on_loopback_only(registry: str) -> None:
    """The local registry's only listening socket is 127.0.0.1 (not 0.0.0.0, not IPv6 any)."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    assert listening_addresses(int(registry.rsplit(":", 1)[1])) == {"0100007F"}  # 127.0.0.1, little-endian


def test_signing_stores_the_signature_under_the_pushed_digest(setup: Setup) -> None:
    """`skopeo copy --sign-by` stores one signature under the digest the registry serves for the signed tag."""
    inspected = checked(
        tool("skopeo"), "inspect", "--tls-verify=false", f"docker://{setup.registry}/{REPOSITORY}/api:signed"
    )
    digest = json.loads(inspected)["Digest"].replace(":", "=")
    store = setup.work / "signatures"
    stored = {p.relative_to(store).as_posix() for p in store.rglob("signature-*")}
    assert f"{REPOSITORY}/api@{digest}/signature-1" in stored
    assert not any(s.startswith(f"{REPOSITORY}/api-unsigned@") for s in stored)


def test_policy_admits_the_image_signed_by_our_key(setup: Setup) -> None:
    """An image signed by the release key is pulled under the policy."""
    result = setup.pull(f"{REPOSITORY}/api:signed")
    assert result.returncode == 0, result.stderr
    assert (setup.work / f"pulled-{REPOSITORY}-api-signed" / "manifest.json").is_file()


def test_policy_refuses_an_unsigned_image(setup: Setup) -> None:
    """An unsigned image is refused: a signature is required."""
    result = setup.pull(f"{REPOSITORY}/api-unsigned:1")
    assert result.returncode != 0
    assert "A signature was required, but no signature exists" in result.stderr


def test_policy_refuses_an_image_signed_by_another_key(setup: Setup) -> None:
    """A signature by any key but the release key is refused."""
    result = setup.pull(f"{REPOSITORY}/api-stranger:1")
    assert result.returncode != 0
    assert "Source image rejected" in result.stderr


def test_policy_refuses_a_signature_copied_to_another_name(setup: Setup) -> None:
    """Our signature does not follow the image to another repository: it names the repository it was made for."""
    assert any((setup.work / "signatures" / REPOSITORY).glob("api-renamed@sha256=*/signature-1"))
    result = setup.pull(f"{REPOSITORY}/api-renamed:1")
    assert result.returncode != 0
    assert f"Signature for identity {setup.registry}/{REPOSITORY}/api:signed is not accepted" in result.stderr
