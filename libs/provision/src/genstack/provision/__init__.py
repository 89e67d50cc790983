"""Model provisioning: a declarative manifest, a planner and a fast verified downloader.

Services call :func:`ensure_models` at start-up::

    from genstack.provision import ensure_models

    ensure_models("xtts", settings.xtts_model_dir)            # a catalogue manifest
    ensure_models("comfyui", models_dir, env=os.environ)      # reads ENABLE_*, *_MODEL, ...

See docs/provisioning.md for the manifest format, the catalogue and every variable.
"""

from genstack.provision.ensure import (
    ProvisionReport,
    ensure_models,
    plan_models,
    provision,
    resolve_manifest,
)
from genstack.provision.errors import (
    ChecksumError,
    DiskSpaceError,
    DownloadError,
    DownloadInterruptedError,
    ProvisionError,
    SourceError,
    VariableError,
)
from genstack.provision.manifest import (
    CATALOG_NAMES,
    Manifest,
    ManifestError,
    ModelEntry,
    load_catalog,
    load_manifest,
    parse_manifest,
)
from genstack.provision.plan import Plan, Target
from genstack.provision.settings import ProvisionSettings

__all__ = [
    "CATALOG_NAMES",
    "ChecksumError",
    "DiskSpaceError",
    "DownloadError",
    "DownloadInterruptedError",
    "Manifest",
    "ManifestError",
    "ModelEntry",
    "Plan",
    "ProvisionError",
    "ProvisionReport",
    "ProvisionSettings",
    "SourceError",
    "Target",
    "VariableError",
    "ensure_models",
    "load_catalog",
    "load_manifest",
    "parse_manifest",
    "plan_models",
    "provision",
    "resolve_manifest",
]
