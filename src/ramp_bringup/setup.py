"""ament_python package definition for ramp_bringup."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "ramp_bringup"
DESCRIPTION = (
    (Path(__file__).parent / "package.xml")
    .read_text()
    .split("<description>")[1]
    .split("</description>")[0]
)

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
        ("share/" + PACKAGE + "/config/fleet", glob("config/fleet/*.yaml")),
        ("share/" + PACKAGE + "/dds", glob("dds/*.xml")),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="RAMP maintainers",
    maintainer_email="ramp-maintainers@example.org",
    description=DESCRIPTION,
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "ramp = ramp_bringup.cli:main",
        ],
    },
)
