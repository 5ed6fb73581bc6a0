"""ament_python package definition for ramp_operator_console."""

import ast
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "ramp_operator_console"
DESCRIPTION = (
    (Path(__file__).parent / "package.xml")
    .read_text()
    .split("<description>")[1]
    .split("</description>")[0]
)
# The package's nodes (PACKAGE/nodes.py, a plain table): one console script each.
NODES = ast.literal_eval(
    (Path(__file__).parent / PACKAGE / "nodes.py").read_text().split("NODES = ")[1]
)
NODE_SCRIPTS = [f"{name} = {node['class'].split(':')[0]}:main" for name, node in NODES.items()]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/ament_index/resource_index/ramp_nodes", ["resource/ramp_nodes/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/web", glob("web/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="RAMP maintainers",
    maintainer_email="ramp-maintainers@example.org",
    description=DESCRIPTION,
    license="Apache-2.0",
    entry_points={
        "console_scripts": NODE_SCRIPTS,
    },
)
