"""OpenSearch modules the integ-test zip lacks, assembled from their Maven jars.

Why: the integ-test distribution is core OpenSearch only. Without ``analysis-common`` a node cannot
stem ("laptops" vs "laptop"), fold accents or use synonym filters, so the strongest plain lexical
baseline cannot be built, and users' clusters (which ship these modules) would behave differently
from ours. A module is nothing but a folder under ``modules/`` with jars and a
``plugin-descriptor.properties``; Maven Central serves every jar. Each jar is fetched once per
machine into the download cache (keyed by OpenSearch version) and checked against a pinned SHA-512
(Maven's ``--strict-checksums`` checks the published .sha1 while downloading as well).

Recipe verified in ``shared/notes/opensearch-modules.md``: analysis-common extends lang-painless,
lang-painless needs a security policy that lets it generate classes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from qrw.errors import NodeError

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy"


@dataclasses.dataclass(frozen=True)
class Jar:
    """One Maven artifact (``group:artifact:version``) and the SHA-512 it must have."""

    coordinates: str
    sha512: str

    @property
    def file_name(self) -> str:
        _, artifact, version = self.coordinates.split(":")
        return f"{artifact}-{version}.jar"


@dataclasses.dataclass(frozen=True)
class Module:
    """One module folder: its jars, the plugin class, the modules it extends, an optional policy."""

    name: str
    classname: str
    description: str
    jars: tuple[Jar, ...]
    extends: tuple[str, ...] = ()
    security_policy: str = ""

    def descriptor(self, version: str) -> str:
        return "\n".join([
            f"description={self.description}",
            f"version={version}",
            f"name={self.name}",
            f"classname={self.classname}",
            "java.version=11",
            f"opensearch.version={version}",
            "custom.foldername=",
            f"extended.plugins={','.join(self.extends)}",
            "has.native.controller=false",
            "",
        ])


_PAINLESS_POLICY = """grant {
  // lang-painless compiles scripts to classes at run time
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
"""

# Pinned for OpenSearch 2.19.4; the SHA-512s were computed on the artifacts Maven Central served.
MODULES: dict[str, tuple[Module, ...]] = {
    "2.19.4": (
        Module(
            "lang-painless", "org.opensearch.painless.PainlessPlugin", "Painless scripting (extended by analysis-common)",
            (
                Jar("org.opensearch.plugin:lang-painless:2.19.4",
                    "2a92f09dc3bdc1ebd321f282719163e5dafa85539a31e2659fd9f8220d15ce90e2cbf7bce0634c8307b5e0e453deac4833b3dcab441cbbe8dfca46041135c9c7"),
                Jar("org.opensearch.plugin:opensearch-scripting-painless-spi:2.19.4",
                    "a391d61af7e9932f5bdca41df677f84518eb4b9b917ad47f01366885fcfc2d852fa4f251c9cb6b51936eb905dcd919df3a6286ff249198b58f0299487d0c6f5f"),
                Jar("org.antlr:antlr4-runtime:4.13.1",
                    "63eb51bfcee49c52848d8b7c3c46d8b4d367d85fb3c3db7175eaacba94e4d0c227b78e5955a0e86e575e1c6206fc2a43e5fa96fb04ad7c16e24ec94015cfc18b"),
                Jar("org.ow2.asm:asm:9.7",
                    "ada37fcc95884a4d2cbc64495f5f67556c847e7724e26ccfbb15cc42a476436fa54b5d4fd4d9ed340241d848999d415e1cff07045d9e97d451c16aeed4911045"),
                Jar("org.ow2.asm:asm-util:9.7",
                    "7056f5905a27a8a3bc2e2b9774d1c70378b2441779bdce218f45aa2a549d1f4e2b81d562f20bf9a8d5be96d33e30a8f9e15caeebade6287dde6cc082afb36089"),
                Jar("org.ow2.asm:asm-tree:9.7",
                    "60c548f80af02ea8da5866104921ca818a8de846504faebac5cf016becba6b277a33bf594a7fd783443856310864b2ffc99aa11cd6f4e439c086734923ef823b"),
                Jar("org.ow2.asm:asm-commons:9.7",
                    "64544d7515aa4582ebf40e9a5ec32cbcee3ef0e3e15448bd56e6adb583d4ff764a34bba866816e4415298da939b029384a6ccf887c70b5fe98ac23589e626f79"),
                Jar("org.ow2.asm:asm-analysis:9.7",
                    "69c2a9f73262b0fe5c1758973b5406dc0639b0e1d9a82863d5bc2d664395b737e45f50789c6f7ba3c8915d7ec79858e197032066d6b8386e35d6aed6cd95a8f2"),
            ),
            security_policy=_PAINLESS_POLICY,
        ),
        Module(
            "analysis-common", "org.opensearch.analysis.common.CommonAnalysisPlugin",
            "Stemmers, asciifolding, synonym and other common analysis components",
            (
                Jar("org.opensearch.plugin:analysis-common:2.19.4",
                    "6c3dd13465789646a97d848cd9b6058c70da4e84a5f3f625f05759621d5987ebcbee191ae4d7bb69ec73c6046d25efd7dea7b0d24caaa65bb942a62f756169c6"),
            ),
            extends=("lang-painless",),
        ),
        Module(
            "search-pipeline-common", "org.opensearch.search.pipeline.common.SearchPipelineCommonModulePlugin",
            "Search pipeline processors",
            (
                Jar("org.opensearch.plugin:search-pipeline-common:2.19.4",
                    "bc02e27bfff91c973b9f76c8de3e256d152dc3acd5f39a077b3f3e8cc0a1479012f5606cdab4e9a00bb800dc9b3c64fad101bf984fcc0c7e944ce5605f9e423e"),
            ),
        ),
    ),
}


def modules_for(version: str) -> tuple[Module, ...]:
    """The modules pinned for ``version``; a version without pins gets a clear error, not a bare node."""
    try:
        return MODULES[version]
    except KeyError:
        raise NodeError(
            f"no module jars are pinned for OpenSearch {version}: the node would lack analysis-common",
            hint=f"use one of {', '.join(sorted(MODULES))}, or pin the jars in qrw/search/modules.py",
        ) from None


def file_sha512(path: Path) -> str:
    """The SHA-512 of a file (read in 1 MiB blocks), as pinned for the zip and every module jar."""
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_jar(jar: Jar, cache_dir: Path) -> Path:
    """The cached, verified jar, fetched with Maven on first use."""
    target = cache_dir / jar.file_name
    if not target.exists():
        if shutil.which("mvn") is None:
            raise NodeError("Maven ('mvn') is needed to fetch OpenSearch modules", hint="apt-get install maven")
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            result = subprocess.run(
                ["mvn", "-B", "-q", "--strict-checksums", f"-Dmaven.repo.local={Path(tmp) / 'm2'}",
                 MAVEN_DEPENDENCY_PLUGIN, f"-Dartifact={jar.coordinates}", "-Dtransitive=false",
                 f"-DoutputDirectory={tmp}"],
                capture_output=True, text=True,
            )
            downloaded = Path(tmp) / jar.file_name
            if result.returncode != 0 or not downloaded.exists():
                raise NodeError(f"Maven could not fetch {jar.coordinates}:\n" + (result.stdout + result.stderr)[-2000:])
            downloaded.replace(target)
    actual = file_sha512(target)
    if actual != jar.sha512:
        raise NodeError(
            f"checksum mismatch for {target}: sha512 {actual[:16]}… != pinned {jar.sha512[:16]}…",
            hint=f"delete {target} and run again to re-download",
        )
    return target


def install_modules(install_dir: Path, version: str, cache_dir: Path) -> list[str]:
    """Make ``install_dir/modules`` hold every pinned module (idempotent); return their names."""
    names = []
    for module in modules_for(version):
        folder = install_dir / "modules" / module.name
        marker = folder / ".qrw-module"
        names.append(module.name)
        if marker.exists():
            continue
        # Staged beside the install, never inside modules/: OpenSearch would try to load a leftover folder.
        staging = Path(tempfile.mkdtemp(dir=install_dir.parent, prefix=f".module-{module.name}-"))
        try:
            for jar in module.jars:
                shutil.copy2(fetch_jar(jar, cache_dir), staging / jar.file_name)
            (staging / "plugin-descriptor.properties").write_text(module.descriptor(version))
            if module.security_policy:
                (staging / "plugin-security.policy").write_text(module.security_policy)
            (staging / ".qrw-module").write_text(version)
            shutil.rmtree(folder, ignore_errors=True)
            staging.replace(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return names
