"""Maps the design card's top-level folders onto the single ``radqc`` namespace.

``models/`` installs as ``radqc.models``, ``pipelines/`` as ``radqc.pipelines`` and so on,
so no folder name (``datasets``, ``models``) ever lands on ``sys.path`` as a top-level
module and collides with other libraries. Everything else lives in ``pyproject.toml``.
"""


from setuptools import find_packages, setup

FOLDERS = {
    "radqc": "radqc",
    "radqc.models": "models",
    "radqc.pipelines": "pipelines",
    "radqc.datasets": "datasets",
    "radqc.qc_rules": "qc_rules",
    "radqc.serving": "serving",
    "radqc.audit_platform": "audit_platform",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for namespace, folder in FOLDERS.items():
    package_dir[namespace] = folder
    packages.append(namespace)
    for sub in find_packages(where=folder):
        packages.append(f"{namespace}.{sub}")
# radqc/ itself is scanned above; drop duplicates the mapped folders would add
packages = sorted(set(packages))

setup(packages=packages, package_dir=package_dir)
