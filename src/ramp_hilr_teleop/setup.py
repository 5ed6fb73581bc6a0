"""ament_python package definition for ramp_hilr_teleop."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "ramp_hilr_teleop"
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
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="RAMP maintainers",
    maintainer_email="ramp-maintainers@example.org",
    description=DESCRIPTION,
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "teleop_node = ramp_hilr_teleop.teleop_node:main",
            "intervention_arbiter = ramp_hilr_teleop.intervention_arbiter:main",
            "episode_recorder = ramp_hilr_teleop.episode_recorder:main",
            "ramp-bag = ramp_hilr_teleop.bag_cli:main",
        ],
    },
)
